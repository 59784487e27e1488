//! Pixel-value transforms with torchvision's semantics on float images in [0, 1]: ColorJitter
//! (brightness, contrast, saturation, hue in random order), grayscale, solarize, normalise.

use crate::data::Image;
use contrastive_core::augment::Augment;
use contrastive_core::data::Dataset;
use contrastive_core::{Error, Result};
use rand::seq::SliceRandom;
use rand::{Rng as _, RngCore};

/// ITU-R 601-2 luma weights, as torchvision's `rgb_to_grayscale`.
const LUMA: [f32; 3] = [0.2989, 0.587, 0.114];

/// The luma plane of an RGB image, or the plane itself for one channel.
fn luma(img: &Image) -> Vec<f32> {
    let n = img.height * img.width;
    if img.channels != 3 {
        return img.data[..n].to_vec();
    }
    (0..n).map(|i| LUMA[0] * img.data[i] + LUMA[1] * img.data[n + i] + LUMA[2] * img.data[2 * n + i]).collect()
}

/// `clamp(f·img + (1 - f)·other, 0, 1)` where `other(i)` gives the value blended in at element i.
fn blend(img: &mut Image, factor: f32, other: impl Fn(usize) -> f32) {
    for (i, v) in img.data.iter_mut().enumerate() {
        *v = (factor * *v + (1.0 - factor) * other(i)).clamp(0.0, 1.0);
    }
}

/// Scales every value by `factor` (0 gives black, 1 the image).
pub fn adjust_brightness(img: &mut Image, factor: f32) {
    blend(img, factor, |_| 0.0);
}

/// Blends with the mean luma of the image (0 gives a uniform grey, 1 the image).
pub fn adjust_contrast(img: &mut Image, factor: f32) {
    let l = luma(img);
    let mean = (l.iter().map(|&v| v as f64).sum::<f64>() / l.len() as f64) as f32;
    blend(img, factor, |_| mean);
}

/// Blends with the image's own grayscale (0 gives grayscale, 1 the image); one channel is left as
/// it is.
pub fn adjust_saturation(img: &mut Image, factor: f32) {
    if img.channels != 3 {
        return;
    }
    let l = luma(img);
    let n = l.len();
    blend(img, factor, |i| l[i % n]);
}

/// Rotates the hue by `shift` turns (in [-0.5, 0.5]) through HSV; one channel is left as it is.
pub fn adjust_hue(img: &mut Image, shift: f32) {
    if img.channels != 3 {
        return;
    }
    let n = img.height * img.width;
    for i in 0..n {
        let (r, g, b) = (img.data[i], img.data[n + i], img.data[2 * n + i]);
        let (h, s, v) = rgb_to_hsv(r, g, b);
        let h = (h + shift).rem_euclid(1.0);
        let (r, g, b) = hsv_to_rgb(h, s, v);
        img.data[i] = r;
        img.data[n + i] = g;
        img.data[2 * n + i] = b;
    }
}

/// torchvision's `_rgb2hsv` for one pixel.
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eq = maxc == minc;
    let cr = maxc - minc;
    let s = cr / if eq { 1.0 } else { maxc };
    let div = if eq { 1.0 } else { cr };
    let (rc, gc, bc) = ((maxc - r) / div, (maxc - g) / div, (maxc - b) / div);
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    ((h / 6.0 + 1.0) % 1.0, s, maxc)
}

/// torchvision's `_hsv2rgb` for one pixel.
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let i = (i as i32).rem_euclid(6);
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match i {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// Replaces every channel by the luma (the channel count is kept).
pub fn to_grayscale(img: &mut Image) {
    let l = luma(img);
    for plane in img.data.chunks_mut(l.len()) {
        plane.copy_from_slice(&l);
    }
}

/// Inverts every value at or above `threshold`: v ↦ 1 - v.
pub fn solarize(img: &mut Image, threshold: f32) {
    for v in &mut img.data {
        if *v >= threshold {
            *v = 1.0 - *v;
        }
    }
}

/// Random brightness, contrast, saturation and hue changes applied in a random order
/// (torchvision's `ColorJitter`): factors drawn from [max(0, 1 - x), 1 + x] for the first three
/// and a hue shift from [-hue, hue]; 0 turns a change off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorJitter {
    /// Brightness strength.
    pub brightness: f64,
    /// Contrast strength.
    pub contrast: f64,
    /// Saturation strength.
    pub saturation: f64,
    /// Hue strength, at most 0.5.
    pub hue: f64,
}

impl ColorJitter {
    /// Checks the strengths.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("brightness", self.brightness), ("contrast", self.contrast), ("saturation", self.saturation)]
        {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::config(format!("color_jitter.{name}"), format!("must be >= 0, got {v}")));
            }
        }
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(Error::config("color_jitter.hue", format!("must be in [0, 0.5], got {}", self.hue)));
        }
        Ok(())
    }
}

