//! SimCLR: "A Simple Framework for Contrastive Learning of Visual Representations", Chen, Kornblith,
//! Norouzi and Hinton, 2020, arXiv:2002.05709.
//!
//! Implemented: encoder, projection head, NT-Xent over the 2N views of a batch (each view's
//! positive is the other view of its image, the 2N - 2 other views are negatives). Each view goes
//! through the network as its own forward pass, so BatchNorm sees the statistics of one view at a
//! time (as lightly's examples do). Deviation: the paper trains with LARS at batch 4096; any
//! optimizer of the core trainer can be used here (the examples use Adam, as the PyTorch
//! reference recipe does).
//!
//! Any encoder trains: [`SimClr::new`] builds one of this crate's from a config,
//! [`SimClr::with_backbone`] takes a user's own candle model (a [`Backbone`]).

use crate::batch::ViewBatch;
use crate::encoder::{Encoder, EncoderConfig};
use candle_core::{DType, Device, Tensor};
use contrastive_core::collective::{gather_rows, Collective, Local};
use contrastive_core::grad_cache::InBatch;
use contrastive_core::loss::nt_xent;
use contrastive_core::nn::{InitScheme, ParamStore, ProjectionHead, ProjectionHeadConfig};
use contrastive_core::train::{ExtraState, Objective};
use contrastive_core::{Backbone, Error, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

/// SimCLR's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimClrConfig {
    /// The encoder.
    pub encoder: EncoderConfig,
    /// The projection head (its `input_dim` must be the encoder's width).
    pub head: ProjectionHeadConfig,
    /// NT-Xent temperature.
    pub temperature: f64,
}

impl Default for SimClrConfig {
    /// The small ConvNet with the head 256-256(BN)-64 and temperature 0.5 (SimCLR's CIFAR-10
    /// setting; the PyTorch reference recipe).
    fn default() -> Self {
        Self {
            encoder: EncoderConfig::default(),
            head: ProjectionHeadConfig {
                input_dim: 256,
                hidden_dim: 256,
                output_dim: 64,
                layers: 2,
                batch_norm: true,
                output_batch_norm: false,
            },
            temperature: 0.5,
        }
    }
}

impl SimClrConfig {
    /// Checks the temperature and the head.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::config("simclr.temperature", format!("must be positive, got {}", self.temperature)));
        }
        self.head.validate()
    }
}

/// The SimCLR objective over any [`Backbone`] (this crate's [`Encoder`] by default): variables
/// `encoder.*` and `head.*` in one store.
pub struct SimClr<B: Backbone<Input = Tensor> = Encoder> {
    head_config: ProjectionHeadConfig,
    temperature: f64,
    /// The encoder's configuration or [`Backbone::describe`], saved with every checkpoint.
    encoder_config: serde_json::Value,
    store: ParamStore,
    encoder: B,
    head: ProjectionHead,
    /// The processes whose embeddings NT-Xent sees as one global batch.
    collective: Arc<dyn Collective>,
}

impl SimClr<Encoder> {
    /// Builds one of this crate's encoders and the head, with seeded initialisation.
    pub fn new(config: SimClrConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let described =
            serde_json::to_value(&config.encoder).map_err(|e| Error::config("simclr.encoder", e.to_string()))?;
        let mut model = Self::with_backbone(
            |vb| Encoder::new(&config.encoder, vb),
            config.head.clone(),
            config.temperature,
            seed,
            device,
        )?;
        model.encoder_config = described;
        Ok(model)
    }
}

impl<B: Backbone<Input = Tensor>> SimClr<B> {
    /// SimCLR on a user's own encoder: `build` makes it under the `VarBuilder` it is given (so
    /// its variables are `encoder.*` of this method's store), then the head (`head.input_dim`
    /// must be [`Backbone::dim`]) is built beside it.
    pub fn with_backbone(
        build: impl FnOnce(candle_nn::VarBuilder) -> Result<B>,
        head: ProjectionHeadConfig,
        temperature: f64,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(Error::config("simclr.temperature", format!("must be positive, got {temperature}")));
        }
        head.validate()?;
        let store = ParamStore::new(seed, InitScheme::PyTorch);
        let vb = store.var_builder(DType::F32, device);
        let encoder = build(vb.pp("encoder"))?;
        if head.input_dim != encoder.dim() {
            return Err(Error::config(
                "simclr.head.input_dim",
                format!("is {}, the encoder's output is {} wide", head.input_dim, encoder.dim()),
            ));
        }
        let projection = ProjectionHead::new(&head, vb.pp("head"))?;
        let encoder_config = encoder.describe();
        Ok(Self {
            head_config: head,
            temperature,
            encoder_config,
            store,
            encoder,
            head: projection,
            collective: Arc::new(Local),
        })
    }

    /// Data-parallel SimCLR: NT-Xent over every process's embeddings (the global batch as
    /// negatives, as SimCLR's large-batch runs), each process's gradient into its own rows. Pair
    /// it with [`Trainer::with_collective`](contrastive_core::train::Trainer::with_collective) on
    /// the same collective and a loader's [`Shard`](contrastive_core::data::Shard).
    pub fn with_collective(mut self, collective: Arc<dyn Collective>) -> Self {
        self.collective = collective;
        self
    }

    /// The encoder (its output is the representation to evaluate).
    pub fn encoder(&self) -> &B {
        &self.encoder
    }

    /// Encoder and head outputs of a batch of images: (h, z).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<(Tensor, Tensor)> {
        let h = self.encoder.encode(x, train)?;
        let z = self.head.forward_t(&h, train)?;
        Ok((h, z))
    }
}

/// Gradient caching ([`GradCache`](contrastive_core::grad_cache::GradCache)): chunks of images;
/// BatchNorm normalises each chunk on its own (with `chunk` rows, as batches of `chunk` would).
impl<B: Backbone<Input = Tensor>> InBatch for SimClr<B> {
    fn rows(&self, batch: &ViewBatch) -> Result<usize> {
        Ok(batch.first.dim(0)?)
    }

    fn embed_rows(&self, batch: &ViewBatch, rows: Range<usize>) -> candle_core::Result<Vec<Tensor>> {
        let take = |x: &Tensor| x.narrow(0, rows.start, rows.len());
        let (_, z1) = self.forward_t(&take(&batch.first)?, true)?;
        let (_, z2) = self.forward_t(&take(&batch.second)?, true)?;
        Ok(vec![z1, z2])
    }

    /// NT-Xent over every process's projections of both views.
    fn loss_of_embeddings(&self, _batch: &ViewBatch, embeddings: &[Tensor]) -> candle_core::Result<Tensor> {
        let gather = |z: &Tensor| gather_rows(z, self.collective.as_ref()).map_err(candle_core::Error::wrap);
        match embeddings {
            [z1, z2] => nt_xent(&gather(z1)?, &gather(z2)?, self.temperature),
            other => candle_core::bail!("SimCLR: 2 embeddings (one per view), got {}", other.len()),
        }
    }
}

impl<B: Backbone<Input = Tensor>> Objective for SimClr<B> {
    type Batch = ViewBatch;

    fn loss(&mut self, batch: &ViewBatch) -> candle_core::Result<Tensor> {
        let (_, z1) = self.forward_t(&batch.first, true)?;
        let (_, z2) = self.forward_t(&batch.second, true)?;
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
        // The shape SimClrConfig serialises to, so checkpoints of either constructor compare.
        serde_json::json!({ "method": "simclr", "simclr": {
            "encoder": self.encoder_config,
            "head": self.head_config,
            "temperature": self.temperature,
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
