//! BYOL: "Bootstrap Your Own Latent", Grill et al. 2020, arXiv:2006.07733.
//!
//! Implemented: an online network (encoder, projector, predictor) predicts the projection a
//! target network (encoder, projector: a [`TargetNetwork`] that follows the online one by
//! momentum, cosine-scheduled from 0.996 to 1) gives the other view, with the symmetric negative
//! cosine of lightly's recipe: 0.5 · (-cos(p1, z2') - cos(p2, z1')), which is the paper's
//! 2 - 2 cos up to an affine map. The target gets no gradient. Heads: the paper's 4096-wide
//! hidden layer with BatchNorm, 256-d outputs ([`ByolConfig::paper`]). Deviation: the paper
//! trains with LARS at batch 4096; any optimizer of the trainer can be used.

use super::{check_input, mlp, Branch, ViewPairs};
use crate::error::{Error, Result};
use crate::loss::negative_cosine;
use crate::nn::{InitScheme, Momentum, ParamStore, ProjectionHead, ProjectionHeadConfig, TargetNetwork};
use crate::train::{ExtraState, Objective, Progress};
use crate::Backbone;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// BYOL's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ByolConfig {
    /// The online and target projector (its `input_dim` is the encoder's width).
    pub projector: ProjectionHeadConfig,
    /// The online predictor (from the projector's output back to it).
    pub predictor: ProjectionHeadConfig,
    /// The target's momentum schedule.
    pub momentum: Momentum,
}

impl ByolConfig {
    /// The paper's heads on an encoder `width` wide: projector and predictor 4096 hidden with
    /// BatchNorm, 256 out; the momentum cosine from 0.996.
    pub fn paper(width: usize) -> Self {
        Self::with_widths(width, 4096, 256)
    }

    /// The paper's shape with other widths (lightly's CIFAR-10 recipe: hidden 1024, output 128).
    pub fn with_widths(width: usize, hidden: usize, output: usize) -> Self {
        Self {
            projector: mlp(width, hidden, output, 2, false),
            predictor: mlp(output, hidden, output, 2, false),
            momentum: Momentum::Cosine { base: 0.996 },
        }
    }

    /// Checks the heads fit one another and the momentum.
    pub fn validate(&self) -> Result<()> {
        self.momentum.validate()?;
        check_input("byol", "predictor", &self.predictor, self.projector.output_dim)?;
        if self.predictor.output_dim != self.projector.output_dim {
            return Err(Error::config(
                "byol.predictor.output_dim",
                format!(
                    "is {}, the projector's output is {} wide",
                    self.predictor.output_dim, self.projector.output_dim
                ),
            ));
        }
        self.projector.validate()
    }
}

/// The BYOL objective over any [`Backbone`] and any batch of two views of its input (`P`).
/// Trainable: `encoder.*`, `projector.*`, `predictor.*`; the target travels in the checkpoint's
/// extra state.
pub struct Byol<B: Backbone, P> {
    config: ByolConfig,
    encoder_config: serde_json::Value,
    store: ParamStore,
    online: Branch<B>,
    predictor: ProjectionHead,
    target: TargetNetwork<Branch<B>>,
    batch: PhantomData<fn(&P)>,
}

impl<B: Backbone, P: ViewPairs<View = B::Input>> Byol<B, P> {
    /// BYOL on the encoder `build` makes (twice: online and target) under the `VarBuilder` it is
    /// given, with seeded initialisation.
    pub fn new(
        build: impl Fn(VarBuilder) -> Result<B>,
        config: ByolConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::new(seed, InitScheme::PyTorch);
        let vb = store.var_builder(DType::F32, device);
        let online = Branch::new(&build, &config.projector, "byol", vb.clone())?;
        let predictor = ProjectionHead::new(&config.predictor, vb.pp("predictor"))?;
        let target = TargetNetwork::of_part(
            &store,
            &["predictor."],
            |vb| Branch::new(&build, &config.projector, "byol", vb),
            config.momentum,
            DType::F32,
            device,
        )?;
        let encoder_config = online.encoder.describe();
        Ok(Self { config, encoder_config, store, online, predictor, target, batch: PhantomData })
    }

    /// The online encoder (its output is the representation to evaluate).
    pub fn encoder(&self) -> &B {
        &self.online.encoder
    }

    /// Makes the target a copy of the online network again (after loading weights into it).
    pub fn sync_target(&self) -> Result<()> {
        self.target.sync(&self.store)
    }

    /// The target network's variables.
    pub fn target_params(&self) -> &ParamStore {
        self.target.params()
    }

    /// The online prediction and the target projection (no gradient) of one view.
    fn sides(&self, view: &B::Input) -> candle_core::Result<(Tensor, Tensor)> {
        let p = self.predictor.forward_t(&self.online.project(view)?, true)?;
        let z = self.target.network().project(view)?.detach();
        Ok((p, z))
    }
}

impl<B: Backbone, P: ViewPairs<View = B::Input>> Objective for Byol<B, P> {
    type Batch = P;

    fn loss(&mut self, batch: &P) -> candle_core::Result<Tensor> {
        let (p1, z1) = self.sides(batch.first())?;
        let (p2, z2) = self.sides(batch.second())?;
        (negative_cosine(&p1, &z2)? + negative_cosine(&p2, &z1)?)? * 0.5
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    /// The target follows the online network with the momentum of this step.
    fn after_step(&mut self, progress: &Progress) -> candle_core::Result<()> {
        self.target.update(&self.store, progress.step, progress.total_steps).map_err(candle_core::Error::wrap)?;
        Ok(())
    }

    fn extra_state(&self) -> Result<ExtraState> {
        let mut state = ExtraState { tensors: self.target.state("target."), json: serde_json::json!({}) };
        state.insert("online_encoder", self.online.encoder.extra_state()?);
        state.insert("target_encoder", self.target.network().encoder.extra_state()?);
        Ok(state)
    }

    fn load_extra_state(&mut self, state: ExtraState) -> Result<()> {
        self.target.load_state(&state.tensors, "target.", std::path::Path::new("extra.safetensors"))?;
        self.online.encoder.load_extra_state(state.part("online_encoder"))?;
        self.target.network_mut().encoder.load_extra_state(state.part("target_encoder"))
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "method": "byol", "byol": { "encoder": self.encoder_config, "settings": self.config } })
    }
}
