//! Barlow Twins (Zbontar et al. 2021, arXiv:2103.03230): the cross-correlation of the two views'
//! embeddings, each dimension standardised over the batch, pulled to the identity:
//!
//! ```text
//! C = (1/N) ẑ_aᵀ ẑ_b       ẑ = (z - mean) / sqrt(var + 1e-5)  per dimension, over the batch
//! loss = Σ_i (1 - C_ii)²  +  λ Σ_{i≠j} C_ij²
//! ```
//!
//! The diagonal makes the views agree, the off-diagonal term decorrelates the dimensions (what
//! keeps them from collapsing). λ = 5e-3 (the paper's, for 8192 dimensions). Standardised as the
//! authors' code does (a BatchNorm without affine parameters: biased variance, ε = 1e-5) and
//! lightly's `BarlowTwinsLoss` too. Under data parallelism the loss of
//! [`gather_rows`](crate::collective::gather_rows) of both views is the global batch's, as the
//! authors' SyncBatchNorm gives; lightly standardises each process's rows on their own and
//! averages the matrices, which is not.

use super::cross_product_norm_sq;
use crate::similarity::check_pair;
use candle_core::{bail, Result, Tensor};

/// λ, the weight of the redundancy-reduction term (the paper's default).
pub const BARLOW_TWINS_LAMBDA: f64 = 5e-3;

/// The Barlow Twins loss of the two views `z_a` (N, D) and `z_b` (N, D), row i of each the same
/// sample, with off-diagonal weight `lambda`. Needs N >= 2 (a variance over the batch).
pub fn barlow_twins(z_a: &Tensor, z_b: &Tensor, lambda: f64) -> Result<Tensor> {
    let (n, m, _) = check_pair("barlow_twins", z_a, z_b)?;
    if n != m {
        bail!("barlow_twins: {n} and {m} rows; row i of each view must be the same sample");
    }
    if n < 2 {
        bail!("barlow_twins: needs at least 2 rows to standardise over the batch, got {n}");
    }
    if !(lambda.is_finite() && lambda >= 0.0) {
        bail!("barlow_twins: lambda must be finite and >= 0, got {lambda}");
    }
    // Σ_i (1 - C_ii)² + λ Σ_{i≠j} C_ij² = Σ_i (1 - C_ii)² + λ (‖C‖² - Σ_i C_ii²): the diagonal
    // is a column mean of the product of the views, ‖C‖² a cross-product norm, so the (D, D)
    // matrix is never built when the batch is narrower than the embedding.
    let (a, b) = (standardise(z_a)?, standardise(z_b)?);
    let diagonal = ((&a * &b)?.sum(0)? / n as f64)?;
    let invariance = diagonal.affine(-1.0, 1.0)?.sqr()?.sum_all()?;
    let squares = (cross_product_norm_sq(&a, &b)? / (n * n) as f64)?;
    let redundancy = (squares - diagonal.sqr()?.sum_all()?)?;
    invariance + (redundancy * lambda)?
}

/// BatchNorm's ε.
const EPS: f64 = 1e-5;

/// Each column minus its mean, over the square root of its biased variance plus ε.
fn standardise(z: &Tensor) -> Result<Tensor> {
    let centred = z.broadcast_sub(&z.mean_keepdim(0)?)?;
    let std = (centred.sqr()?.mean_keepdim(0)? + EPS)?.sqrt()?;
    centred.broadcast_div(&std)
}
