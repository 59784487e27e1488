//! GraphCL: "Graph Contrastive Learning with Augmentations", You, Chen, Sui, Chen, Wang and Shen,
//! NeurIPS 2020, arXiv:2010.13902.
//!
//! Implemented: a GIN encoder (or any graph [`Backbone`], [`GraphCl::with_backbone`]), a projection head (Linear-ReLU-Linear), two augmented views of
//! each graph, and GraphCL's loss: one direction (first views as anchors, second views as
//! candidates), cosine similarity at temperature 0.2, the positive left out of the denominator;
//! or plain NT-Xent over both views as an option. Both are presets of the core masked InfoNCE.

use crate::batch::{GraphBatch, GraphViews};
use crate::gin::{Gin, GinConfig};
use candle_core::{DType, Device, Module, Tensor};
use contrastive_core::collective::{gather_rows, Collective, Local};
use contrastive_core::grad_cache::{InBatch, RowSlice};
use contrastive_core::loss::{nt_xent, Denominator, MaskedInfoNce};
use contrastive_core::nn::{linear, InitScheme, Linear, ParamStore};
use contrastive_core::sampling::PairMask;
use contrastive_core::train::{ExtraState, Objective};
use contrastive_core::{Backbone, Error, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

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

/// The GraphCL objective over any graph [`Backbone`] (this crate's [`Gin`] by default): variables
/// `encoder.*` and `proj_head.{0,2}.*`.
pub struct GraphCl<B: Backbone<Input = GraphBatch> = Gin> {
    temperature: f64,
    loss: GraphClLoss,
    /// The GIN's configuration or [`Backbone::describe`], saved with every checkpoint.
    encoder_config: serde_json::Value,
    store: ParamStore,
    encoder: B,
    head: (Linear, Linear),
    collective: Arc<dyn Collective>,
}

impl GraphCl<Gin> {
    /// Builds the GIN and the head with seeded initialisation in `dtype` (f32 to train; f64 for
    /// checks).
    pub fn new(config: GraphClConfig, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut model =
            Self::with_backbone(|vb| Gin::new(&config.gin, vb), config.temperature, config.loss, seed, dtype, device)?;
        model.encoder_config =
            serde_json::to_value(&config.gin).map_err(|e| Error::config("graphcl.gin", e.to_string()))?;
        Ok(model)
    }
}

impl<B: Backbone<Input = GraphBatch>> GraphCl<B> {
    /// GraphCL on a user's own graph encoder: `build` makes it under the `VarBuilder` it is given
    /// (its variables are `encoder.*`), then the head, as wide as [`Backbone::dim`], beside it.
    pub fn with_backbone(
        build: impl FnOnce(candle_nn::VarBuilder) -> Result<B>,
        temperature: f64,
        loss: GraphClLoss,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(Error::config("graphcl.temperature", format!("must be positive, got {temperature}")));
        }
        let store = ParamStore::new(seed, InitScheme::PyTorch);
        let vb = store.var_builder(dtype, device);
        let encoder = build(vb.pp("encoder"))?;
        let d = encoder.dim();
        let head = (linear(d, d, vb.pp("proj_head.0"))?, linear(d, d, vb.pp("proj_head.2"))?);
        let encoder_config = encoder.describe();
        Ok(Self { temperature, loss, encoder_config, store, encoder, head, collective: Arc::new(Local) })
    }

    /// Contrasts over the global batch of `collective`'s processes: every process's projections
    /// of both views meet every other's, while each process back-propagates into its own. Pair it
    /// with [`Trainer::with_collective`](contrastive_core::train::Trainer::with_collective) on the
    /// same collective and a loader's [`Shard`](contrastive_core::data::Shard); GIN's BatchNorm
    /// spans every process's nodes under `collective::set_sync_batch_norm`.
    pub fn with_collective(mut self, collective: Arc<dyn Collective>) -> Self {
        self.collective = collective;
        self
    }

    /// The encoder.
    pub fn encoder(&self) -> &B {
        &self.encoder
    }

    /// Projections of both views: (z1, z2).
    pub fn project(&self, views: &GraphViews) -> candle_core::Result<(Tensor, Tensor)> {
        let head = |h: Tensor| self.head.1.forward(&self.head.0.forward(&h)?.relu()?);
        Ok((head(self.encoder.encode(&views.first, true)?)?, head(self.encoder.encode(&views.second, true)?)?))
    }

    /// The loss of projected views.
    pub fn loss_of(&self, z1: &Tensor, z2: &Tensor) -> candle_core::Result<Tensor> {
        match self.loss {
            GraphClLoss::GraphCl => {
                let loss =
                    MaskedInfoNce { denominator: Denominator::NegativesOnly, ..MaskedInfoNce::new(self.temperature) };
                loss.loss(z1, z2, &PairMask::cross_view(z1.dim(0)?))
            }
            GraphClLoss::NtXent => nt_xent(z1, z2, self.temperature),
        }
    }
}

/// Gradient caching ([`GradCache`](contrastive_core::grad_cache::GradCache)): chunks of graphs.
/// GIN's BatchNorm normalises each chunk's nodes with their own statistics.
impl<B: Backbone<Input = GraphBatch>> InBatch for GraphCl<B> {
    fn rows(&self, batch: &GraphViews) -> Result<usize> {
        Ok(batch.first.num_graphs())
    }

    fn embed_rows(&self, batch: &GraphViews, rows: Range<usize>) -> candle_core::Result<Vec<Tensor>> {
        let wrap = candle_core::Error::wrap;
        let views = GraphViews {
            first: batch.first.slice_rows(rows.clone()).map_err(wrap)?,
            second: batch.second.slice_rows(rows).map_err(wrap)?,
        };
        let (z1, z2) = self.project(&views)?;
        Ok(vec![z1, z2])
    }

    /// The loss over every process's projections of both views.
    fn loss_of_embeddings(&self, _batch: &GraphViews, embeddings: &[Tensor]) -> candle_core::Result<Tensor> {
        let gather = |z: &Tensor| gather_rows(z, self.collective.as_ref()).map_err(candle_core::Error::wrap);
        match embeddings {
            [z1, z2] => self.loss_of(&gather(z1)?, &gather(z2)?),
            other => candle_core::bail!("GraphCL: 2 embeddings (one per view), got {}", other.len()),
        }
    }
}

impl<B: Backbone<Input = GraphBatch>> Objective for GraphCl<B> {
    type Batch = GraphViews;

    fn loss(&mut self, batch: &GraphViews) -> candle_core::Result<Tensor> {
        let (z1, z2) = self.project(batch)?;
        self.loss_of_embeddings(batch, &[z1, z2])
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    /// The (fixed) temperature, logged with each step beside the learnt ones of other methods.
    fn step_figures(&self) -> candle_core::Result<Vec<(&'static str, f64)>> {
        Ok(vec![("temperature", self.temperature)])
    }

    fn config(&self) -> serde_json::Value {
        // The shape GraphClConfig serialises to, so checkpoints of either constructor compare.
        serde_json::json!({ "method": "graphcl", "graphcl": {
            "gin": self.encoder_config,
            "temperature": self.temperature,
            "loss": self.loss,
        } })
    }

    /// The backbone's own state (a dropout stream), so a resume is exact.
    fn extra_state(&self) -> Result<ExtraState> {
        self.encoder.extra_state()
    }

    fn load_extra_state(&mut self, state: ExtraState) -> Result<()> {
        self.encoder.load_extra_state(state)
    }
}
