//! Checkpoint folders: `checkpoint-{step:08}/` with `model.safetensors`, `optimizer.*`,
//! `state.json`, `config.json` and the objective's `extra.*`, written to a temporary folder and
//! renamed into place so that a crash never leaves a half-written checkpoint. `SHA256SUMS` (the
//! format `sha256sum -c` reads) records every file, and a resume checks them: a damaged or edited
//! checkpoint is refused, naming the file.

use super::{ExtraState, TrainState};
use crate::error::{Error, Result};
use crate::json_file::{read_json, write_json};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The checksum file of a checkpoint folder.
const CHECKSUMS: &str = "SHA256SUMS";

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
    if dir.exists() {
        // The same step again (a resume stopped before its first step): the same state, already
        // on disk. Replacing it would leave a moment with no checkpoint of this step.
        return Ok(dir);
    }
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    contents.params.save(&tmp.join("model.safetensors"))?;
    contents.optimizer.save(&tmp)?;
    write_json(&tmp.join("state.json"), contents.state)?;
    write_json(&tmp.join("config.json"), contents.config)?;
    let extra = tmp.join("extra.safetensors");
    crate::atomic::save_safetensors(&contents.extra.tensors, &extra)?;
    write_json(&tmp.join("extra.json"), &contents.extra.json)?;
    write_checksums(&tmp)?;
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

/// The lowercase hex SHA-256 of a file, read in blocks (checkpoints can be gigabytes).
fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut block).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `SHA256SUMS` for every file of a checkpoint folder, sorted by name.
fn write_checksums(dir: &Path) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n != CHECKSUMS)
        .collect();
    names.sort();
    let mut text = String::new();
    for name in names {
        text.push_str(&format!("{}  {name}\n", sha256_file(&dir.join(&name))?));
    }
    crate::atomic::write_bytes_atomically(&dir.join(CHECKSUMS), text.as_bytes())
}

/// Checks every file `SHA256SUMS` lists. A checkpoint written before checksums were recorded has
/// none; it loads with a warning.
pub(super) fn verify_checksums(dir: &Path) -> Result<()> {
    let path = dir.join(CHECKSUMS);
    if !path.exists() {
        tracing::warn!(checkpoint = %dir.display(), "no {CHECKSUMS}: the files cannot be checked for damage");
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::checkpoint(&path, format!("cannot read: {e}")))?;
    for (i, line) in text.lines().enumerate() {
        let bad =
            || Error::checkpoint(&path, format!("line {}: expected `<sha256>  <file name>`, got {line:?}", i + 1));
        let (hash, name) = line.split_once("  ").ok_or_else(bad)?;
        let plain_name = !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..";
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || !plain_name {
            return Err(bad());
        }
        let file = dir.join(name);
        if !file.is_file() {
            return Err(Error::checkpoint(&file, format!("missing, though {CHECKSUMS} lists it")));
        }
        let actual = sha256_file(&file)?;
        if !actual.eq_ignore_ascii_case(hash) {
            return Err(Error::checkpoint(
                &file,
                format!("its SHA-256 is {actual}, {CHECKSUMS} says {hash}: the file was damaged or changed after it was saved"),
            ));
        }
    }
    Ok(())
}

/// The step a checkpoint folder's name says (`checkpoint-00000200` → 200).
pub(super) fn step_of(dir: &Path) -> Option<usize> {
    dir.file_name()?.to_str()?.strip_prefix("checkpoint-")?.parse().ok()
}
