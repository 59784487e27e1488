//! The methods without negatives, for any modality: [`Byol`], [`SimSiam`], [`BarlowTwins`],
//! [`VicReg`] (two views of each sample: images, graphs, sentences through dropout twice) and
//! [`Dino`] (multi-crop). Each is generic over the encoder (a [`Backbone`]) and over the batch
//! that carries its views ([`ViewPairs`], [`CropViews`]); the modality crates implement those for
//! their batches, so `Byol<Encoder, ViewBatch>` trains images and `VicReg<Gin, GraphViews>`
//! graphs with the same code.
//!
//! They learn without negatives, so nothing in the loss forbids the trivial solution of one
//! output for every input: each prevents it its own way (a predictor and a stop-gradient, a
//! momentum target, decorrelation, variance and covariance terms, centring and sharpening). When
//! one fails anyway, [`Trainer::add_collapse_monitor`](crate::train::Trainer::add_collapse_monitor)
//! says so in the history.

mod barlow_twins;
mod byol;
mod dino;
mod simsiam;
mod vicreg;

pub use barlow_twins::{BarlowTwins, BarlowTwinsConfig};
pub use byol::{Byol, ByolConfig};
pub use dino::{Dino, DinoConfig, DinoHead, DinoHeadConfig};
pub use simsiam::{SimSiam, SimSiamConfig};
pub use vicreg::{VicReg, VicRegConfig};

use crate::collective::{gather_rows, Collective};
use crate::error::{Error, Result};
use crate::nn::{ProjectionHead, ProjectionHeadConfig};
use crate::train::ExtraState;
use crate::Backbone;
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// A batch that carries two views of each sample.
pub trait ViewPairs {
    /// What the encoder reads for one view of the batch.
    type View;
    /// The first views.
    fn first(&self) -> &Self::View;
    /// The second views.
    fn second(&self) -> &Self::View;
}

/// A batch of multi-crop views (DINO): a few global views and several local ones of each sample.
pub trait CropViews {
    /// What the encoder reads for one view of the batch.
    type View;
    /// The global views (the teacher's input), each of the whole batch.
    fn global_views(&self) -> &[Self::View];
    /// The local views (the student's alone).
    fn local_views(&self) -> &[Self::View];
}

/// Two views as a pair: `(first, second)`.
impl<T> ViewPairs for (T, T) {
    type View = T;
    fn first(&self) -> &T {
        &self.0
    }
    fn second(&self) -> &T {
        &self.1
    }
}

/// Multi-crop views as a pair of lists: `(global, local)`.
impl<T> CropViews for (Vec<T>, Vec<T>) {
    type View = T;
    fn global_views(&self) -> &[T] {
        &self.0
    }
    fn local_views(&self) -> &[T] {
        &self.1
    }
}

/// An encoder and the projector after it: the online network of the two-view methods (and
/// BYOL's target).
pub(crate) struct Branch<B> {
    pub(crate) encoder: B,
    pub(crate) projector: ProjectionHead,
}

impl<B: Backbone> Branch<B> {
    /// Builds `encoder.*` and `projector.*` under `vb`; the projector must read the encoder's width.
    pub(crate) fn new(
        build: &impl Fn(VarBuilder) -> Result<B>,
        projector: &ProjectionHeadConfig,
        method: &str,
        vb: VarBuilder,
    ) -> Result<Self> {
        let encoder = build(vb.pp("encoder"))?;
        check_input(method, "projector", projector, encoder.dim())?;
        let projector = ProjectionHead::new(projector, vb.pp("projector"))?;
        Ok(Self { encoder, projector })
    }

    /// The projections of one view, in training mode.
    pub(crate) fn project(&self, view: &B::Input) -> candle_core::Result<Tensor> {
        self.projector.forward_t(&self.encoder.encode(view, true)?, true)
    }

    /// Both views' projections of every process (each process's gradient into its own rows):
    /// what statistics over the global batch need (Barlow Twins, VICReg).
    pub(crate) fn project_global<P: ViewPairs<View = B::Input>>(
        &self,
        batch: &P,
        collective: &dyn Collective,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let gather = |z: Tensor| gather_rows(&z, collective).map_err(candle_core::Error::wrap);
        Ok((gather(self.project(batch.first())?)?, gather(self.project(batch.second())?)?))
    }

    /// The encoder's own state (a dropout stream) as the checkpoint's extra state.
    pub(crate) fn state(&self) -> Result<ExtraState> {
        let mut state = ExtraState::default();
        state.insert("encoder", self.encoder.extra_state()?);
        Ok(state)
    }

    /// Restores what [`Branch::state`] saved.
    pub(crate) fn load_state(&mut self, state: ExtraState) -> Result<()> {
        self.encoder.load_extra_state(state.part("encoder"))
    }
}

/// A head must read what comes before it.
pub(crate) fn check_input(method: &str, head: &str, config: &ProjectionHeadConfig, width: usize) -> Result<()> {
    config.validate()?;
    if config.input_dim != width {
        return Err(Error::config(
            format!("{method}.{head}.input_dim"),
            format!("is {}, what it reads is {width} wide", config.input_dim),
        ));
    }
    Ok(())
}

/// A head of `layers` linear layers, BatchNorm after the hidden ones (and after the last when
/// `output_batch_norm`).
pub(crate) fn mlp(
    input: usize,
    hidden: usize,
    output: usize,
    layers: usize,
    output_batch_norm: bool,
) -> ProjectionHeadConfig {
    ProjectionHeadConfig {
        input_dim: input,
        hidden_dim: hidden,
        output_dim: output,
        layers,
        batch_norm: true,
        output_batch_norm,
    }
}
