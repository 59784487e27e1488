//! Optimisers that match PyTorch step for step, with state that can be saved and restored, and
//! learning-rate schedules.
//!
//! candle-nn's SGD has no momentum or weight decay and its AdamW decays every variable and keeps
//! its moments private. Here:
//!
//! - SGD: `torch.optim.SGD` (momentum, dampening, Nesterov, weight decay on every parameter).
//! - AdamW: `torch.optim.AdamW` with two parameter groups: weight decay on parameters of two or
//!   more dimensions only; biases and normalisation scales (one dimension) are not decayed.
//! - LARS: as in SimCLR's code (You et al. 2017, arXiv:1708.03888; google-research/simclr
//!   `lars_optimizer.py`): weight decay added to the gradient, the layer-wise trust ratio
//!   η‖w‖/‖g‖ scaling the rate, momentum over the scaled update; one-dimensional parameters
//!   (biases, BatchNorm) are excluded from both decay and adaptation, as SimCLR excludes
//!   `bias` and `batch_normalization`.

mod adamw_kernel;
mod schedule;

pub use schedule::Schedule;

use crate::error::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Which optimiser, with its hyperparameters (the learning rate comes from the schedule).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimizerConfig {
    /// torch.optim.SGD.
    Sgd {
        /// Momentum factor (0 for plain SGD).
        momentum: f64,
        /// Dampening of the momentum.
        dampening: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
    /// torch.optim.AdamW with biases and norm scales excluded from weight decay.
    AdamW {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Added to the denominator.
        eps: f64,
        /// Decoupled weight decay.
        weight_decay: f64,
    },
    /// LARS as in SimCLR.
    Lars {
        /// Momentum factor.
        momentum: f64,
        /// L2 penalty added to the gradient (not for biases and norms).
        weight_decay: f64,
        /// η of the trust ratio η‖w‖/‖g‖.
        trust_coefficient: f64,
    },
}

impl OptimizerConfig {
    /// SGD with momentum 0.9, no dampening, no Nesterov, no weight decay.
    pub fn sgd(momentum: f64) -> Self {
        OptimizerConfig::Sgd { momentum, dampening: 0.0, nesterov: false, weight_decay: 0.0 }
    }

    /// AdamW with PyTorch's defaults (betas 0.9, 0.999, eps 1e-8, weight decay 0.01).
    pub fn adamw() -> Self {
        OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }

    /// LARS with SimCLR's defaults (momentum 0.9, weight decay 1e-6, η = 0.001).
    pub fn lars() -> Self {
        OptimizerConfig::Lars { momentum: 0.9, weight_decay: 1e-6, trust_coefficient: 0.001 }
    }

    /// Checks every field, naming the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        let check = |field: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && v >= lo && v <= hi {
                Ok(())
            } else {
                Err(Error::config(format!("optimizer.{field}"), format!("must be in [{lo}, {hi}], got {v}")))
            }
        };
        match *self {
            OptimizerConfig::Sgd { momentum, dampening, nesterov, weight_decay } => {
                check("momentum", momentum, 0.0, 1.0)?;
                check("dampening", dampening, 0.0, 1.0)?;
                check("weight_decay", weight_decay, 0.0, f64::MAX)?;
                if nesterov && (momentum == 0.0 || dampening != 0.0) {
                    return Err(Error::config("optimizer.nesterov", "needs momentum > 0 and dampening 0"));
                }
            }
            OptimizerConfig::AdamW { beta1, beta2, eps, weight_decay } => {
                check("beta1", beta1, 0.0, 0.999_999_9)?;
                check("beta2", beta2, 0.0, 0.999_999_9)?;
                check("eps", eps, f64::MIN_POSITIVE, 1.0)?;
                check("weight_decay", weight_decay, 0.0, f64::MAX)?;
            }
            OptimizerConfig::Lars { momentum, weight_decay, trust_coefficient } => {
                check("momentum", momentum, 0.0, 1.0)?;
                check("weight_decay", weight_decay, 0.0, f64::MAX)?;
                check("trust_coefficient", trust_coefficient, f64::MIN_POSITIVE, f64::MAX)?;
            }
        }
        Ok(())
    }
}

