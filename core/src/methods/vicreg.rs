//! VICReg: "Variance-Invariance-Covariance Regularization for Self-Supervised Learning", Bardes,
//! Ponce and LeCun 2022, arXiv:2105.04906.
//!
//! Implemented: one network (encoder, projector of three layers, BatchNorm and ReLU after the
//! hidden ones) and [`vicreg`](crate::loss::vicreg): the views' projections pulled together
//! (invariance, weight 25), each dimension's standard deviation held above 1 (variance, 25: what
//! keeps it from collapsing) and the dimensions decorrelated (covariance, 1). On several
//! processes the variance and covariance are over the global batch (every process's projections
//! gathered). Heads: the paper's 8192-8192-8192 ([`VicRegConfig::paper`]). Because it needs
//! nothing of images, it trains graphs and sentences as well (`VicReg<Gin, GraphViews>`).

use super::{mlp, Branch, ViewPairs};
use crate::collective::{Collective, Local};
use crate::error::{Error, Result};
use crate::loss::{vicreg, VicRegWeights};
use crate::nn::{InitScheme, ParamStore, ProjectionHeadConfig};
use crate::train::{ExtraState, Objective};
use crate::Backbone;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;

/// VICReg's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VicRegConfig {
    /// The projector (its `input_dim` is the encoder's width).
    pub projector: ProjectionHeadConfig,
    /// The three terms' weights.
    pub weights: VicRegWeights,
}

impl VicRegConfig {
    /// The paper's projector on an encoder `width` wide (8192-8192-8192) and weights 25/25/1.
    pub fn paper(width: usize) -> Self {
        Self::with_widths(width, 8192, 8192)
    }

    /// The paper's shape with other widths (lightly's CIFAR-10 recipe: 2048-2048).
    pub fn with_widths(width: usize, hidden: usize, output: usize) -> Self {
        Self { projector: mlp(width, hidden, output, 3, false), weights: VicRegWeights::default() }
    }

    /// Checks the weights and the projector.
    pub fn validate(&self) -> Result<()> {
        let w = &self.weights;
        for (field, v) in [("invariance", w.invariance), ("variance", w.variance), ("covariance", w.covariance)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::config(
                    format!("vicreg.weights.{field}"),
                    format!("must be finite and >= 0, got {v}"),
                ));
            }
        }
        if !(w.eps > 0.0 && w.eps.is_finite()) {
            return Err(Error::config("vicreg.weights.eps", format!("must be positive, got {}", w.eps)));
        }
        self.projector.validate()
    }
}

/// The VICReg objective over any [`Backbone`] and any batch of two views of its input (`P`):
/// variables `encoder.*`, `projector.*`.
pub struct VicReg<B: Backbone, P> {
    config: VicRegConfig,
    encoder_config: serde_json::Value,
    store: ParamStore,
    network: Branch<B>,
    collective: Arc<dyn Collective>,
    batch: PhantomData<fn(&P)>,
}

impl<B: Backbone, P: ViewPairs<View = B::Input>> VicReg<B, P> {
    /// VICReg on the encoder `build` makes under the `VarBuilder` it is given, with seeded
    /// initialisation.
    pub fn new(
        build: impl Fn(VarBuilder) -> Result<B>,
        config: VicRegConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::new(seed, InitScheme::PyTorch);
        let network = Branch::new(&build, &config.projector, "vicreg", store.var_builder(DType::F32, device))?;
        let encoder_config = network.encoder.describe();
        Ok(Self { config, encoder_config, store, network, collective: Arc::new(Local), batch: PhantomData })
    }

    /// Data-parallel: variance and covariance over every process's projections.
    pub fn with_collective(mut self, collective: Arc<dyn Collective>) -> Self {
        self.collective = collective;
        self
    }

    /// The encoder (its output is the representation to evaluate).
    pub fn encoder(&self) -> &B {
        &self.network.encoder
    }
}

impl<B: Backbone, P: ViewPairs<View = B::Input>> Objective for VicReg<B, P> {
    type Batch = P;

    fn loss(&mut self, batch: &P) -> candle_core::Result<Tensor> {
        let (z1, z2) = self.network.project_global(batch, self.collective.as_ref())?;
        vicreg(&z1, &z2, &self.config.weights)
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
        serde_json::json!({ "method": "vicreg", "vicreg": { "encoder": self.encoder_config, "settings": self.config } })
    }
}
