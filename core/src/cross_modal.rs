//! Two encoders of two modalities trained to agree (CLIP, Radford et al. 2021, arXiv:2103.00020):
//! any two [`Backbone`]s (the towers), one [`ParamStore`], CLIP's symmetric loss ([`crate::loss::clip_loss`]) and
//! its learnable, clamped temperature. The trainer sees one [`Objective`], as for every method.
//!
//! ```
//! use candle_core::{DType, Device, Module, Result, Tensor};
//! use contrastive_core::cross_modal::{Clip, ClipBatch, ClipConfig};
//! use contrastive_core::nn::{linear, InitScheme, Linear, ParamStore};
//! use contrastive_core::train::Objective;
//! use contrastive_core::Backbone;
//!
//! /// A tower that is one linear layer over feature rows.
//! struct Rows(Linear);
//! impl Backbone for Rows {
//!     type Input = Tensor;
//!     fn encode(&self, x: &Tensor, _train: bool) -> Result<Tensor> { self.0.forward(x) }
//!     fn dim(&self) -> usize { 4 }
//! }
//!
//! let store = ParamStore::new(0, InitScheme::PyTorch);
//! let vb = store.var_builder(DType::F32, &Device::Cpu);
//! let (a, b) = (Rows(linear(6, 4, vb.pp("a"))?), Rows(linear(3, 4, vb.pp("b"))?));
//! let mut clip = Clip::new(a, b, store, ClipConfig::default())?;
//! let batch = ClipBatch {
//!     a: Tensor::randn(0f32, 1., (8, 6), &Device::Cpu)?,
//!     b: Tensor::randn(0f32, 1., (8, 3), &Device::Cpu)?,
//! };
//! let loss = clip.loss(&batch)?; // near ln 8 for untrained towers
//! assert!((clip.temperature()? - 0.07).abs() < 1e-6);
//! # Ok::<(), contrastive_core::Error>(())
//! ```

use crate::backbone::Backbone;
use crate::collective::{gather_rows, Collective, Local};
use crate::error::{Error, Result};
use crate::grad_cache::{InBatch, RowSlice};
use crate::loss::clip_loss;
use crate::nn::ParamStore;
use crate::train::{ExtraState, Objective};
use candle_core::{DType, Tensor, Var};
use candle_nn::Init;
use std::ops::Range;
use std::sync::Arc;

/// CLIP's temperature settings (the paper's defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClipConfig {
    /// Initial temperature: the logit scale starts at ln(1 / this) (CLIP: 0.07).
    pub init_temperature: f64,
    /// The largest logit scale: after every step the scale is clamped to [1, this] (CLIP: 100,
    /// "to prevent scaling the logits by more than 100, which we found necessary to prevent
    /// training instability").
    pub max_logit_scale: f64,
    /// Learn the temperature (CLIP) or keep it fixed.
    pub learnable: bool,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self { init_temperature: 0.07, max_logit_scale: 100.0, learnable: true }
    }
}

impl ClipConfig {
    /// Checks the values, naming the field.
    pub fn validate(&self) -> Result<()> {
        let t = self.init_temperature;
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::config("clip.init_temperature", format!("must be finite and > 0, got {t}")));
        }
        if !(self.max_logit_scale.is_finite() && self.max_logit_scale >= 1.0) {
            return Err(Error::config(
                "clip.max_logit_scale",
                format!("must be finite and >= 1, got {}", self.max_logit_scale),
            ));
        }
        if 1.0 / t > self.max_logit_scale {
            return Err(Error::config(
                "clip.init_temperature",
                format!("1/{t} is above max_logit_scale {}", self.max_logit_scale),
            ));
        }
        Ok(())
    }
}

/// A batch of N pairs: row i of `a` and row i of `b` are one item seen by the two towers.
#[derive(Clone, Debug)]
pub struct ClipBatch<A, B> {
    /// The first tower's input.
    pub a: A,
    /// The second tower's input.
    pub b: B,
}

/// Two towers and a learnable logit scale, trained with CLIP's symmetric InfoNCE.
pub struct Clip<A: Backbone, B: Backbone> {
    a: A,
    b: B,
    store: ParamStore,
    /// The log logit scale: a variable of the store when learnable, else a constant.
    log_scale: LogScale,
    config: ClipConfig,
    collective: Arc<dyn Collective>,
}

enum LogScale {
    Learnable(Var),
    Fixed(Tensor),
}

impl LogScale {
    fn tensor(&self) -> &Tensor {
        match self {
            LogScale::Learnable(v) => v.as_tensor(),
            LogScale::Fixed(t) => t,
        }
    }
}

/// The variable name of the log logit scale in the store.
pub const LOG_SCALE: &str = "logit_scale";

impl<A: Backbone, B: Backbone> Clip<A, B> {
    /// Both towers' variables must live in `store`; a learnable log logit scale is added to it
    /// as [`LOG_SCALE`] (f32, shape (1,)), so the optimiser and checkpoints see it.
    pub fn new(a: A, b: B, store: ParamStore, config: ClipConfig) -> Result<Self> {
        config.validate()?;
        let device = store.all().first().map(|(_, v)| v.device().clone()).unwrap_or(candle_core::Device::Cpu);
        let init = (1.0 / config.init_temperature).ln();
        let log_scale = if config.learnable {
            store.var_builder(DType::F32, &device).get_with_hints(1, LOG_SCALE, Init::Const(init))?;
            LogScale::Learnable(
                store.get(LOG_SCALE).ok_or_else(|| Error::config("clip", format!("the store lost `{LOG_SCALE}`")))?,
            )
        } else {
            LogScale::Fixed(Tensor::new(&[init as f32], &device)?)
        };
        Ok(Self { a, b, store, log_scale, config, collective: Arc::new(Local) })
    }