struct Param {
    name: String,
    var: Var,
    /// Biases and normalisation scales (one dimension): no decay in AdamW and LARS, no trust ratio.
    excluded: bool,
    /// Steps this parameter has taken (AdamW's bias correction).
    steps: u64,
    /// Momentum buffer (SGD, LARS) or first moment (AdamW).
    first: Option<Tensor>,
    /// Second moment (AdamW).
    second: Option<Tensor>,
}

/// The serialisable part of the optimiser state besides its tensors.
#[derive(Serialize, Deserialize)]
struct SavedState {
    config: OptimizerConfig,
    steps: HashMap<String, u64>,
}

/// An optimiser over named variables.
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<Param>,
}

impl Optimizer {
    /// An optimiser over `params` (path, variable), e.g. `ParamStore::trainable()`.
    pub fn new(config: OptimizerConfig, params: Vec<(String, Var)>) -> Result<Self> {
        config.validate()?;
        let params = params
            .into_iter()
            .map(|(name, var)| Param { excluded: var.rank() < 2, name, var, steps: 0, first: None, second: None })
            .collect();
        Ok(Self { config, params })
    }

    /// Its configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// One update with learning rate `lr`. Variables without a gradient are skipped, as PyTorch
    /// skips parameters whose `.grad` is None.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let config = self.config;
        for p in &mut self.params {
            let Some(grad) = grads.get(p.var.as_tensor()) else { continue };
            let w = p.var.as_tensor().detach();
            let grad = grad.detach();
            p.steps += 1;
            let updated = match config {
                OptimizerConfig::Sgd { momentum, dampening, nesterov, weight_decay } => {
                    let mut d = if weight_decay != 0.0 { (&grad + (&w * weight_decay)?)? } else { grad };
                    if momentum != 0.0 {
                        let buf = match p.first.take() {
                            None => d.clone(),
                            Some(b) => ((b * momentum)? + (&d * (1.0 - dampening))?)?,
                        };
                        d = if nesterov { (d + (&buf * momentum)?)? } else { buf.clone() };
                        p.first = Some(buf);
                    }
                    (w - (d * lr)?)?
                }
                OptimizerConfig::AdamW { beta1, beta2, eps, weight_decay } => {
                    let decay = if p.excluded { 0.0 } else { weight_decay };
                    let t = p.steps as i32;
                    let scalars = adamw_kernel::AdamWScalars {
                        decay: 1.0 - lr * decay,
                        beta1,
                        beta2,
                        eps,
                        bias2: 1.0 - beta2.powi(t),
                        step_size: lr / (1.0 - beta1.powi(t)),
                    };
                    let moments = p.first.as_ref().zip(p.second.as_ref());
                    if let Some((out, m, v)) = adamw_kernel::update(&w, &grad, moments, scalars)? {
                        p.first = Some(m);
                        p.second = Some(v);
                        p.var.set(&out)?;
                        continue;
                    }
                    // The tensor-op form (off the CPU), the kernel's operations one by one.
                    let w = (w * scalars.decay)?;
                    let m = match p.first.take() {
                        None => (&grad * (1.0 - beta1))?,
                        Some(m) => ((m * beta1)? + (&grad * (1.0 - beta1))?)?,
                    };
                    let v = match p.second.take() {
                        None => (grad.sqr()? * (1.0 - beta2))?,
                        Some(v) => ((v * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?,
                    };
                    let denom = ((v.sqrt()? / scalars.bias2.sqrt())? + eps)?;
                    let out = (w - (m.div(&denom)? * scalars.step_size)?)?;
                    p.first = Some(m);
                    p.second = Some(v);
                    out
                }
                OptimizerConfig::Lars { momentum, weight_decay, trust_coefficient } => {
                    let (g, trust) = if p.excluded {
                        (grad, 1.0)
                    } else {
                        let g = if weight_decay != 0.0 { (&grad + (&w * weight_decay)?)? } else { grad };
                        let w_norm = norm(&w)?;
                        let g_norm = norm(&g)?;
                        let trust =
                            if w_norm > 0.0 && g_norm > 0.0 { trust_coefficient * w_norm / g_norm } else { 1.0 };
                        (g, trust)
                    };
                    let scaled = (g * (lr * trust))?;
                    let v = match p.first.take() {
                        None => scaled,
                        Some(v) => ((v * momentum)? + scaled)?,
                    };
                    let out = (w - &v)?;
                    p.first = Some(v);
                    out
                }
            };
            p.var.set(&updated)?;
        }
        Ok(())
    }

    /// The state tensors, named `{param}.first` and `{param}.second`.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for p in &self.params {
            if let Some(t) = &p.first {
                out.insert(format!("{}.first", p.name), t.clone());
            }
            if let Some(t) = &p.second {
                out.insert(format!("{}.second", p.name), t.clone());
            }
        }
        out
    }

    /// Writes `optimizer.safetensors` and `optimizer.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tensors = dir.join("optimizer.safetensors");
        crate::atomic::save_safetensors(&self.state_tensors(), &tensors)?;
        let saved =
            SavedState { config: self.config, steps: self.params.iter().map(|p| (p.name.clone(), p.steps)).collect() };
        crate::json_file::write_json(&dir.join("optimizer.json"), &saved)
    }

    /// Restores what [`Optimizer::save`] wrote; a different optimiser, a missing parameter or a
    /// tensor of the wrong shape is an error naming it.
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        let json = dir.join("optimizer.json");
        let saved: SavedState = crate::json_file::read_json(&json)?;
        if std::mem::discriminant(&saved.config) != std::mem::discriminant(&self.config) {
            return Err(Error::checkpoint(
                &json,
                format!("saved by {:?}, resuming with {:?}", saved.config, self.config),
            ));
        }
        let path = dir.join("optimizer.safetensors");
        let device = self.params.first().map(|p| p.var.device().clone()).unwrap_or(candle_core::Device::Cpu);
        let mut tensors = candle_core::safetensors::load(&path, &device)
            .map_err(|e| Error::checkpoint(&path, format!("cannot read: {e}")))?;
        for p in &mut self.params {
            p.steps = *saved
                .steps
                .get(&p.name)
                .ok_or_else(|| Error::checkpoint(&json, format!("no state for parameter `{}`", p.name)))?;
            for (slot, target) in [("first", &mut p.first), ("second", &mut p.second)] {
                let name = format!("{}.{slot}", p.name);
                *target = match tensors.remove(&name) {
                    None => None,
                    Some(t) if t.dims() == p.var.dims() => Some(t.to_dtype(p.var.dtype())?),
                    Some(t) => {
                        return Err(Error::checkpoint(
                            &path,
                            format!("tensor `{name}` has shape {:?}, the parameter {:?}", t.dims(), p.var.dims()),
                        ))
                    }
                };
            }
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(Error::checkpoint(&path, format!("tensor `{extra}` belongs to no parameter of this model")));
        }
        Ok(())
    }
}

