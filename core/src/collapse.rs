//! Collapse, the failure of methods without negatives (BYOL, SimSiam, Barlow Twins, VICReg,
//! DINO): every input mapped to one point (complete collapse) or into a few directions
//! (dimensional collapse), where the loss can still look fine. [`Spread`] measures a set of
//! embeddings two ways:
//!
//! - `std`: each dimension's standard deviation over the set of the l2-normalised embeddings,
//!   averaged over dimensions (SimSiam, Chen and He 2021, §4.1): 0 at complete collapse, about
//!   1/sqrt(D) for embeddings spread over the sphere; `std · sqrt(D)` is about 1 then, whatever D;
//! - `effective_rank`: the exponential of the entropy of the embedding matrix's singular values
//!   normalised to sum to 1 (Roy and Vetterli 2007; RankMe, Garrido et al. 2023,
//!   arXiv:2210.02885): 1 when every embedding lies on one line, up to min(N, D) when they fill
//!   every direction evenly.
//!
//! The singular values come from the eigenvalues of the smaller of ZᵀZ (D x D) and ZZᵀ (N x N),
//! by cyclic Jacobi rotations in f64; with more than [`MAX_RANK_SIDE`] rows and dimensions both,
//! an evenly strided sample of that many rows stands for the set (the rank is then at most that).

use crate::error::{Error, Result};
use crate::similarity::{BlockSize, Similarity};
use candle_core::{DType, Tensor};

/// The largest matrix whose eigenvalues [`Spread::of`] computes (512 x 512: seconds).
pub const MAX_RANK_SIDE: usize = 512;

/// How spread out a set of embeddings is (the module documentation says what each figure means).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spread {
    /// Mean over dimensions of the standard deviation of the l2-normalised embeddings.
    pub std: f64,
    /// `std · sqrt(D)`: about 1 when spread over the sphere, 0 when collapsed.
    pub scaled_std: f64,
    /// exp(entropy) of the normalised singular values.
    pub effective_rank: f64,
    /// The effective rank's ceiling here: min(rows used, D).
    pub max_rank: usize,
    /// Wang and Isola's uniformity with t = 2 ([`uniformity`]): 0 when collapsed to a point,
    /// lower the more evenly spread (about -3.9 for random directions in 128 dimensions).
    pub uniformity: f64,
}

impl Spread {
    /// The spread of `z` (N, D), N >= 2 rows.
    pub fn of(z: &Tensor) -> Result<Self> {
        let (n, d) = match z.dims() {
            [n, d] => (*n, *d),
            other => return Err(Error::shape("collapse: embeddings", "(N, D)", other)),
        };
        if n < 2 || d == 0 {
            return Err(Error::config("collapse", format!("needs at least 2 embeddings of width >= 1, got {n} x {d}")));
        }
        let rows = z.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        if rows.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::config("collapse", "the embeddings hold NaN or infinite values"));
        }
        // Each dimension's standard deviation over the unit vectors.
        let units: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                r.iter().map(|v| v / norm).collect()
            })
            .collect();
        let std = (0..d)
            .map(|j| {
                let mean = units.iter().map(|u| u[j]).sum::<f64>() / n as f64;
                (units.iter().map(|u| (u[j] - mean).powi(2)).sum::<f64>() / n as f64).sqrt()
            })
            .sum::<f64>()
            / d as f64;
        // The smaller Gram matrix of (a sample of) the rows.
        let z = z.to_dtype(DType::F64)?;
        let sample = if n > MAX_RANK_SIDE && d > MAX_RANK_SIDE {
            let picks: Vec<u32> = (0..MAX_RANK_SIDE).map(|i| (i * n / MAX_RANK_SIDE) as u32).collect();
            z.index_select(&Tensor::new(picks.as_slice(), z.device())?, 0)?
        } else {
            z.clone()
        };
        let m = sample.dim(0)?;
        let gram = if d <= m { sample.t()?.matmul(&sample)? } else { sample.matmul(&sample.t()?)? };
        let side = d.min(m);
        let gram = gram.flatten_all()?.to_vec1::<f64>()?;
        let singular: Vec<f64> = symmetric_eigenvalues(gram, side).into_iter().map(|l| l.max(0.0).sqrt()).collect();
        let total: f64 = singular.iter().sum();
        let effective_rank = if total > 0.0 {
            let entropy: f64 = singular.iter().map(|s| s / total).filter(|p| *p > 0.0).map(|p| -p * p.ln()).sum();
            entropy.exp()
        } else {
            // Every embedding is zero: one point.
            1.0
        };
        let uniformity = uniformity(&z, 2.0)?;
        Ok(Self { std, scaled_std: std * (d as f64).sqrt(), effective_rank, max_rank: side, uniformity })
    }

    /// A sentence saying how the embeddings collapsed, or `None`: complete collapse when
    /// `scaled_std` is below 0.1 or the effective rank below 1.5, dimensional collapse when the
    /// effective rank is below 5% of its ceiling (and that ceiling is at least 40). Thresholds of
    /// judgement, for a warning; the figures themselves are in each run's history.
    pub fn collapse(&self) -> Option<String> {
        if self.scaled_std < 0.1 || self.effective_rank < 1.5 {
            return Some(format!(
                "the embeddings have collapsed to a point: std x sqrt(D) {:.3} (spread: about 1), effective rank {:.2}",
                self.scaled_std, self.effective_rank
            ));
        }
        if self.max_rank >= 40 && self.effective_rank < 0.05 * self.max_rank as f64 {
            return Some(format!(
                "the embeddings span few directions: effective rank {:.1} of at most {}",
                self.effective_rank, self.max_rank
            ));
        }
        None
    }
}

