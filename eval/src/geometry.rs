//! Alignment and uniformity of normalised embeddings (Wang and Isola 2020, arXiv:2005.10242):
//! positives should be close, and the whole set spread over the sphere.

use crate::check;
use candle_core::{DType, Tensor, D};
use contrastive_core::similarity::{l2_normalize, BlockSize, Similarity};
use contrastive_core::{Error, Result};

/// E ‖f(x) - f(y)‖^α over positive pairs (row i of `z1` with row i of `z2`), after L2
/// normalisation; lower is better. The paper uses α = 2.
pub fn alignment(z1: &Tensor, z2: &Tensor, alpha: f64) -> Result<f64> {
    let (n, d) = check::embeddings("alignment", z1)?;
    let (n2, d2) = check::embeddings("alignment", z2)?;
    if (n2, d2) != (n, d) {
        return Err(Error::shape("alignment: second views", format!("({n}, {d}) as the first"), &[n2, d2]));
    }
    let diff = (l2_normalize(&z1.to_dtype(DType::F64)?)? - l2_normalize(&z2.to_dtype(DType::F64)?)?)?;
    let dist = diff.sqr()?.sum(D::Minus1)?.sqrt()?;
    Ok(dist.powf(alpha)?.mean_all()?.to_scalar::<f64>()?)
}

/// log E exp(-t ‖f(x) - f(y)‖²) over all pairs of distinct rows, after L2 normalisation; lower
/// is better. The paper uses t = 2. Computed block by block, stably in the log domain.
pub fn uniformity(z: &Tensor, t: f64) -> Result<f64> {
    let (n, d) = check::embeddings("uniformity", z)?;
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
