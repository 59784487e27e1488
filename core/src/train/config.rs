//! How to train: the [`TrainerConfig`] every run is given, and its checks.

use crate::error::{Error, Result};
use crate::optim::{OptimizerConfig, Schedule};
use serde::{Deserialize, Serialize};

/// How to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerConfig {
    /// Epochs to train.
    pub epochs: usize,
    /// Stop after this many optimiser steps, if set (whichever of the two comes first).
    pub max_steps: Option<usize>,
    /// Base learning rate.
    pub lr: f64,
    /// Learning-rate schedule over steps.
    pub schedule: Schedule,
    /// The optimiser.
    pub optimizer: OptimizerConfig,
    /// Clip the global gradient norm to this, if set.
    pub clip_grad_norm: Option<f64>,
    /// Save a checkpoint every this many steps, if set (one is always saved at the end).
    pub checkpoint_every: Option<usize>,
    /// Save a checkpoint at the end of every epoch (default), so that a failure loses at most
    /// the epoch under way.
    #[serde(default = "yes")]
    pub checkpoint_each_epoch: bool,
    /// Checkpoints kept on disk.
    pub keep_last: usize,
    /// Show a progress bar (only ever drawn when stderr is a terminal).
    pub progress: bool,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            max_steps: None,
            lr: 1e-3,
            schedule: Schedule::Constant,
            optimizer: OptimizerConfig::adamw(),
            clip_grad_norm: None,
            checkpoint_every: None,
            checkpoint_each_epoch: true,
            keep_last: 2,
            progress: true,
        }
    }
}

fn yes() -> bool {
    true
}

impl TrainerConfig {
    /// The steps a run of this configuration takes over a source of `batches_per_epoch`
    /// batches: every epoch's, or `max_steps` when that is fewer. What a schedule that spans the
    /// run ends at.
    pub fn total_steps(&self, batches_per_epoch: usize) -> usize {
        let all = self.epochs * batches_per_epoch;
        self.max_steps.map_or(all, |max| all.min(max))
    }

    /// Checks every field, naming the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config("trainer.lr", format!("must be finite and > 0, got {}", self.lr)));
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            return Err(Error::config("trainer.epochs", "must be at least 1 (or set max_steps)"));
        }
        if let Some(c) = self.clip_grad_norm {
            if !(c.is_finite() && c > 0.0) {
                return Err(Error::config("trainer.clip_grad_norm", format!("must be finite and > 0, got {c}")));
            }
        }
        if self.checkpoint_every == Some(0) {
            return Err(Error::config("trainer.checkpoint_every", "must be at least 1"));
        }
        if self.keep_last == 0 {
            return Err(Error::config("trainer.keep_last", "must be at least 1"));
        }
        self.schedule.validate()?;
        self.optimizer.validate()
    }
}
