//! VICReg (Bardes, Ponce and LeCun 2022, arXiv:2105.04906): variance, invariance and covariance
//! terms on the two views' embeddings,
//!
//! ```text
//! invariance = (1/(N D)) Σ ‖z_a - z_b‖²
//! variance   = ½ Σ_view (1/D) Σ_j max(0, 1 - sqrt(Var(z_·j) + ε))      unbiased variance
//! covariance = Σ_view (1/D) Σ_{i≠j} Cov(z)_ij²                          Cov over N - 1
//! loss = λ invariance + μ variance + ν covariance
//! ```
//!
//! The variance term keeps every dimension spread over the batch (no collapse), the covariance
//! term decorrelates them. Defaults λ = μ = 25, ν = 1, ε = 1e-4 (the paper's; lightly's
//! `VICRegLoss`). Under data parallelism the loss of
//! [`gather_rows`](crate::collective::gather_rows) of both views is the global batch's.

use super::cross_product_norm_sq;
use crate::similarity::check_pair;
use candle_core::{bail, Result, Tensor};

/// The three weights and the variance term's ε.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VicRegWeights {
    /// λ, the invariance (mean squared error) weight.
    pub invariance: f64,
    /// μ, the variance (hinge on each dimension's standard deviation) weight.
    pub variance: f64,
    /// ν, the covariance (off-diagonal) weight.
    pub covariance: f64,
    /// ε under the square root of the variance.
    pub eps: f64,
}

impl Default for VicRegWeights {
    fn default() -> Self {
        Self { invariance: 25.0, variance: 25.0, covariance: 1.0, eps: 1e-4 }
    }
}

/// The VICReg loss of the two views `z_a` (N, D) and `z_b` (N, D), row i of each the same sample.
/// Needs N >= 2 (a variance).
pub fn vicreg(z_a: &Tensor, z_b: &Tensor, weights: &VicRegWeights) -> Result<Tensor> {
    let (n, m, _) = check_pair("vicreg", z_a, z_b)?;
    if n != m {
        bail!("vicreg: {n} and {m} rows; row i of each view must be the same sample");
    }
    if n < 2 {
        bail!("vicreg: needs at least 2 rows for a variance over the batch, got {n}");
    }
    let w = weights;
    for (name, v) in [("invariance", w.invariance), ("variance", w.variance), ("covariance", w.covariance)] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("vicreg: the {name} weight must be finite and >= 0, got {v}");
        }
    }
    if !(w.eps.is_finite() && w.eps > 0.0) {
        bail!("vicreg: eps must be finite and > 0, got {}", w.eps);
    }
    let invariance = (z_a - z_b)?.sqr()?.mean_all()?;
    let variance = ((variance_hinge(z_a, w.eps)? + variance_hinge(z_b, w.eps)?)? * 0.5)?;
    let covariance = (off_diagonal_covariance(z_a)? + off_diagonal_covariance(z_b)?)?;
    (invariance * w.invariance)? + (variance * w.variance)? + (covariance * w.covariance)?
}

/// Each dimension centred over the batch.
fn centred(z: &Tensor) -> Result<Tensor> {
    z.broadcast_sub(&z.mean_keepdim(0)?)
}

/// Mean over dimensions of max(0, 1 - sqrt(unbiased variance + eps)).
fn variance_hinge(z: &Tensor, eps: f64) -> Result<Tensor> {
    let n = z.dim(0)? as f64;
    let std = ((centred(z)?.sqr()?.sum(0)? / (n - 1.0))? + eps)?.sqrt()?;
    std.affine(-1.0, 1.0)?.relu()?.mean_all()
}

/// Sum of the squared off-diagonal entries of the covariance (over N - 1), over D: ‖Cov‖² less
/// the squared variances on its diagonal (without the (D, D) matrix when N < D).
fn off_diagonal_covariance(z: &Tensor) -> Result<Tensor> {
    let (n, d) = z.dims2()?;
    let c = centred(z)?;
    let squares = (cross_product_norm_sq(&c, &c)? / ((n - 1) * (n - 1)) as f64)?;
    let variances = (c.sqr()?.sum(0)? / (n as f64 - 1.0))?;
    (squares - variances.sqr()?.sum_all()?)? / d as f64
}
