//! What a method implements ([`Objective`]: batch in, scalar loss out) and what the trainer hands
//! its hooks ([`Progress`]) and keeps of it ([`ExtraState`]).

use crate::error::Result;
use crate::nn::ParamStore;
use candle_core::Tensor;
use std::collections::HashMap;

/// What a method implements: turn a batch into a scalar loss.
pub trait Objective {
    /// What the loader yields.
    type Batch;

    /// The loss of one batch, in training mode.
    fn loss(&mut self, batch: &Self::Batch) -> candle_core::Result<Tensor>;

    /// The variables the optimiser updates and checkpoints save.
    fn params(&self) -> &ParamStore;

    /// Called after each optimiser step with where training stands: momentum updates and their
    /// schedules (BYOL's and DINO's momentum follow `progress.fraction()`).
    fn after_step(&mut self, _progress: &Progress) -> candle_core::Result<()> {
        Ok(())
    }

    /// State beyond the parameters that an exact resume needs (a queue, a target network,
    /// dropout stream positions).
    fn extra_state(&self) -> Result<ExtraState> {
        Ok(ExtraState::default())
    }

    /// Restores what [`Objective::extra_state`] returned.
    fn load_extra_state(&mut self, _state: ExtraState) -> Result<()> {
        Ok(())
    }

    /// The method's configuration, saved beside every checkpoint and compared on resume.
    fn config(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Where training stands when [`Objective::after_step`] or an evaluation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The optimiser step just taken (0-based).
    pub step: usize,
    /// Steps the run takes in all: epochs x batches per epoch, or `max_steps` if fewer.
    pub total_steps: usize,
    /// The epoch of the step (0-based).
    pub epoch: usize,
}

impl Progress {
    /// The fraction of the run done after this step, in (0, 1].
    pub fn fraction(&self) -> f64 {
        (self.step + 1) as f64 / self.total_steps.max(self.step + 1) as f64
    }
}

/// An objective's extra checkpoint state: tensors and JSON.
#[derive(Clone, Debug, Default)]
pub struct ExtraState {
    /// Saved to `extra.safetensors`.
    pub tensors: HashMap<String, Tensor>,
    /// Saved to `extra.json`.
    pub json: serde_json::Value,
}
