//! The masked InfoNCE as a chain of candle tensor ops: the reference for the fused kernel, and the
//! only form of the debiased and hard-negative estimators. Runs on any device.

use super::{Denominator, MaskedInfoNce, NegativeEstimator};
use crate::sampling::PairMask;
use crate::similarity::l2_normalize;
use candle_core::{Result, Tensor, D};

/// log Σ exp over the last dimension, shifted by the (detached) row maximum.
fn logsumexp(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    x.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()?.add(&max)?.squeeze(D::Minus1)
}

/// Per-anchor losses (M,); an anchor without positives gets a finite value the mean leaves out.
pub(super) fn per_anchor(
    spec: &MaskedInfoNce,
    anchors: &Tensor,
    candidates: &Tensor,
    mask: &PairMask,
) -> Result<Tensor> {
    let t = spec.temperature;
    let logits = (l2_normalize(anchors)?.matmul(&l2_normalize(candidates)?.t()?)? / t)?;
    let dtype = logits.dtype();
    let (pos, neg) = mask.to_tensors(logits.device())?;
    // Masked pairs get a large finite negative: exp of it underflows to exactly 0, and a row with
    // nothing left stays finite. Logits are within ±scale/t, so this is far below every one.
    let masked = |x: &Tensor, keep: &Tensor, scale: f64| -> Result<Tensor> {
        let fill = x.zeros_like()?.affine(1.0, -(scale / t) - 1000.0)?;
        keep.where_cond(x, &fill)
    };
    let pos_f = pos.to_dtype(dtype)?;
    let n_pos = pos_f.sum(D::Minus1)?;
    let mean_pos = ((&logits * &pos_f)?.sum(D::Minus1)? / n_pos.clamp(1.0, f64::INFINITY)?)?;
    let n_neg = neg.to_dtype(dtype)?.sum(D::Minus1)?.clamp(1.0, f64::INFINITY)?;
    let log_neg = match spec.estimator {
        NegativeEstimator::Plain => logsumexp(&masked(&logits, &neg, 1.0)?)?,
        NegativeEstimator::Debiased { tau_plus } => {
            let la = logsumexp(&masked(&logits, &neg, 1.0)?)?;
            debiased(&logits, &pos, &n_pos, &n_neg, la, tau_plus, t, &masked)?
        }
        NegativeEstimator::HardNegative { beta, tau_plus } => {
            // log of Robinson et al.'s reweighted sum |N| Σ e^{(1+β)s} / Σ e^{βs}
            let la = (n_neg.log()? + logsumexp(&masked(&(&logits * (1.0 + beta))?, &neg, 1.0 + beta)?)?
                - logsumexp(&masked(&(&logits * beta)?, &neg, beta.max(1e-12))?)?)?;
            debiased(&logits, &pos, &n_pos, &n_neg, la, tau_plus, t, &masked)?
        }
    };
    let log_den = match spec.denominator {
        Denominator::NegativesOnly => log_neg,
        Denominator::WithPositives => {
            logsumexp(&Tensor::cat(&[masked(&logits, &pos, 1.0)?, log_neg.unsqueeze(1)?], 1)?)?
        }
    };
    log_den - mean_pos
}

/// log Ng of Chuang et al.: max(log((e^la - τ⁺|N| mean_P e^s)/(1 - τ⁺)), log|N| - 1/t), computed
/// in the log domain so that nothing overflows at small temperatures.
#[allow(clippy::too_many_arguments)]
fn debiased(
    logits: &Tensor,
    pos: &Tensor,
    n_pos: &Tensor,
    n_neg: &Tensor,
    la: Tensor,
    tau_plus: f64,
    t: f64,
    masked: &dyn Fn(&Tensor, &Tensor, f64) -> Result<Tensor>,
) -> Result<Tensor> {
    let floor = n_neg.log()?.affine(1.0, -1.0 / t)?;
    let estimate = if tau_plus > 0.0 {
        // log of τ⁺|N| times the mean positive exponential
        let lpos = (logsumexp(&masked(logits, pos, 1.0)?)? - n_pos.clamp(1.0, f64::INFINITY)?.log()?)?;
        let lb = (n_neg.log()? + lpos)?.affine(1.0, tau_plus.ln())?;
        let d = (&lb - &la)?;
        let ok = d.lt(0.0)?;
        let safe_d = ok.where_cond(&d, &d.ones_like()?.neg()?)?;
        let one_minus = (safe_d.exp()?.neg()? + 1.0)?;
        let term = (la + one_minus.log()?)?.affine(1.0, -(1.0 - tau_plus).ln())?;
        ok.where_cond(&term, &floor.affine(1.0, -1000.0)?)?
    } else {
        la
    };
    estimate.maximum(&floor)
}

/// Mean over the anchors that have a positive.
pub(super) fn mean_over_valid(losses: &Tensor, mask: &PairMask) -> Result<Tensor> {
    let valid: Vec<f64> = mask.positive_counts().iter().map(|&c| f64::from(u8::from(c > 0))).collect();
    let n = valid.iter().sum::<f64>();
    let weights = Tensor::from_vec(valid, losses.dims(), losses.device())?.to_dtype(losses.dtype())?;
    (losses * weights)?.sum_all()? / n
}