/// Uniformity (Wang and Isola 2020, arXiv:2005.10242): log E exp(-t ‖f(x) - f(y)‖²) over all
/// pairs of distinct rows of `z` (N >= 2, D) after L2 normalisation; lower is better (the paper
/// uses t = 2: 0 for one point, about -4 spread over a high-dimensional sphere). Computed block
/// by block through cosine similarities.
pub fn uniformity(z: &Tensor, t: f64) -> Result<f64> {
    let (n, d) = z.dims2()?;
    if n < 2 {
        return Err(Error::shape("uniformity: embeddings", "(N >= 2, D)", &[n, d]));
    }
    let z = z.to_dtype(DType::F64)?;
    // For unit vectors ‖a - b‖² = 2 - 2 cos(a, b); every term lies in [e^{-4t}, 1].
    let mut sum = 0.0f64;
    Similarity::Cosine.for_each_block(&z, &z, BlockSize::default(), |r0, c0, block| {
        for (i, row) in block.to_vec2::<f64>()?.into_iter().enumerate() {
            for (j, cos) in row.into_iter().enumerate() {
                if c0 + j > r0 + i {
                    sum += (-t * (2.0 - 2.0 * cos).max(0.0)).exp();
                }
            }
        }
        Ok(())
    })?;
    let pairs = (n * (n - 1) / 2) as f64;
    Ok((sum / pairs).ln())
}

/// The eigenvalues of a symmetric `side` x `side` row-major matrix, by cyclic Jacobi rotations
/// (each zeroes one off-diagonal pair) until the off-diagonal part is below 1e-24 of the whole.
pub fn symmetric_eigenvalues(mut a: Vec<f64>, side: usize) -> Vec<f64> {
    let n = side;
    let total: f64 = a.iter().map(|v| v * v).sum();
    for _ in 0..100 {
        let off: f64 = (0..n).flat_map(|p| (p + 1..n).map(move |q| (p, q))).map(|(p, q)| a[p * n + q].powi(2)).sum();
        if off <= 1e-24 * total || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation that zeroes a_pq: tan of its angle t, the smaller root.
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (kp, kq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * kp - s * kq;
                    a[k * n + q] = s * kp + c * kq;
                }
                for k in 0..n {
                    let (pk, qk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * pk - s * qk;
                    a[q * n + k] = s * pk + c * qk;
                }
            }
        }
    }
    (0..n).map(|i| a[i * n + i]).collect()
}
