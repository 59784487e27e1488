//! Barlow Twins: "Self-Supervised Learning via Redundancy Reduction", Zbontar, Jing, Misra, LeCun
//! and Deny 2021, arXiv:2103.03230.
//!
//! Implemented: one network (encoder, projector of three layers, BatchNorm and ReLU after the
//! hidden ones) and [`barlow_twins`](crate::loss::barlow_twins): the cross-correlation of the two
//! views' standardised projections pushed to the identity (λ = 5e-3 on the off-diagonal terms).
//! Collapse is kept off by the decorrelation: a constant output has no correlation to match. On
//! several processes the correlation is over the global batch (every process's projections
//! gathered, each process's gradient into its own rows), as the authors' all-reduce does.
//! Heads: the paper's 8192-8192-8192 ([`BarlowTwinsConfig::paper`]).

use super::{mlp, Branch, ViewPairs};
use crate::collective::{Collective, Local};
use crate::error::{Error, Result};
use crate::loss::{barlow_twins, BARLOW_TWINS_LAMBDA};
use crate::nn::{InitScheme, ParamStore, ProjectionHeadConfig};
use crate::train::{ExtraState, Objective};
use crate::Backbone;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;

/// Barlow Twins' settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BarlowTwinsConfig {
    /// The projector (its `input_dim` is the encoder's width).
    pub projector: ProjectionHeadConfig,
    /// Weight of the off-diagonal (redundancy) terms.
    pub lambda: f64,
}

impl BarlowTwinsConfig {
    /// The paper's projector on an encoder `width` wide (8192-8192-8192) and λ = 5e-3.
    pub fn paper(width: usize) -> Self {
        Self::with_widths(width, 8192, 8192)
    }

    /// The paper's shape with other widths (lightly's CIFAR-10 recipe: 2048-2048).
    pub fn with_widths(width: usize, hidden: usize, output: usize) -> Self {
        Self { projector: mlp(width, hidden, output, 3, false), lambda: BARLOW_TWINS_LAMBDA }
    }

    /// Checks λ and the projector.
    pub fn validate(&self) -> Result<()> {
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(Error::config("barlow_twins.lambda", format!("must be finite and >= 0, got {}", self.lambda)));
        }
        self.projector.validate()
    }
}

/// The Barlow Twins objective over any [`Backbone`] and any batch of two views of its input
/// (`P`): variables `encoder.*`, `projector.*`.
pub struct BarlowTwins<B: Backbone, P> {
    config: BarlowTwinsConfig,
    encoder_config: serde_json::Value,
    store: ParamStore,
    network: Branch<B>,
    collective: Arc<dyn Collective>,
    batch: PhantomData<fn(&P)>,
}

impl<B: Backbone, P: ViewPairs<View = B::Input>> BarlowTwins<B, P> {
    /// Barlow Twins on the encoder `build` makes under the `VarBuilder` it is given, with seeded
    /// initialisation.
    pub fn new(
        build: impl Fn(VarBuilder) -> Result<B>,
        config: BarlowTwinsConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::new(seed, InitScheme::PyTorch);
        let network = Branch::new(&build, &config.projector, "barlow_twins", store.var_builder(DType::F32, device))?;
        let encoder_config = network.encoder.describe();
        Ok(Self { config, encoder_config, store, network, collective: Arc::new(Local), batch: PhantomData })
    }

    /// Data-parallel: the cross-correlation over every process's projections.
    pub fn with_collective(mut self, collective: Arc<dyn Collective>) -> Self {
        self.collective = collective;
        self
    }

    /// The encoder (its output is the representation to evaluate).
    pub fn encoder(&self) -> &B {
        &self.network.encoder
    }
}

impl<B: Backbone, P: ViewPairs<View = B::Input>> Objective for BarlowTwins<B, P> {
    type Batch = P;

    fn loss(&mut self, batch: &P) -> candle_core::Result<Tensor> {
        let (z1, z2) = self.network.project_global(batch, self.collective.as_ref())?;
        barlow_twins(&z1, &z2, self.config.lambda)
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
        serde_json::json!({ "method": "barlow_twins", "barlow_twins": { "encoder": self.encoder_config, "settings": self.config } })
    }
}
