//! Turning images into tensors: stacking and the loader's collate.

use crate::data::Image;
use candle_core::{Device, Tensor};
use contrastive_core::data::{Collate, ViewPair};
use contrastive_core::{Error, Result};

/// The two views of a batch as (N, C, H, W) tensors, and the dataset indices of its images.
#[derive(Clone, Debug)]
pub struct ViewBatch {
    /// First views.
    pub first: Tensor,
    /// Second views.
    pub second: Tensor,
    /// Dataset index of each row.
    pub indices: Vec<usize>,
}

/// Stacks same-sized images into one (N, C, H, W) tensor; a size mismatch names the image.
pub fn stack_images(images: &[&Image], device: &Device) -> Result<Tensor> {
    let Some(first) = images.first() else { return Err(Error::Data("cannot stack an empty list of images".into())) };
    let shape = (first.channels, first.height, first.width);
    let mut data = Vec::with_capacity(images.len() * first.data.len());
    for (i, img) in images.iter().enumerate() {
        if (img.channels, img.height, img.width) != shape {
            // Resize or crop them to one size first.
            return Err(Error::shape(
                format!("image {i} of the batch"),
                format!("({}, {}, {}) as image 0", shape.0, shape.1, shape.2),
                &[img.channels, img.height, img.width],
            ));
        }
        data.extend_from_slice(&img.data);
    }
    Ok(Tensor::from_vec(data, (images.len(), shape.0, shape.1, shape.2), device)?)
}

/// Collates view pairs of images (bare or labelled) into a [`ViewBatch`] on `device`.
#[derive(Clone, Debug)]
pub struct CollateViews {
    /// Where the tensors go.
    pub device: Device,
}

fn collate<'a>(device: &Device, samples: impl Iterator<Item = (usize, &'a Image, &'a Image)>) -> Result<ViewBatch> {
    let (mut indices, mut first, mut second) = (Vec::new(), Vec::new(), Vec::new());
    for (i, a, b) in samples {
        indices.push(i);
        first.push(a);
        second.push(b);
    }
    Ok(ViewBatch { first: stack_images(&first, device)?, second: stack_images(&second, device)?, indices })
}

impl Collate<ViewPair<Image>> for CollateViews {
    type Batch = ViewBatch;
    fn collate(&self, samples: Vec<ViewPair<Image>>) -> Result<ViewBatch> {
        collate(&self.device, samples.iter().map(|s| (s.index, &s.first, &s.second)))
    }
}

impl Collate<ViewPair<(Image, u32)>> for CollateViews {
    type Batch = ViewBatch;
    fn collate(&self, samples: Vec<ViewPair<(Image, u32)>>) -> Result<ViewBatch> {
        collate(&self.device, samples.iter().map(|s| (s.index, &s.first.0, &s.second.0)))
    }
}
