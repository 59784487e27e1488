//! Momentum (exponential moving average) update of a target network from an online one, as MoCo
//! (He et al. 2020, arXiv:1911.05722) and BYOL (Grill et al. 2020, arXiv:2006.07733) use it.

use super::params::ParamStore;
use candle_core::{bail, Result};

/// target ← m · target + (1 - m) · online, for every trainable variable of `target`, matched by
/// path in `online` (which may hold more: BYOL's predictor has no target). Buffers (BatchNorm
/// running statistics) are left alone: each network keeps its own.
pub fn momentum_update(target: &ParamStore, online: &ParamStore, momentum: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&momentum) {
        bail!("momentum_update: momentum must be in [0, 1], got {momentum}");
    }
    for (name, t) in target.trainable() {
        let Some(o) = online.get(&name) else { bail!("momentum_update: the online network has no variable `{name}`") };
        if t.dims() != o.dims() {
            bail!("momentum_update: `{name}` is {:?} in the target and {:?} online", t.dims(), o.dims());
        }
        let updated = ((t.as_tensor() * momentum)? + (o.as_tensor().detach() * (1.0 - momentum))?)?;
        t.set(&updated)?;
    }
    Ok(())
}

/// Copies into every variable (buffers included) of `to` the variable of `from` at the same path:
/// a target network starts as a copy of the online one.
pub fn copy_params(to: &ParamStore, from: &ParamStore) -> Result<()> {
    for (name, t) in to.all() {
        let Some(f) = from.get(&name) else { bail!("copy_params: the source has no variable `{name}`") };
        if t.dims() != f.dims() {
            bail!("copy_params: `{name}` is {:?} in the target and {:?} in the source", t.dims(), f.dims());
        }
        t.set(&f.as_tensor().detach())?;
    }
    Ok(())
}

/// BYOL's cosine schedule of the momentum: from `base` at step 0 up to 1 at `total_steps`.
pub fn cosine_momentum(base: f64, step: usize, total_steps: usize) -> f64 {
    let progress = if total_steps == 0 { 1.0 } else { (step as f64 / total_steps as f64).min(1.0) };
    1.0 - (1.0 - base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
}
