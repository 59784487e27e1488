//! CLIP's symmetric InfoNCE (Radford et al. 2021, arXiv:2103.00020) with a learnable logit scale.
//!
//! For a batch of N pairs (a_i, b_i), with unit vectors and logits s_ij = e^t · cos(a_i, b_j):
//!
//! ```text
//! loss = ½ [ (1/N) Σ_i CE(s_i·, i)  +  (1/N) Σ_j CE(s_·j, j) ]
//! ```
//!
//! both directions, every other item of the batch a negative. The temperature 1/e^t is a
//! variable: its gradient is what lets CLIP learn it, which the fused masked InfoNCE (a fixed τ)
//! does not give, so this form is written with tensor ops; N x N logits are cheap next to the
//! two encoders.

use crate::similarity::{check_pair, l2_normalize};
use candle_core::{bail, DType, Result, Tensor, D};

/// The symmetric CLIP loss of `a` (N, D) and `b` (N, D), row i of each a pair, with `log_scale`
/// (a scalar or (1,) tensor: the logits are multiplied by its exponential). Returns a scalar.
pub fn clip_loss(a: &Tensor, b: &Tensor, log_scale: &Tensor) -> Result<Tensor> {
    let (n, n2, _) = check_pair("clip_loss", a, b)?;
    if n != n2 {
        bail!("clip_loss: {n} and {n2} rows; row i of each must form a pair");
    }
    if n < 2 {
        bail!("clip_loss: needs at least 2 pairs to have a negative, got {n}");
    }
    if log_scale.elem_count() != 1 {
        bail!("clip_loss: the log scale must hold one value, got shape {:?}", log_scale.dims());
    }
    let scale = log_scale.flatten_all()?.exp()?.to_dtype(a.dtype())?;
    let logits = l2_normalize(a)?.matmul(&l2_normalize(b)?.t()?)?.broadcast_mul(&scale)?;
    let a_to_b = mean_cross_entropy_diagonal(&logits)?;
    let b_to_a = mean_cross_entropy_diagonal(&logits.t()?)?;
    (a_to_b + b_to_a)? / 2.0
}

/// Mean over rows of -log softmax(row)_i at the row's own index i (the diagonal).
fn mean_cross_entropy_diagonal(logits: &Tensor) -> Result<Tensor> {
    let n = logits.dim(0)?;
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let eye = Tensor::eye(n, DType::U8, logits.device())?;
    let diagonal = eye.where_cond(&log_probs, &log_probs.zeros_like()?)?.sum(D::Minus1)?;
    diagonal.neg()?.mean_all()
}
