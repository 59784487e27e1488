//! `run.json` in a run folder: which example started the run and with which flags. With it,
//! `--resume` refuses another example's folder or flags that would make another run, naming the
//! flag, and `--out` refuses a folder that already holds a run instead of mixing two runs'
//! checkpoints.

use contrastive_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file in the run folder.
pub const FILE: &str = "run.json";

/// Flags a resumed run may change: how long it trains, where it writes, how many threads, on
/// which device, where it starts from (a resume starts from its checkpoint), and the batch size
/// of each process (a run may resume on another number of processes: the trainer checks that the
/// global batch, batch size times processes, stays).
pub const MAY_CHANGE: &[&str] =
    &["epochs", "max_steps", "threads", "device", "out", "resume", "init", "save_embeddings", "export", "batch_size"];

/// What `run.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The example (binary) that started the run.
    pub example: String,
    /// Every flag's value, by its field name (`max_steps` for `--max-steps`).
    pub flags: serde_json::Map<String, serde_json::Value>,
}

impl RunRecord {
    /// The record of this command: `flags` is the example's parsed command line.
    pub fn new(example: &str, flags: &impl Serialize) -> Result<Self> {
        match serde_json::to_value(flags) {
            Ok(serde_json::Value::Object(flags)) => Ok(Self { example: example.to_string(), flags }),
            Ok(other) => Err(Error::config(format!("{example} flags"), format!("not a set of fields: {other}"))),
            Err(e) => Err(Error::config(format!("{example} flags"), format!("cannot be recorded: {e}"))),
        }
    }

    /// Checks that `dir` can take this run: with `resume`, its `run.json` must come from the same
    /// example with the same flags (those in [`MAY_CHANGE`] aside); without, `dir` must not hold
    /// a run's checkpoints already, and this record is written there.
    pub fn claim(&self, dir: &Path, resume: bool) -> Result<()> {
        let path = dir.join(FILE);
        if resume {
            if !path.exists() {
                tracing::warn!(
                    "{}: no {FILE} (a run folder from an older version): its flags are not checked",
                    dir.display()
                );
                return Ok(());
            }
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let saved: RunRecord =
                serde_json::from_str(&text).map_err(|e| Error::Json { path: path.clone(), message: e.to_string() })?;
            return self.compare(&saved, dir);
        }
        if holds_checkpoints(dir)? {
            return Err(Error::config(
                "--out",
                format!(
                    "{} already holds a run: continue it with --resume {0}, or write this one to another folder",
                    dir.display()
                ),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Json { path: path.clone(), message: e.to_string() })?;
        contrastive_core::atomic::write_bytes_atomically(&path, text.as_bytes())
    }

    /// The first difference that makes `self` another run than `saved`, as an error.
    fn compare(&self, saved: &RunRecord, dir: &Path) -> Result<()> {
        if saved.example != self.example {
            return Err(Error::config(
                "--resume",
                format!(
                    "{} holds a run of the `{}` example, not `{}`: resume it with `{}`",
                    dir.display(),
                    saved.example,
                    self.example,
                    saved.example
                ),
            ));
        }
        let names: std::collections::BTreeSet<&String> = saved.flags.keys().chain(self.flags.keys()).collect();
        for name in names.into_iter().filter(|n| !MAY_CHANGE.contains(&n.as_str())) {
            let (was, now) = (saved.flags.get(name), self.flags.get(name));
            if was != now {
                let flag = format!("--{}", name.replace('_', "-"));
                return Err(Error::config(
                    "--resume",
                    format!(
                        "the run in {} was started with {flag} {}, this command has {flag} {}: a resumed run keeps \
                         its flags (only --{} may change)",
                        dir.display(),
                        shown(was),
                        shown(now),
                        MAY_CHANGE.iter().map(|n| n.replace('_', "-")).collect::<Vec<_>>().join(", --")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `dir` or a folder just below it (graphcl's `seed-N`) holds a checkpoint. A folder
/// with only a `run.json` (a run that failed before its first checkpoint) can be used again.
fn holds_checkpoints(dir: &Path) -> Result<bool> {
    use contrastive_core::train::list_checkpoints;
    if !dir.is_dir() {
        return Ok(false);
    }
    if !list_checkpoints(dir)?.is_empty() {
        return Ok(true);
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.filter_map(|e| e.ok()) {
        if entry.path().is_dir() && !list_checkpoints(&entry.path())?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A flag's value as a person would type it.
fn shown(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => "(not given)".to_string(),
        Some(serde_json::Value::Bool(true)) => "(set)".to_string(),
        Some(serde_json::Value::Bool(false)) => "(not set)".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(example: &str, flags: serde_json::Value) -> RunRecord {
        RunRecord::new(example, &flags).unwrap()
    }

    #[test]
    fn out_claims_an_empty_folder_once_and_resume_checks_example_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let first = record("simclr", json!({"temperature": 0.5, "epochs": 2, "quick": true, "data": null}));
        first.claim(&run, false).unwrap();
        // The same --out again: refused, pointing at --resume.
        // Before its first checkpoint the folder can be used again (the first try failed early).
        first.claim(&run, false).unwrap();
        std::fs::create_dir_all(run.join("checkpoint-00000004")).unwrap();
        let e = first.claim(&run, false).unwrap_err().to_string();
        assert!(e.contains("already holds a run") && e.contains("--resume"), "{e}");
        // A resume with more epochs and other threads is the same run.
        record("simclr", json!({"temperature": 0.5, "epochs": 9, "threads": 1, "quick": true, "data": null}))
            .claim(&run, true)
            .unwrap();
        let e = record("moco", json!({"temperature": 0.5})).claim(&run, true).unwrap_err().to_string();
        assert!(e.contains("`simclr` example, not `moco`"), "{e}");
        let e = record("simclr", json!({"temperature": 0.2, "epochs": 2, "quick": true, "data": null}))
            .claim(&run, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--temperature 0.5") && e.contains("--temperature 0.2"), "{e}");
        let e = record("simclr", json!({"temperature": 0.5, "epochs": 2, "quick": false, "data": "x"}))
            .claim(&run, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--data (not given)") && e.contains("--data x"), "{e}");
        // A folder with checkpoints but no run.json (an older version's) is not taken by --out.
        let old = dir.path().join("old");
        std::fs::create_dir_all(old.join("seed-3/checkpoint-00000010")).unwrap();
        assert!(first.claim(&old, false).is_err());
        first.claim(&old, true).unwrap();
    }
}
