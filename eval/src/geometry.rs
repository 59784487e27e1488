//! Alignment and uniformity of normalised embeddings (Wang and Isola 2020, arXiv:2005.10242):
//! positives should be close, and the whole set spread over the sphere.

use crate::check;
use candle_core::{DType, Tensor, D};
use contrastive_core::similarity::l2_normalize;
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
/// is better. The paper uses t = 2. Computed block by block ([`contrastive_core::collapse::uniformity`],
/// which the collapse monitor logs).
pub fn uniformity(z: &Tensor, t: f64) -> Result<f64> {
    let (n, d) = check::embeddings("uniformity", z)?;
    if n < 2 {
        return Err(Error::shape("uniformity: embeddings", "(N >= 2, D)", &[n, d]));
    }
    contrastive_core::collapse::uniformity(z, t)
}