/// The L2 norm, accumulated in f64: in one parallel pass over a contiguous f32 CPU tensor (a
/// MiniLM's 22M gradients took 0.3 s through f64 tensor ops), by tensor ops otherwise.
fn norm(t: &Tensor) -> Result<f64> {
    use rayon::prelude::*;
    if matches!(t.device(), candle_core::Device::Cpu) && t.dtype() == candle_core::DType::F32 && t.is_contiguous() {
        let sum = crate::kernel::with_cpu_slice(t, "norm", |v: &[f32]| {
            // Fixed chunks, summed in order: the result does not depend on the thread count.
            let partials: Vec<f64> =
                v.par_chunks(1 << 14).map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()).collect();
            partials.iter().sum::<f64>()
        })?;
        return Ok(sum.sqrt());
    }
    Ok(t.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?)
}

/// Scales the gradients of `vars` so that their global L2 norm is at most `max_norm`
/// (torch.nn.utils.clip_grad_norm_: factor max_norm / (norm + 1e-6)); returns the norm before.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let total = grad_sq_norms(grads, vars)?.iter().sum::<f64>().sqrt();
    scale_to_norm(grads, vars, total, max_norm)?;
    Ok(total)
}

/// The squared L2 norm of each variable's gradient (0 where it has none), summed in f64.
pub fn grad_sq_norms(grads: &GradStore, vars: &[Var]) -> Result<Vec<f64>> {
    vars.iter().map(|v| grads.get(v.as_tensor()).map_or(Ok(0.0), |g| Ok(norm(g)?.powi(2)))).collect()
}

/// Scales the gradients down so that their global norm, `total`, becomes `max_norm` (nothing
/// changes when it is already at most that).
pub(crate) fn scale_to_norm(grads: &mut GradStore, vars: &[Var], total: f64, max_norm: f64) -> Result<()> {
    let factor = max_norm / (total + 1e-6);
    if factor < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = (g * factor)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(())
}
