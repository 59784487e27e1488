//! Image augmentations, each drawing from the explicit per-sample stream the core loader hands
//! it, on channel-first f32 images; and the published recipes as presets.
//!
//! Every transform follows torchvision's definition (checked against torchvision on fixed
//! images and parameters in `tests/augment.rs`), with two stated differences: the resize inside
//! RandomResizedCrop is bilinear without antialiasing (torchvision antialiases when it shrinks a
//! crop), and the random draws come from our seeded streams, not torch's generator.

mod blur;
mod color;
mod geometry;

pub use blur::{gaussian_blur, GaussianBlur};
pub use color::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, solarize, to_grayscale, ColorJitter, Normalize,
    RandomGrayscale, Solarize,
};
pub use geometry::{hflip, resized_crop, HorizontalFlip, RandomResizedCrop};

use crate::data::Image;
use contrastive_core::augment::{Augment, Compose, RandomApply};
use contrastive_core::Result;
use rand::RngCore;

/// A chain of image augmentations that makes one view. It applies to a bare [`Image`] and to the
/// `(Image, label)` items of the readers, leaving the label alone.
pub struct ViewAugmentation(pub Compose<Image>);

impl ViewAugmentation {
    /// SimCLR (Chen et al. 2020, arXiv:2002.05709, appendix A): RandomResizedCrop to `size` with
    /// scale (0.08, 1), flip, colour jitter (0.8, 0.8, 0.8, 0.2) with p 0.8, grayscale with p 0.2,
    /// Gaussian blur (kernel 10% of the side, sigma 0.1-2) with p 0.5, then `normalize`.
    pub fn simclr(size: (usize, usize), normalize: Normalize) -> Self {
        Self::simclr_with(RandomResizedCrop::new(size), normalize)
    }

    /// SimCLR's recipe after another crop (multi-crop's global and local views).
    pub fn simclr_with(crop: RandomResizedCrop, normalize: Normalize) -> Self {
        let size = crop.size;
        Self(Compose(vec![
            Box::new(crop),
            Box::new(HorizontalFlip { p: 0.5 }),
            Box::new(RandomApply {
                p: 0.8,
                inner: Box::new(ColorJitter { brightness: 0.8, contrast: 0.8, saturation: 0.8, hue: 0.2 }),
            }),
            Box::new(RandomGrayscale { p: 0.2 }),
            Box::new(GaussianBlur::for_side(size.0.min(size.1), 0.5)),
            Box::new(normalize),
        ]))
    }

    /// MoCo v2 (Chen et al. 2020, arXiv:2003.04297): RandomResizedCrop with scale (0.2, 1),
    /// colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale with p 0.2, blur with p 0.5,
    /// flip, then `normalize`.
    pub fn moco_v2(size: (usize, usize), normalize: Normalize) -> Self {
        Self::moco_v2_with(RandomResizedCrop { scale: (0.2, 1.0), ..RandomResizedCrop::new(size) }, normalize)
    }

    /// MoCo v2's recipe after another crop.
    pub fn moco_v2_with(crop: RandomResizedCrop, normalize: Normalize) -> Self {
        let size = crop.size;
        Self(Compose(vec![
            Box::new(crop),
            Box::new(RandomApply {
                p: 0.8,
                inner: Box::new(ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 }),
            }),
            Box::new(RandomGrayscale { p: 0.2 }),
            Box::new(GaussianBlur::for_side(size.0.min(size.1), 0.5)),
            Box::new(HorizontalFlip { p: 0.5 }),
            Box::new(normalize),
        ]))
    }

    /// The recipe for small grayscale images of `bench/pytorch/simclr_fmnist_torch.py`:
    /// RandomResizedCrop with scale (0.2, 1), flip, brightness and contrast 0.4 with p 0.8, a 3x3
    /// blur with sigma 0.1-2 with p 0.5, then `normalize`. (The reference applies brightness
    /// before contrast always and crops by grid sampling; here the order is random, as in
    /// torchvision's ColorJitter, and the crop is torchvision's.)
    pub fn small_images(size: (usize, usize), normalize: Normalize) -> Self {
        Self::small_images_with(RandomResizedCrop { scale: (0.2, 1.0), ..RandomResizedCrop::new(size) }, normalize)
    }

    /// The small-image recipe after another crop.
    pub fn small_images_with(crop: RandomResizedCrop, normalize: Normalize) -> Self {
        Self(Compose(vec![
            Box::new(crop),
            Box::new(HorizontalFlip { p: 0.5 }),
            Box::new(RandomApply {
                p: 0.8,
                inner: Box::new(ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.0, hue: 0.0 }),
            }),
            Box::new(GaussianBlur { kernel: 3, sigma: (0.1, 2.0), p: 0.5 }),
            Box::new(normalize),
        ]))
    }
}

impl Augment<Image> for ViewAugmentation {
    fn apply(&self, x: Image, rng: &mut dyn RngCore) -> Result<Image> {
        self.0.apply(x, rng)
    }
}

impl Augment<(Image, u32)> for ViewAugmentation {
    fn apply(&self, (x, label): (Image, u32), rng: &mut dyn RngCore) -> Result<(Image, u32)> {
        Ok((self.0.apply(x, rng)?, label))
    }
}
