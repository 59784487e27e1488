//! Images to embeddings for `contrastive_core::embed`: a backbone with the normalisation its
//! inputs were trained with and, for folders of mixed sizes, the size to resize to.

use crate::augment::{resized_crop, Normalize};
use crate::batch::stack_images;
use crate::data::Image;
use candle_core::{Device, Tensor};
use contrastive_core::{Backbone, Embed, Result};

/// A backbone in eval mode behind its input normalisation: `embed(&ImageEmbedder::new(..),
/// &dataset, 256)` embeds any image dataset (bare or labelled images; labels are ignored).
pub struct ImageEmbedder<'a, B> {
    backbone: &'a B,
    normalize: &'a Normalize,
    size: Option<(usize, usize)>,
    device: Device,
}

impl<'a, B: Backbone<Input = Tensor>> ImageEmbedder<'a, B> {
    /// `backbone` on images normalised by `normalize`, batched on `device`.
    pub fn new(backbone: &'a B, normalize: &'a Normalize, device: &Device) -> Self {
        Self { backbone, normalize, size: None, device: device.clone() }
    }

    /// Resizes every image to `(height, width)` first (whole image, bilinear), so that a folder of
    /// mixed sizes batches together.
    pub fn with_size(mut self, size: (usize, usize)) -> Self {
        self.size = Some(size);
        self
    }

    fn prepare(&self, img: Image) -> Result<Image> {
        let mut img = match self.size {
            Some(size) if (img.height, img.width) != size => resized_crop(&img, (0, 0, img.height, img.width), size)?,
            _ => img,
        };
        self.normalize.normalize(&mut img)?;
        Ok(img)
    }
}

impl<B: Backbone<Input = Tensor>> Embed<Image> for ImageEmbedder<'_, B> {
    fn embed_batch(&self, items: Vec<Image>) -> Result<Tensor> {
        let images = items.into_iter().map(|img| self.prepare(img)).collect::<Result<Vec<_>>>()?;
        let x = stack_images(&images.iter().collect::<Vec<_>>(), &self.device)?;
        Ok(self.backbone.encode(&x, false)?)
    }
}

impl<B: Backbone<Input = Tensor>> Embed<(Image, u32)> for ImageEmbedder<'_, B> {
    fn embed_batch(&self, items: Vec<(Image, u32)>) -> Result<Tensor> {
        self.embed_batch(items.into_iter().map(|(img, _)| img).collect::<Vec<_>>())
    }
}
