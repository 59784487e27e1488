//! The MLP between encoder and loss (SimCLR, Chen et al. 2020, arXiv:2002.05709; SimCLR v2,
//! arXiv:2006.10029; MoCo v2, arXiv:2003.04297).

use super::batch_norm::{batch_norm, BatchNorm};
use super::linear::{linear, linear_no_bias, Linear};
use crate::error::{Error, Result};
use candle_core::Tensor;
use candle_nn::{Module, ModuleT, VarBuilder};
use serde::{Deserialize, Serialize};

/// Shape of a projection head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionHeadConfig {
    /// Width of the encoder output.
    pub input_dim: usize,
    /// Width of the hidden layers.
    pub hidden_dim: usize,
    /// Width of the projection the loss sees.
    pub output_dim: usize,
    /// Linear layers, >= 1 (1 is a linear projection).
    pub layers: usize,
    /// BatchNorm after each hidden linear layer (before the ReLU).
    pub batch_norm: bool,
    /// BatchNorm after the last linear layer too (SimCLR v2).
    pub output_batch_norm: bool,
}

impl ProjectionHeadConfig {
    /// SimCLR v1: input -> input -> 128, ReLU between, no BatchNorm.
    pub fn simclr_v1(input_dim: usize) -> Self {
        Self {
            input_dim,
            hidden_dim: input_dim,
            output_dim: 128,
            layers: 2,
            batch_norm: false,
            output_batch_norm: false,
        }
    }

    /// SimCLR v2: three layers, BatchNorm after each (the last without ReLU).
    pub fn simclr_v2(input_dim: usize) -> Self {
        Self { input_dim, hidden_dim: input_dim, output_dim: 128, layers: 3, batch_norm: true, output_batch_norm: true }
    }

    /// MoCo v2: input -> 2048 -> 128, ReLU between, no BatchNorm.
    pub fn moco_v2(input_dim: usize) -> Self {
        Self { input_dim, hidden_dim: 2048, output_dim: 128, layers: 2, batch_norm: false, output_batch_norm: false }
    }

    /// Checks that every width and the layer count are positive.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("input_dim", self.input_dim),
            ("hidden_dim", self.hidden_dim),
            ("output_dim", self.output_dim),
            ("layers", self.layers),
        ] {
            if v == 0 {
                return Err(Error::config(format!("projection_head.{field}"), "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Linear layers with optional BatchNorm and ReLU between them.
#[derive(Clone, Debug)]
pub struct ProjectionHead {
    layers: Vec<(Linear, Option<BatchNorm>)>,
}

impl ProjectionHead {
    /// Builds the head under `vb` (variables `{i}.linear.*`, `{i}.bn.*`).
    pub fn new(config: &ProjectionHeadConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let last = i + 1 == config.layers;
            let input = if i == 0 { config.input_dim } else { config.hidden_dim };
            let output = if last { config.output_dim } else { config.hidden_dim };
            let with_bn = if last { config.output_batch_norm } else { config.batch_norm };
            let vb = vb.pp(i.to_string());
            // A bias before BatchNorm would be cancelled by its mean subtraction.
            let lin = if with_bn {
                linear_no_bias(input, output, vb.pp("linear"))?
            } else {
                linear(input, output, vb.pp("linear"))?
            };
            let bn = if with_bn { Some(batch_norm(output, vb.pp("bn"))?) } else { None };
            layers.push((lin, bn));
        }
        Ok(Self { layers })
    }

    /// Projects (N, input_dim) to (N, output_dim); BatchNorm uses batch statistics when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for (i, (lin, bn)) in self.layers.iter().enumerate() {
            h = lin.forward(&h)?;
            if let Some(bn) = bn {
                h = bn.forward_t(&h, train)?;
            }
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
}
