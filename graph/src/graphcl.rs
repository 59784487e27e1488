//! GraphCL: "Graph Contrastive Learning with Augmentations", You, Chen, Sui, Chen, Wang and Shen,
//! NeurIPS 2020, arXiv:2010.13902.
//!
//! Implemented: a GIN encoder, a projection head (Linear-ReLU-Linear), two augmented views of
//! each graph, and GraphCL's loss: one direction (first views as anchors, second views as
//! candidates), cosine similarity at temperature 0.2, the positive left out of the denominator;
//! or plain NT-Xent over both views as an option. Both are presets of the core masked InfoNCE.

use crate::batch::GraphViews;
use crate::gin::{Gin, GinConfig};
use candle_core::{DType, Device, Module, Tensor};
use contrastive_core::loss::{nt_xent, Denominator, MaskedInfoNce};
use contrastive_core::nn::{linear, InitScheme, Linear, ParamStore};
use contrastive_core::sampling::PairMask;
use contrastive_core::train::Objective;
use contrastive_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which contrastive loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GraphClLoss {
    /// GraphCL's: one direction, positive excluded from the denominator.
    GraphCl,
    /// NT-Xent over both views (SimCLR's).
    NtXent,
}

/// GraphCL's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphClConfig {
    /// The encoder.
    pub gin: GinConfig,
    /// Temperature (GraphCL: 0.2).
    pub temperature: f64,
    /// The loss.
    pub loss: GraphClLoss,
}

impl GraphClConfig {
    /// GraphCL's unsupervised TU setting for node features of width `input_dim`.
    pub fn paper(input_dim: usize) -> Self {
        Self { gin: GinConfig::graphcl(input_dim), temperature: 0.2, loss: GraphClLoss::GraphCl }
    }

    /// Checks the temperature and the encoder.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::config("graphcl.temperature", format!("must be positive, got {}", self.temperature)));
        }
        self.gin.validate()
    }
}

/// The GraphCL objective: variables `encoder.*` and `proj_head.{0,2}.*`.
pub struct GraphCl {
    config: GraphClConfig,
    store: ParamStore,
    encoder: Gin,
    head: (Linear, Linear),
}

impl GraphCl {
    /// Builds encoder and head with seeded initialisation in `dtype` (f32 to train; f64 for checks).
    pub fn new(config: GraphClConfig, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::new(seed, InitScheme::PyTorch);
        let vb = store.var_builder(dtype, device);
        let encoder = Gin::new(&config.gin, vb.pp("encoder"))?;
        let d = config.gin.output_dim();
        let head = (linear(d, d, vb.pp("proj_head.0"))?, linear(d, d, vb.pp("proj_head.2"))?);
        Ok(Self { config, store, encoder, head })
    }

    /// The encoder.
    pub fn encoder(&self) -> &Gin {
        &self.encoder
    }

    /// Projections of both views: (z1, z2).
    pub fn project(&self, views: &GraphViews) -> candle_core::Result<(Tensor, Tensor)> {
        let head = |h: Tensor| self.head.1.forward(&self.head.0.forward(&h)?.relu()?);
        Ok((head(self.encoder.forward_t(&views.first, true)?)?, head(self.encoder.forward_t(&views.second, true)?)?))
    }

    /// The loss of projected views.
    pub fn loss_of(&self, z1: &Tensor, z2: &Tensor) -> candle_core::Result<Tensor> {
        match self.config.loss {
            GraphClLoss::GraphCl => {
                let loss = MaskedInfoNce {
                    denominator: Denominator::NegativesOnly,
                    ..MaskedInfoNce::new(self.config.temperature)
                };
                loss.loss(z1, z2, &PairMask::cross_view(z1.dim(0)?))
            }
            GraphClLoss::NtXent => nt_xent(z1, z2, self.config.temperature),
        }
    }
}

impl Objective for GraphCl {
    type Batch = GraphViews;

    fn loss(&mut self, batch: &GraphViews) -> candle_core::Result<Tensor> {
        let (z1, z2) = self.project(batch)?;
        self.loss_of(&z1, &z2)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "method": "graphcl", "graphcl": self.config })
    }
}
