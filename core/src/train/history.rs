//! `history.jsonl`: one JSON line per step and per evaluation.

use super::tensorboard::EventWriter;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
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
    /// Seconds the step took (loading its batch included).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub step_s: Option<f64>,
    /// The method's own figures of the step ([`Objective::step_figures`](super::Objective::step_figures):
    /// a learnable or scheduled temperature).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub method: BTreeMap<String, f64>,
    /// Seconds since training started.
    pub elapsed_s: f64,
    /// Evaluation results at the end of an epoch.
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub eval: HashMap<String, f64>,
}

impl HistoryRecord {
    /// The record's figures by their TensorBoard names: `train/loss`, `train/lr`,
    /// `train/samples_per_s`, `train/step_s`, `train/<name>` for each of the method's figures,
    /// then `eval/<name>` for each evaluation figure, in name order.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let train =
            [("loss", self.loss), ("lr", self.lr), ("samples_per_s", self.samples_per_s), ("step_s", self.step_s)];
        let mut scalars: Vec<(String, f64)> =
            train.iter().filter_map(|(name, v)| v.map(|v| (format!("train/{name}"), v))).collect();
        scalars.extend(self.method.iter().map(|(k, v)| (format!("train/{k}"), *v)));
        let mut eval: Vec<(String, f64)> = self.eval.iter().map(|(k, v)| (format!("eval/{k}"), *v)).collect();
        eval.sort_by(|a, b| a.0.cmp(&b.0));
        scalars.extend(eval);
        scalars
    }
}

/// Where a run's records go (rank 0 with a run folder; nowhere otherwise): `history.jsonl`, and
/// the same figures as TensorBoard scalars ([`HistoryRecord::scalars`]).
#[derive(Default)]
pub(super) struct RunLog {
    pub(super) history: Option<std::fs::File>,
    pub(super) events: Option<EventWriter>,
}

impl RunLog {
    /// Opens `run_dir`'s `history.jsonl` for appending, first dropping the records `keeps`
    /// refuses (those past the checkpoint a run resumes from at `step`), and a new TensorBoard
    /// event file that starts with a session START at `step`, which makes TensorBoard drop the
    /// earlier files' events at and past `step` (on a fresh run, at 0: all of them, as the
    /// history's lines are all dropped), followed by the kept records of `step` itself.
    pub(super) fn open(run_dir: &Path, step: usize, keeps: impl Fn(&HistoryRecord) -> bool) -> Result<Self> {
        std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
        let path = run_dir.join("history.jsonl");
        let mut again = Vec::new();
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let mut kept = String::new();
            for line in text.lines() {
                let Ok(record) = serde_json::from_str::<HistoryRecord>(line) else { continue };
                if keeps(&record) {
                    kept.push_str(line);
                    kept.push('\n');
                    if record.step == step {
                        again.push(record);
                    }
                }
            }
            crate::atomic::write_bytes_atomically(&path, kept.as_bytes())?;
        }
        let file =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let mut events = EventWriter::create(run_dir)?;
        events.session_start(step as u64)?;
        let mut log = Self { history: None, events: Some(events) };
        for record in &again {
            log.append(record)?;
        }
        log.history = Some(file);
        if let Some(events) = &mut log.events {
            events.flush()?;
        }
        Ok(log)
    }

    /// Writes `record` to every sink.
    pub(super) fn append(&mut self, record: &HistoryRecord) -> Result<()> {
        if let Some(f) = &mut self.history {
            let line = serde_json::to_string(record)
                .map_err(|e| Error::Json { path: "history.jsonl".into(), message: e.to_string() })?;
            writeln!(f, "{line}").map_err(|e| Error::io("history.jsonl", e))?;
        }
        if let Some(events) = &mut self.events {
            events.scalars(record.step as u64, &record.scalars())?;
            // Each record is on disk when it is written, as `history.jsonl`'s line is: a run
            // watched in TensorBoard shows every step as it ends.
            events.flush()?;
        }
        Ok(())
    }
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
