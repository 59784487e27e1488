//! Learning-rate schedules: the rate at optimiser step `step` (0-based) for a base rate.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// How the learning rate moves over training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Linear warmup to the base rate over `warmup_steps` (step s gets base·(s+1)/warmup, so the
    /// first step already moves), then half a cosine down to `base · final_fraction` at
    /// `total_steps` (SimCLR, MoCo v2), constant after.
    WarmupCosine {
        /// Steps of linear warmup (0 for none).
        warmup_steps: usize,
        /// Step at which the cosine reaches its end.
        total_steps: usize,
        /// Final rate as a fraction of the base rate (0 in SimCLR).
        final_fraction: f64,
    },
    /// Linear warmup as above, then a straight line down to 0 at `total_steps`
    /// (transformers' `get_linear_schedule_with_warmup`, sentence-transformers' "WarmupLinear").
    WarmupLinear {
        /// Steps of linear warmup (0 for none).
        warmup_steps: usize,
        /// Step at which the rate reaches 0.
        total_steps: usize,
    },
    /// Multiply by `gamma` every `step_size` steps (torch.optim.lr_scheduler.StepLR).
    Step {
        /// Steps between decays.
        step_size: usize,
        /// Decay factor.
        gamma: f64,
    },
}

impl Schedule {
    /// The learning rate at `step`.
    pub fn lr(&self, base: f64, step: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::WarmupCosine { warmup_steps, total_steps, final_fraction } => {
                if step < warmup_steps {
                    return base * (step + 1) as f64 / warmup_steps as f64;
                }
                let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                let progress = ((step - warmup_steps) as f64 / span).min(1.0);
                let end = base * final_fraction;
                end + (base - end) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Schedule::WarmupLinear { warmup_steps, total_steps } => {
                if step < warmup_steps {
                    return base * (step + 1) as f64 / warmup_steps as f64;
                }
                let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                base * (total_steps.saturating_sub(step) as f64 / span).max(0.0)
            }
            Schedule::Step { step_size, gamma } => base * gamma.powi((step / step_size.max(1)) as i32),
        }
    }

    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::WarmupCosine { warmup_steps, total_steps, final_fraction } => {
                if total_steps < warmup_steps {
                    return Err(Error::config(
                        "schedule.total_steps",
                        format!("{total_steps} is below warmup_steps {warmup_steps}"),
                    ));
                }
                if !(0.0..=1.0).contains(&final_fraction) {
                    return Err(Error::config(
                        "schedule.final_fraction",
                        format!("must be in [0, 1], got {final_fraction}"),
                    ));
                }
                Ok(())
            }
            Schedule::WarmupLinear { warmup_steps, total_steps } => {
                if total_steps < warmup_steps {
                    return Err(Error::config(
                        "schedule.total_steps",
                        format!("{total_steps} is below warmup_steps {warmup_steps}"),
                    ));
                }
                Ok(())
            }
            Schedule::Step { step_size, gamma } => {
                if step_size == 0 {
                    return Err(Error::config("schedule.step_size", "must be at least 1"));
                }
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(Error::config("schedule.gamma", format!("must be finite and > 0, got {gamma}")));
                }
                Ok(())
            }
        }
    }
}
