//! From token states to one sentence vector.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use contrastive_core::nn::{linear, Linear};

/// How token states (B, L, H) become sentence vectors (B, H).
pub enum Pooling {
    /// The `[CLS]` token's state.
    Cls,
    /// The `[CLS]` state through Linear + tanh in training only (SimCSE's unsupervised default).
    ClsMlp(Linear),
    /// The mean over real tokens (the attention mask), as sentence-transformers does.
    Mean,
}

impl Pooling {
    /// SimCSE's CLS + MLP pooler of width `hidden` under `vb` (`dense.*`).
    pub fn cls_mlp(hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Pooling::ClsMlp(linear(hidden, hidden, vb.pp("dense"))?))
    }

    /// Sentence vectors of `states` (B, L, H) with `mask` (B, L).
    pub fn forward_t(&self, states: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1),
            Pooling::ClsMlp(mlp) => {
                let cls = states.narrow(1, 0, 1)?.squeeze(1)?;
                if train {
                    mlp.forward(&cls)?.tanh()
                } else {
                    Ok(cls)
                }
            }
            Pooling::Mean => {
                let m = mask.to_dtype(states.dtype())?.unsqueeze(D::Minus1)?;
                let sum = states.broadcast_mul(&m)?.sum(1)?;
                let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                sum.broadcast_div(&count)
            }
        }
    }
}
