//! Gaussian blur with a random sigma (SimCLR, MoCo v2), torchvision's `GaussianBlur`.

use crate::data::Image;
use contrastive_core::augment::Augment;
use contrastive_core::{Error, Result};
use rand::{Rng as _, RngCore};

/// The normalised 1-D Gaussian taps of an odd `kernel` at `sigma`.
fn taps(kernel: usize, sigma: f64) -> Vec<f32> {
    let half = (kernel as f64 - 1.0) / 2.0;
    let w: Vec<f64> = (0..kernel).map(|i| (-0.5 * ((i as f64 - half) / sigma).powi(2)).exp()).collect();
    let sum: f64 = w.iter().sum();
    w.iter().map(|v| (v / sum) as f32).collect()
}

/// Reflect padding's source index (`torch.nn.functional.pad(mode="reflect")`), repeated for
/// offsets beyond one image width.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

/// Separable Gaussian blur of an odd `kernel` with reflect padding: torchvision's
/// `gaussian_blur(img, [kernel, kernel], [sigma, sigma])`.
pub fn gaussian_blur(img: &Image, kernel: usize, sigma: f64) -> Result<Image> {
    if kernel % 2 == 0 || sigma <= 0.0 {
        return Err(Error::config(
            "gaussian_blur",
            format!("the kernel must be odd and sigma positive, got {kernel}, {sigma}"),
        ));
    }
    let k = taps(kernel, sigma);
    let r = (kernel / 2) as isize;
    let (h, w) = (img.height, img.width);
    let mut tmp = vec![0f32; w];
    let mut out = img.clone();
    let mut col = vec![0f32; h];
    for plane in out.data.chunks_mut(h * w) {
        for row in plane.chunks_mut(w) {
            for (x, t) in tmp.iter_mut().enumerate() {
                *t = k.iter().enumerate().map(|(j, &kj)| kj * row[reflect(x as isize + j as isize - r, w)]).sum();
            }
            row.copy_from_slice(&tmp);
        }
        for x in 0..w {
            for (y, c) in col.iter_mut().enumerate() {
                *c = k
                    .iter()
                    .enumerate()
                    .map(|(j, &kj)| kj * plane[reflect(y as isize + j as isize - r, h) * w + x])
                    .sum();
            }
            for (y, &c) in col.iter().enumerate() {
                plane[y * w + x] = c;
            }
        }
    }
    Ok(out)
}

/// Blurs with sigma drawn uniformly from `sigma`, with probability `p`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaussianBlur {
    /// Odd kernel side.
    pub kernel: usize,
    /// Range of sigma.
    pub sigma: (f64, f64),
    /// Probability.
    pub p: f64,
}

impl GaussianBlur {
    /// SimCLR's blur for images of side `side`: kernel about 10% of the side (odd, at least 3),
    /// sigma in [0.1, 2], probability `p`.
    pub fn for_side(side: usize, p: f64) -> Self {
        let k = (side / 10).max(3);
        Self { kernel: if k % 2 == 0 { k + 1 } else { k }, sigma: (0.1, 2.0), p }
    }
}

impl Augment<Image> for GaussianBlur {
    fn apply(&self, img: Image, rng: &mut dyn RngCore) -> Result<Image> {
        // Both draws happen whatever the outcome, so that p does not shift later draws.
        let u: f64 = rng.random();
        let sigma = rng.random_range(self.sigma.0..=self.sigma.1);
        if u < self.p {
            gaussian_blur(&img, self.kernel, sigma)
        } else {
            Ok(img)
        }
    }
}
