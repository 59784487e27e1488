//! A view of an image set at one size, for evaluating on files of any size.

use crate::augment::resized_crop;
use crate::data::Image;
use contrastive_core::data::Dataset;
use contrastive_core::Result;

/// The images of `images`, each resized (the whole image, bilinear) to `size` as it is read, so
/// that only images of that size are ever held: what an encoder is embedded and evaluated on
/// when the files are of any size.
#[derive(Clone, Copy, Debug)]
pub struct Resized<'a, D: ?Sized> {
    /// The images.
    pub images: &'a D,
    /// (height, width) of every image read.
    pub size: (usize, usize),
}

impl<D: Dataset<Item = (Image, u32)> + ?Sized> Dataset for Resized<'_, D> {
    type Item = (Image, u32);

    fn len(&self) -> usize {
        self.images.len()
    }

    fn get(&self, index: usize) -> Result<(Image, u32)> {
        let (img, label) = self.images.get(index)?;
        if (img.height, img.width) == self.size {
            return Ok((img, label));
        }
        Ok((resized_crop(&img, (0, 0, img.height, img.width), self.size)?, label))
    }
}