impl Augment<Image> for ColorJitter {
    fn apply(&self, mut img: Image, rng: &mut dyn RngCore) -> Result<Image> {
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let mut factor =
            |x: f64| if x > 0.0 { Some(rng.random_range((1.0 - x).max(0.0)..=1.0 + x) as f32) } else { None };
        let (b, c, s) = (factor(self.brightness), factor(self.contrast), factor(self.saturation));
        let h = if self.hue > 0.0 { Some(rng.random_range(-self.hue..=self.hue) as f32) } else { None };
        for step in order {
            match (step, b, c, s, h) {
                (0, Some(f), ..) => adjust_brightness(&mut img, f),
                (1, _, Some(f), ..) => adjust_contrast(&mut img, f),
                (2, _, _, Some(f), _) => adjust_saturation(&mut img, f),
                (3, .., Some(f)) => adjust_hue(&mut img, f),
                _ => {}
            }
        }
        Ok(img)
    }
}

/// Turns the image grayscale with probability `p`, keeping its channel count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomGrayscale {
    /// Probability.
    pub p: f64,
}

impl Augment<Image> for RandomGrayscale {
    fn apply(&self, mut img: Image, rng: &mut dyn RngCore) -> Result<Image> {
        if rng.random::<f64>() < self.p {
            to_grayscale(&mut img);
        }
        Ok(img)
    }
}

/// Solarizes with probability `p` (BYOL's augmentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Solarize {
    /// Values at or above this are inverted.
    pub threshold: f32,
    /// Probability.
    pub p: f64,
}

impl Augment<Image> for Solarize {
    fn apply(&self, mut img: Image, rng: &mut dyn RngCore) -> Result<Image> {
        if rng.random::<f64>() < self.p {
            solarize(&mut img, self.threshold);
        }
        Ok(img)
    }
}

/// `(x - mean[c]) / std[c]` per channel `c`; one value of each serves every channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
}

impl Normalize {
    /// The per-channel mean and (population) standard deviation of every pixel of a labelled
    /// image dataset (in memory or a folder read one image at a time; images of any size count
    /// by their pixels), summed in f64: the normalisation to train from scratch with. An empty
    /// set, or images whose channel counts differ, is an error naming the image.
    pub fn fit<D: Dataset<Item = (Image, u32)> + ?Sized>(dataset: &D) -> Result<Self> {
        let mut sums: Vec<(f64, f64)> = Vec::new();
        let mut count = 0usize;
        for i in 0..dataset.len() {
            let (img, _) = dataset.get(i)?;
            if i == 0 {
                sums = vec![(0.0, 0.0); img.channels];
            } else if img.channels != sums.len() {
                return Err(Error::shape(
                    format!("Normalize::fit: image {i}"),
                    format!("({}, H, W) as image 0", sums.len()),
                    &[img.channels, img.height, img.width],
                ));
            }
            let plane = img.height * img.width;
            for (c, (s, s2)) in sums.iter_mut().enumerate() {
                for &v in &img.data[c * plane..(c + 1) * plane] {
                    *s += f64::from(v);
                    *s2 += f64::from(v) * f64::from(v);
                }
            }
            count += plane;
        }
        if count == 0 {
            return Err(Error::Data(format!("Normalize::fit: {} images with no pixels to measure", dataset.len())));
        }
        let n = count as f64;
        let mean = sums.iter().map(|(s, _)| (s / n) as f32).collect();
        let std = sums.iter().map(|(s, s2)| (s2 / n - (s / n) * (s / n)).max(1e-12).sqrt() as f32).collect();
        Ok(Self { mean, std })
    }

    /// ImageNet's statistics, which torchvision and timm weights expect.
    pub fn imagenet() -> Self {
        Self { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225] }
    }

    /// Normalises in place; the statistics must have one entry or one per channel.
    pub fn normalize(&self, img: &mut Image) -> Result<()> {
        let pick = |v: &[f32], c: usize| if v.len() == 1 { Some(v[0]) } else { v.get(c).copied() };
        let n = img.height * img.width;
        for c in 0..img.channels {
            let (Some(m), Some(s)) = (pick(&self.mean, c), pick(&self.std, c)) else {
                return Err(Error::config(
                    "normalize",
                    format!(
                        "{} means and {} stds for an image of {} channels (give 1 or one per channel)",
                        self.mean.len(),
                        self.std.len(),
                        img.channels
                    ),
                ));
            };
            for v in &mut img.data[c * n..(c + 1) * n] {
                *v = (*v - m) / s;
            }
        }
        Ok(())
    }
}

impl Augment<Image> for Normalize {
    fn apply(&self, mut img: Image, _rng: &mut dyn RngCore) -> Result<Image> {
        self.normalize(&mut img)?;
        Ok(img)
    }
}
