//! `history.jsonl`: one JSON line per step and per evaluation.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// One line of `history.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Steps taken after this record's step.
    pub step: usize,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Training loss of the step (absent on evaluation lines).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub loss: Option<f64>,
    /// Learning rate of the step.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lr: Option<f64>,
    /// Training throughput of the step.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub samples_per_s: Option<f64>,
    /// Seconds since training started.
    pub elapsed_s: f64,
    /// Evaluation results at the end of an epoch.
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub eval: HashMap<String, f64>,
}

pub(super) fn append_history(file: &mut Option<std::fs::File>, record: &HistoryRecord) -> Result<()> {
    if let Some(f) = file {
        let line = serde_json::to_string(record)
            .map_err(|e| Error::Json { path: "history.jsonl".into(), message: e.to_string() })?;
        writeln!(f, "{line}").map_err(|e| Error::io("history.jsonl", e))?;
    }
    Ok(())
}

/// Reads a `history.jsonl`.
pub fn read_history(path: &Path) -> Result<Vec<HistoryRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::Json { path: path.into(), message: format!("line {}: {e}", i + 1) })
        })
        .collect()
}
