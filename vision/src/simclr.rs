//! SimCLR: "A Simple Framework for Contrastive Learning of Visual Representations", Chen, Kornblith,
//! Norouzi and Hinton, 2020, arXiv:2002.05709.
//!
//! Implemented: encoder, projection head, NT-Xent over the 2N views of a batch (each view's
//! positive is the other view of its image, the 2N - 2 other views are negatives). Each view goes
//! through the network as its own forward pass, so BatchNorm sees the statistics of one view at a
//! time (as lightly's examples do). Deviation: the paper trains with LARS at batch 4096; any
//! optimizer of the core trainer can be used here (the examples use Adam, as the PyTorch
//! reference recipe does).

use crate::batch::ViewBatch;
use crate::encoder::{Encoder, EncoderConfig};
use candle_core::{DType, Device, ModuleT, Tensor};
use contrastive_core::loss::nt_xent;
use contrastive_core::nn::{InitScheme, ParamStore, ProjectionHead, ProjectionHeadConfig};
use contrastive_core::train::Objective;
use contrastive_core::{Error, Result};
use serde::{Deserialize, Serialize};

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

/// The SimCLR objective: variables `encoder.*` and `head.*` in one store.
pub struct SimClr {
    config: SimClrConfig,
    store: ParamStore,
    encoder: Encoder,
    head: ProjectionHead,
}

impl SimClr {
    /// Builds the networks with seeded initialisation.
    pub fn new(config: SimClrConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::new(seed, InitScheme::PyTorch);
        let vb = store.var_builder(DType::F32, device);
        let encoder = Encoder::new(&config.encoder, vb.pp("encoder"))?;
        if config.head.input_dim != encoder.dim() {
            return Err(Error::config(
                "simclr.head.input_dim",
                format!("is {}, the encoder's output is {} wide", config.head.input_dim, encoder.dim()),
            ));
        }
        let head = ProjectionHead::new(&config.head, vb.pp("head"))?;
        Ok(Self { config, store, encoder, head })
    }

    /// The encoder (its output is the representation to evaluate).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Encoder and head outputs of a batch of images: (h, z).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<(Tensor, Tensor)> {
        let h = self.encoder.forward_t(x, train)?;
        let z = self.head.forward_t(&h, train)?;
        Ok((h, z))
    }
}

impl Objective for SimClr {
    type Batch = ViewBatch;

    fn loss(&mut self, batch: &ViewBatch) -> candle_core::Result<Tensor> {
        let (_, z1) = self.forward_t(&batch.first, true)?;
        let (_, z2) = self.forward_t(&batch.second, true)?;
        nt_xent(&z1, &z2, self.config.temperature)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "method": "simclr", "simclr": self.config })
    }
}
