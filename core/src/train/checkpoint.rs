//! Checkpoint folders: `checkpoint-{step:08}/` with `model.safetensors`, `optimizer.*`,
//! `state.json`, `config.json` and the objective's `extra.*`, written to a temporary folder and
//! renamed into place so that a crash never leaves a half-written checkpoint.

use super::{ExtraState, TrainState};
use crate::error::{Error, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};

/// Writes `value` as pretty JSON.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::Json { path: path.into(), message: e.to_string() })?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Reads JSON, naming the file in any error.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::checkpoint(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Error::Json { path: path.into(), message: e.to_string() })
}

/// The checkpoint folders under `run_dir`, oldest first.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<PathBuf>> {
    if !run_dir.exists() {
        return Ok(Vec::new());
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .map_err(|e| Error::io(run_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.strip_prefix("checkpoint-")
                        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                })
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

pub(super) struct Contents<'a> {
    pub params: &'a crate::nn::ParamStore,
    pub optimizer: &'a crate::optim::Optimizer,
    pub state: &'a TrainState,
    pub config: &'a serde_json::Value,
    pub extra: ExtraState,
}

/// Writes a checkpoint for `contents.state.step` and removes all but the newest `keep_last`.
pub(super) fn save(run_dir: &Path, contents: Contents, keep_last: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
    let name = format!("checkpoint-{:08}", contents.state.step);
    let tmp = run_dir.join(format!("{name}.tmp"));
    let dir = run_dir.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    contents.params.save(&tmp.join("model.safetensors"))?;
    contents.optimizer.save(&tmp)?;
    write_json(&tmp.join("state.json"), contents.state)?;
    write_json(&tmp.join("config.json"), contents.config)?;
    let extra = tmp.join("extra.safetensors");
    candle_core::safetensors::save(&contents.extra.tensors, &extra)
        .map_err(|e| Error::checkpoint(&extra, e.to_string()))?;
    write_json(&tmp.join("extra.json"), &contents.extra.json)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
    let all = list_checkpoints(run_dir)?;
    for old in &all[..all.len().saturating_sub(keep_last.max(1))] {
        std::fs::remove_dir_all(old).map_err(|e| Error::io(old, e))?;
    }
    Ok(dir)
}

/// Reads the objective's extra state of a checkpoint.
pub(super) fn load_extra(dir: &Path, device: &candle_core::Device) -> Result<ExtraState> {
    let path = dir.join("extra.safetensors");
    let tensors = candle_core::safetensors::load(&path, device)
        .map_err(|e| Error::checkpoint(&path, format!("cannot read: {e}")))?;
    Ok(ExtraState { tensors, json: read_json(&dir.join("extra.json"))? })
}
