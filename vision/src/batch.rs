//! Turning images into tensors: stacking and the loader's collate.

use crate::data::Image;
use candle_core::{Device, Tensor};
use contrastive_core::data::{Collate, CropSet, ViewPair};
use contrastive_core::methods::{CropViews, ViewPairs};
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

impl ViewPairs for ViewBatch {
    type View = Tensor;
    fn first(&self) -> &Tensor {
        &self.first
    }
    fn second(&self) -> &Tensor {
        &self.second
    }
}

/// The multi-crop views of a batch (DINO): each global view and each local view as one (N, C, H,
/// W) tensor (the global views of one size, the local views of another), and the dataset
/// indices of its images.
#[derive(Clone, Debug)]
pub struct CropBatch {
    /// The global views, one tensor each.
    pub global: Vec<Tensor>,
    /// The local views, one tensor each.
    pub local: Vec<Tensor>,
    /// Dataset index of each row.
    pub indices: Vec<usize>,
}

impl CropViews for CropBatch {
    type View = Tensor;
    fn global_views(&self) -> &[Tensor] {
        &self.global
    }
    fn local_views(&self) -> &[Tensor] {
        &self.local
    }
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

fn collate_crops<'a>(device: &Device, samples: &[(usize, &'a [Image], &'a [Image])]) -> Result<CropBatch> {
    let Some(&(_, first_global, first_local)) = samples.first() else {
        return Err(Error::Data("cannot collate an empty batch of multi-crop views".into()));
    };
    let (globals, locals) = (first_global.len(), first_local.len());
    let stack = |view: usize, local: bool| -> Result<Tensor> {
        let images: Vec<&Image> = samples.iter().map(|(_, g, l)| if local { &l[view] } else { &g[view] }).collect();
        stack_images(&images, device)
    };
    for (index, g, l) in samples {
        if (g.len(), l.len()) != (globals, locals) {
            return Err(Error::Data(format!(
                "sample {index} has {} global and {} local views, the batch's first {globals} and {locals}",
                g.len(),
                l.len()
            )));
        }
    }
    Ok(CropBatch {
        global: (0..globals).map(|v| stack(v, false)).collect::<Result<_>>()?,
        local: (0..locals).map(|v| stack(v, true)).collect::<Result<_>>()?,
        indices: samples.iter().map(|(i, _, _)| *i).collect(),
    })
}

impl Collate<CropSet<Image>> for CollateViews {
    type Batch = CropBatch;
    fn collate(&self, samples: Vec<CropSet<Image>>) -> Result<CropBatch> {
        let views: Vec<_> = samples.iter().map(|s| (s.index, s.global.as_slice(), s.local.as_slice())).collect();
        collate_crops(&self.device, &views)
    }
}

impl Collate<CropSet<(Image, u32)>> for CollateViews {
    type Batch = CropBatch;
    fn collate(&self, samples: Vec<CropSet<(Image, u32)>>) -> Result<CropBatch> {
        let unlabelled: Vec<(usize, Vec<Image>, Vec<Image>)> = samples
            .into_iter()
            .map(|s| {
                (s.index, s.global.into_iter().map(|(i, _)| i).collect(), s.local.into_iter().map(|(i, _)| i).collect())
            })
            .collect();
        let views: Vec<_> = unlabelled.iter().map(|(i, g, l)| (*i, g.as_slice(), l.as_slice())).collect();
        collate_crops(&self.device, &views)
    }
}
