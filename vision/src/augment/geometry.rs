//! Where the view comes from: RandomResizedCrop and horizontal flip, with torchvision's semantics.

use crate::data::Image;
use contrastive_core::augment::Augment;
use contrastive_core::{Error, Result};
use rand::{Rng as _, RngCore};

/// Crops the region `top, left, height, width` and resizes it to `out_h` x `out_w` by bilinear
/// interpolation with half-pixel centres (`align_corners=False`), reading only inside the crop:
/// torchvision's `resized_crop` with `antialias=False`.
pub fn resized_crop(
    img: &Image,
    (top, left, height, width): (usize, usize, usize, usize),
    (out_h, out_w): (usize, usize),
) -> Result<Image> {
    if height == 0 || width == 0 || top + height > img.height || left + width > img.width || out_h == 0 || out_w == 0 {
        return Err(Error::shape(
            format!("resized_crop: the image under region top {top} left {left} {height}x{width} (to {out_h}x{out_w})"),
            format!("(C, >= {}, >= {}) with a non-empty region and output", top + height, left + width),
            &[img.channels, img.height, img.width],
        ));
    }
    // Source coordinate of each output row/column: (o + 0.5)·scale - 0.5, clamped at 0 as PyTorch does.
    let taps = |out: usize, size: usize| -> Vec<(usize, usize, f32)> {
        let scale = size as f32 / out as f32;
        (0..out)
            .map(|o| {
                let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(size - 1);
                let i1 = (i0 + 1).min(size - 1);
                (i0, i1, src - i0 as f32)
            })
            .collect()
    };
    let (ys, xs) = (taps(out_h, height), taps(out_w, width));
    let mut data = Vec::with_capacity(img.channels * out_h * out_w);
    for c in 0..img.channels {
        let plane = &img.data[c * img.height * img.width..][..img.height * img.width];
        let at = |y: usize, x: usize| plane[(top + y) * img.width + left + x];
        for &(y0, y1, wy) in &ys {
            for &(x0, x1, wx) in &xs {
                let a = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx;
                let b = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx;
                data.push(a * (1.0 - wy) + b * wy);
            }
        }
    }
    Image::new(img.channels, out_h, out_w, data)
}

/// Mirrors the image left to right.
pub fn hflip(img: &mut Image) {
    for row in img.data.chunks_mut(img.width) {
        row.reverse();
    }
}

/// A random crop of random area and aspect ratio, resized to a fixed size (Szegedy et al. 2015;
/// torchvision's `RandomResizedCrop`, parameters drawn by its rule: ten tries, then a central
/// crop).
#[derive(Clone, Debug, PartialEq)]
pub struct RandomResizedCrop {
    /// Output (height, width).
    pub size: (usize, usize),
    /// Range of the crop's area as a fraction of the image's.
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio (width / height).
    pub ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// torchvision's defaults: scale (0.08, 1), ratio (3/4, 4/3).
    pub fn new(size: (usize, usize)) -> Self {
        Self { size, scale: (0.08, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0) }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let (s0, s1) = self.scale;
        let (r0, r1) = self.ratio;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return Err(Error::config(
                "random_resized_crop.scale",
                format!("needs 0 < min <= max <= 1, got {:?}", self.scale),
            ));
        }
        if !(r0 > 0.0 && r0 <= r1) {
            return Err(Error::config(
                "random_resized_crop.ratio",
                format!("needs 0 < min <= max, got {:?}", self.ratio),
            ));
        }
        if self.size.0 == 0 || self.size.1 == 0 {
            return Err(Error::config("random_resized_crop.size", "must be positive"));
        }
        Ok(())
    }

    /// The crop (top, left, height, width) for an image of `height` x `width`.
    pub fn params(&self, height: usize, width: usize, rng: &mut dyn RngCore) -> (usize, usize, usize, usize) {
        let area = (height * width) as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale.0..=self.scale.1);
            let aspect = rng.random_range(lr0..=lr1).exp();
            let w = (target * aspect).sqrt().round() as usize;
            let h = (target / aspect).sqrt().round() as usize;
            if w > 0 && w <= width && h > 0 && h <= height {
                let top = rng.random_range(0..=height - h);
                let left = rng.random_range(0..=width - w);
                return (top, left, h, w);
            }
        }
        // Central crop with the aspect ratio clamped into range.
        let in_ratio = width as f64 / height as f64;
        let (h, w) = if in_ratio < self.ratio.0 {
            (((width as f64 / self.ratio.0).round() as usize).clamp(1, height), width)
        } else if in_ratio > self.ratio.1 {
            (height, ((height as f64 * self.ratio.1).round() as usize).clamp(1, width))
        } else {
            (height, width)
        };
        ((height - h) / 2, (width - w) / 2, h, w)
    }
}

impl Augment<Image> for RandomResizedCrop {
    fn apply(&self, img: Image, rng: &mut dyn RngCore) -> Result<Image> {
        let region = self.params(img.height, img.width, rng);
        resized_crop(&img, region, self.size)
    }
}

/// Mirrors the image left to right with probability `p`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HorizontalFlip {
    /// Probability of the flip.
    pub p: f64,
}

impl Augment<Image> for HorizontalFlip {
    fn apply(&self, mut img: Image, rng: &mut dyn RngCore) -> Result<Image> {
        if rng.random::<f64>() < self.p {
            hflip(&mut img);
        }
        Ok(img)
    }
}