    /// Contrasts over the global batch of `collective`'s processes (CLIP's all-gather): every
    /// process's embeddings of both towers meet every other's, while each process
    /// back-propagates into its own ([`gather_rows`]). Pair it with
    /// [`Trainer::with_collective`](crate::train::Trainer::with_collective) on the same collective
    /// and a loader's [`Shard`](crate::data::Shard). Towers with dropout or BatchNorm see the
    /// global batch only if they say so themselves (SyncBatchNorm, `nn::in_global_batch`).
    pub fn with_collective(mut self, collective: Arc<dyn Collective>) -> Self {
        self.collective = collective;
        self
    }

    /// The first tower.
    pub fn tower_a(&self) -> &A {
        &self.a
    }

    /// The second tower.
    pub fn tower_b(&self) -> &B {
        &self.b
    }

    /// The current temperature, 1 / e^t.
    pub fn temperature(&self) -> Result<f64> {
        Ok((-self.log_scale_value()?).exp())
    }

    fn log_scale_value(&self) -> Result<f64> {
        Ok(self.log_scale.tensor().flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?[0])
    }

    /// Both towers' embeddings of a batch in evaluation mode.
    pub fn embed(&self, batch: &ClipBatch<A::Input, B::Input>) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((self.a.encode(&batch.a, false)?, self.b.encode(&batch.b, false)?))
    }

    /// CLIP's loss over every process's embeddings of both towers.
    fn loss_of_both(&self, za: &Tensor, zb: &Tensor) -> candle_core::Result<Tensor> {
        let gather = |z: &Tensor| gather_rows(z, self.collective.as_ref()).map_err(candle_core::Error::wrap);
        clip_loss(&gather(za)?, &gather(zb)?, self.log_scale.tensor())
    }

    /// The towers and the store, for saving or evaluation after training.
    pub fn into_parts(self) -> (A, B, ParamStore) {
        (self.a, self.b, self.store)
    }
}

/// Gradient caching ([`GradCache`](crate::grad_cache::GradCache)) for towers whose inputs split
/// by rows. A tower with dropout draws each chunk's masks for that chunk (replayed exactly in the
/// second pass), unless it keys them by the rows' place in the whole batch.
impl<A, B> InBatch for Clip<A, B>
where
    A: Backbone,
    B: Backbone,
    A::Input: RowSlice,
    B::Input: RowSlice,
{
    fn rows(&self, batch: &Self::Batch) -> Result<usize> {
        let (a, b) = (batch.a.row_count()?, batch.b.row_count()?);
        if a != b {
            return Err(Error::shape("ClipBatch.b", format!("{a} rows, as the first tower's input"), &[b]));
        }
        Ok(a)
    }

    fn embed_rows(&self, batch: &Self::Batch, rows: Range<usize>) -> candle_core::Result<Vec<Tensor>> {
        let wrap = candle_core::Error::wrap;
        let a = batch.a.slice_rows(rows.clone()).map_err(wrap)?;
        let b = batch.b.slice_rows(rows).map_err(wrap)?;
        Ok(vec![self.a.encode(&a, true)?, self.b.encode(&b, true)?])
    }

    fn loss_of_embeddings(&self, _batch: &Self::Batch, embeddings: &[Tensor]) -> candle_core::Result<Tensor> {
        match embeddings {
            [za, zb] => self.loss_of_both(za, zb),
            other => candle_core::bail!("CLIP: 2 embeddings (one per tower), got {}", other.len()),
        }
    }
}

impl<A: Backbone, B: Backbone> Objective for Clip<A, B> {
    type Batch = ClipBatch<A::Input, B::Input>;

    fn loss(&mut self, batch: &Self::Batch) -> candle_core::Result<Tensor> {
        let za = self.a.encode(&batch.a, true)?;
        let zb = self.b.encode(&batch.b, true)?;
        self.loss_of_both(&za, &zb)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    /// CLIP clamps the logit scale after each optimiser step: e^t in [1, max_logit_scale].
    fn after_step(&mut self, _progress: &crate::train::Progress) -> candle_core::Result<()> {
        match &self.log_scale {
            LogScale::Learnable(v) => v.set(&v.as_tensor().clamp(0.0, self.config.max_logit_scale.ln())?),
            LogScale::Fixed(_) => Ok(()),
        }
    }

    /// The temperature after the step: learnt, or fixed.
    fn step_figures(&self) -> candle_core::Result<Vec<(&'static str, f64)>> {
        Ok(vec![("temperature", self.temperature().map_err(candle_core::Error::wrap)?)])
    }

    fn extra_state(&self) -> Result<ExtraState> {
        let mut state = ExtraState::default();
        state.insert("a", self.a.extra_state()?);
        state.insert("b", self.b.extra_state()?);
        Ok(state)
    }

    fn load_extra_state(&mut self, state: ExtraState) -> Result<()> {
        self.a.load_extra_state(state.part("a"))?;
        self.b.load_extra_state(state.part("b"))
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "method": "clip", "clip": self.config, "a": self.a.describe(), "b": self.b.describe() })
    }
}
