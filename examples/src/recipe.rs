//! The augmentation recipes the image examples offer on the command line.

use clap::ValueEnum;
use contrastive_vision::augment::{Normalize, RandomResizedCrop, ViewAugmentation};

/// Which augmentation recipe makes the views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// The PyTorch reference recipe for small grayscale images (crop 0.2-1, flip, brightness and
    /// contrast, 3x3 blur).
    Reference,
    /// SimCLR's published recipe (crop 0.08-1, flip, strong colour jitter, grayscale, blur).
    Simclr,
    /// MoCo v2's published recipe (crop 0.2-1, colour jitter, grayscale, blur, flip).
    MocoV2,
}

impl Recipe {
    /// The augmentation for images of `size`, ending with `normalize`.
    pub fn build(self, size: (usize, usize), normalize: Normalize) -> ViewAugmentation {
        match self {
            Recipe::Reference => ViewAugmentation::small_images(size, normalize),
            Recipe::Simclr => ViewAugmentation::simclr(size, normalize),
            Recipe::MocoV2 => ViewAugmentation::moco_v2(size, normalize),
        }
    }

    /// The recipe after a crop of `size` whose area is `scale` of the image's (DINO's multi-crop:
    /// global views 0.4-1, local views 0.05-0.4).
    pub fn build_cropped(self, size: (usize, usize), scale: (f64, f64), normalize: Normalize) -> ViewAugmentation {
        let crop = RandomResizedCrop { scale, ..RandomResizedCrop::new(size) };
        match self {
            Recipe::Reference => ViewAugmentation::small_images_with(crop, normalize),
            Recipe::Simclr => ViewAugmentation::simclr_with(crop, normalize),
            Recipe::MocoV2 => ViewAugmentation::moco_v2_with(crop, normalize),
        }
    }

    /// The side its paper trains at, for image files of any size: the reference's small images
    /// 32, SimCLR's STL-10 runs 96, MoCo v2's ImageNet 224.
    pub fn default_side(self) -> usize {
        match self {
            Recipe::Reference => 32,
            Recipe::Simclr => 96,
            Recipe::MocoV2 => 224,
        }
    }
}

/// Which encoder the image examples train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderChoice {
    /// The small ConvNet (32-64-128-256 channels).
    Convnet,
    /// ResNet-18 with the CIFAR stem.
    Resnet18,
    /// timm's ViT-Tiny (width 192, 12 blocks, 3 heads) at `--patch-size`.
    VitTiny,
    /// timm's ViT-Small (DINO's ViT-S: width 384, 6 heads).
    VitSmall,
    /// timm's ViT-Base (width 768, 12 heads).
    VitBase,
}

impl EncoderChoice {
    /// The encoder's configuration for images of `channels` seen as views of `size`, a ViT cut
    /// into patches of `--patch-size` with `--drop-path` drawn from streams of `seed` (its position
    /// embeddings laid out for the
    /// views' height; other sizes, DINO's local views, resample them). A view side that the patch
    /// does not divide is an error naming the flag.
    pub fn config(
        self,
        channels: usize,
        size: (usize, usize),
        images: &crate::image_data::ImageFlags,
        seed: u64,
    ) -> contrastive_core::Result<contrastive_vision::EncoderConfig> {
        let (patch_size, drop_path) = (images.patch_size, images.drop_path);
        use contrastive_vision::{ConvNetConfig, EncoderConfig, ResNetConfig, Stem, VitConfig};
        let vit = |preset: fn(usize, usize) -> VitConfig| -> contrastive_core::Result<EncoderConfig> {
            if size.0 % patch_size != 0 || size.1 % patch_size != 0 {
                return Err(contrastive_core::Error::config(
                    "--patch-size",
                    format!(
                        "{patch_size} does not divide the {}x{} views: pick a patch size that does, or another --image-size",
                        size.0, size.1
                    ),
                ));
            }
            Ok(EncoderConfig::Vit(VitConfig { in_channels: channels, drop_path, seed, ..preset(patch_size, size.0) }))
        };
        Ok(match self {
            EncoderChoice::Convnet => {
                EncoderConfig::ConvNet(ConvNetConfig { in_channels: channels, ..ConvNetConfig::default() })
            }
            EncoderChoice::Resnet18 => {
                EncoderConfig::ResNet(ResNetConfig { in_channels: channels, ..ResNetConfig::resnet18(Stem::Cifar) })
            }
            EncoderChoice::VitTiny => vit(VitConfig::tiny)?,
            EncoderChoice::VitSmall => vit(VitConfig::small)?,
            EncoderChoice::VitBase => vit(VitConfig::base)?,
        })
    }
}
