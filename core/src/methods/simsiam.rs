//! SimSiam: "Exploring Simple Siamese Representation Learning", Chen and He 2021,
//! arXiv:2011.10566.
//!
//! Implemented: one network (encoder, projector of three layers with BatchNorm after each, the
//! last without ReLU), a bottleneck predictor, and the symmetric negative cosine between each
//! view's prediction and the other view's projection with the gradient stopped:
//! 0.5 · (-cos(p1, sg(z2)) - cos(p2, sg(z1))). The stop-gradient is what keeps it from collapsing
//! (the paper's section 4.1). Heads: the paper's projector 2048-2048-2048 and predictor
//! 2048-512-2048 ([`SimSiamConfig::paper`]).

use super::{check_input, mlp, Branch, ViewPairs};
use crate::error::{Error, Result};
use crate::loss::negative_cosine;
use crate::nn::{InitScheme, ParamStore, ProjectionHead, ProjectionHeadConfig};
use crate::train::{ExtraState, Objective};
use crate::Backbone;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// SimSiam's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimSiamConfig {
    /// The projector (its `input_dim` is the encoder's width).
    pub projector: ProjectionHeadConfig,
    /// The predictor (from the projector's output back to it).
    pub predictor: ProjectionHeadConfig,
}

impl SimSiamConfig {
    /// The paper's heads on an encoder `width` wide: projector 2048-2048-2048 with BatchNorm after
    /// every layer, predictor 2048-512-2048.
    pub fn paper(width: usize) -> Self {
        Self::with_widths(width, 2048, 2048, 512)
    }

    /// The paper's shape with other widths (lightly's CIFAR-10 recipe: projector hidden 512,
    /// output 128, predictor hidden 64).
    pub fn with_widths(width: usize, hidden: usize, output: usize, predictor_hidden: usize) -> Self {
        Self {
            projector: mlp(width, hidden, output, 3, true),
            predictor: mlp(output, predictor_hidden, output, 2, false),
        }
    }

    /// Checks the heads fit one another.
    pub fn validate(&self) -> Result<()> {
        self.projector.validate()?;
        check_input("simsiam", "predictor", &self.predictor, self.projector.output_dim)?;
        if self.predictor.output_dim != self.projector.output_dim {
            return Err(Error::config(
                "simsiam.predictor.output_dim",
                format!(
                    "is {}, the projector's output is {} wide",
                    self.predictor.output_dim, self.projector.output_dim
                ),
            ));
        }
        Ok(())
    }
}

/// The SimSiam objective over any [`Backbone`] and any batch of two views of its input (`P`):
/// variables `encoder.*`, `projector.*`, `predictor.*`.
pub struct SimSiam<B: Backbone, P> {
    config: SimSiamConfig,
    encoder_config: serde_json::Value,
    store: ParamStore,
    network: Branch<B>,
    predictor: ProjectionHead,
    batch: PhantomData<fn(&P)>,
}

impl<B: Backbone, P: ViewPairs<View = B::Input>> SimSiam<B, P> {
    /// SimSiam on the encoder `build` makes under the `VarBuilder` it is given, with seeded
    /// initialisation.
    pub fn new(
        build: impl Fn(VarBuilder) -> Result<B>,
        config: SimSiamConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::new(seed, InitScheme::PyTorch);
        let vb = store.var_builder(DType::F32, device);
        let network = Branch::new(&build, &config.projector, "simsiam", vb.clone())?;
        let predictor = ProjectionHead::new(&config.predictor, vb.pp("predictor"))?;
        let encoder_config = network.encoder.describe();
        Ok(Self { config, encoder_config, store, network, predictor, batch: PhantomData })
    }

    /// The encoder (its output is the representation to evaluate).
    pub fn encoder(&self) -> &B {
        &self.network.encoder
    }
}

impl<B: Backbone, P: ViewPairs<View = B::Input>> Objective for SimSiam<B, P> {
    type Batch = P;

    fn loss(&mut self, batch: &P) -> candle_core::Result<Tensor> {
        let z1 = self.network.project(batch.first())?;
        let z2 = self.network.project(batch.second())?;
        let (p1, p2) = (self.predictor.forward_t(&z1, true)?, self.predictor.forward_t(&z2, true)?);
        (negative_cosine(&p1, &z2.detach())? + negative_cosine(&p2, &z1.detach())?)? * 0.5
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn extra_state(&self) -> Result<ExtraState> {
        self.network.state()
    }

    fn load_extra_state(&mut self, state: ExtraState) -> Result<()> {
        self.network.load_state(state)
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "method": "simsiam", "simsiam": { "encoder": self.encoder_config, "settings": self.config } })
    }
}
