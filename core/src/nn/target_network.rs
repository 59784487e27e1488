//! A target network: a second copy of an online network, in a store of its own, that gets no
//! gradient and follows the online one as an exponential moving average after every step, with
//! a momentum that may change over the run. MoCo's key encoder (He et al. 2020,
//! arXiv:1911.05722) is one with a constant momentum; BYOL's target (Grill et al. 2020,
//! arXiv:2006.07733) and DINO's teacher use the cosine schedule.

use super::momentum::{copy_params, cosine_momentum, momentum_update};
use super::params::{InitScheme, ParamStore};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// How the momentum m of target ← m · target + (1 - m) · online moves over the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Momentum {
    /// The same m at every step (MoCo: 0.999; 0.99 on small data).
    Constant(f64),
    /// BYOL's cosine schedule from `base` at the first step to 1 at the last.
    Cosine {
        /// The momentum at step 0 (BYOL: 0.996).
        base: f64,
    },
}

impl Momentum {
    /// The momentum after `step` (0-based) of a run of `total_steps`.
    pub fn at(&self, step: usize, total_steps: usize) -> f64 {
        match *self {
            Momentum::Constant(m) => m,
            Momentum::Cosine { base } => cosine_momentum(base, step, total_steps),
        }
    }

    /// Checks that every momentum it gives is in [0, 1].
    pub fn validate(&self) -> Result<()> {
        let m = match *self {
            Momentum::Constant(m) | Momentum::Cosine { base: m } => m,
        };
        if !(0.0..=1.0).contains(&m) {
            return Err(Error::config("momentum", format!("must be in [0, 1], got {m}")));
        }
        Ok(())
    }
}

/// A copy of an online network that follows it by momentum; `N` is whatever the build function
/// makes (an encoder, an encoder and its head).
pub struct TargetNetwork<N> {
    store: ParamStore,
    network: N,
    momentum: Momentum,
}

impl<N> TargetNetwork<N> {
    /// Builds the target with `build` (which must make the online network's variables, under the
    /// same names) in a store of its own, and copies the online weights and buffers into it.
    pub fn new(
        online: &ParamStore,
        build: impl FnOnce(VarBuilder) -> Result<N>,
        momentum: Momentum,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::of_part(online, &[], build, momentum, dtype, device)
    }

    /// As [`TargetNetwork::new`], for a target of part of the online network: the online
    /// variables under the prefixes `online_only` (BYOL's `predictor.`) have no copy.
    pub fn of_part(
        online: &ParamStore,
        online_only: &[&str],
        build: impl FnOnce(VarBuilder) -> Result<N>,
        momentum: Momentum,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        momentum.validate()?;
        // The initialisation is overwritten by the copy below.
        let store = ParamStore::new(0, InitScheme::PyTorch);
        let network = build(store.var_builder(dtype, device))?;
        let (ours, theirs) = (store.all(), online.all());
        if let Some((name, _)) = ours.iter().find(|(n, _)| online.get(n).is_none()) {
            return Err(Error::config("target network", format!("`{name}` is not a variable of the online network")));
        }
        let copied = |n: &String| !online_only.iter().any(|p| n.starts_with(p));
        if let Some((name, _)) = theirs.iter().find(|(n, _)| copied(n) && store.get(n).is_none()) {
            return Err(Error::config("target network", format!("the online variable `{name}` has no copy")));
        }
        copy_params(&store, online)?;
        Ok(Self { store, network, momentum })
    }

    /// Moves the target toward `online` with the momentum of `step` (0-based) of `total_steps`;
    /// returns that momentum.
    pub fn update(&self, online: &ParamStore, step: usize, total_steps: usize) -> Result<f64> {
        let m = self.momentum.at(step, total_steps);
        momentum_update(&self.store, online, m)?;
        Ok(m)
    }

    /// Makes the target a copy of `online` again (after loading weights into the online one).
    pub fn sync(&self, online: &ParamStore) -> Result<()> {
        Ok(copy_params(&self.store, online)?)
    }

    /// The target network.
    pub fn network(&self) -> &N {
        &self.network
    }

    /// The network, to restore its own state (a dropout stream) on resume.
    pub fn network_mut(&mut self) -> &mut N {
        &mut self.network
    }

    /// Its variables.
    pub fn params(&self) -> &ParamStore {
        &self.store
    }

    /// Its schedule.
    pub fn momentum(&self) -> Momentum {
        self.momentum
    }

    /// Its variables under `prefix`, for a checkpoint's extra state.
    pub fn state(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.store.tensors().into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect()
    }

    /// Restores what [`TargetNetwork::state`] saved (other entries are ignored); `origin` names
    /// the file in errors.
    pub fn load_state(&self, tensors: &HashMap<String, Tensor>, prefix: &str, origin: &Path) -> Result<()> {
        let ours: HashMap<String, Tensor> =
            tensors.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone()))).collect();
        self.store.set_all(&ours, origin)
    }
}
