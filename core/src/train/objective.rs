//! What a method implements ([`Objective`]: batch in, scalar loss out) and what the trainer hands
//! its hooks ([`Progress`]) and keeps of it ([`ExtraState`]).

use crate::error::Result;
use crate::nn::ParamStore;
use candle_core::Tensor;
use std::collections::HashMap;

/// What a method implements: turn a batch into a scalar loss.
pub trait Objective {
    /// What the loader yields.
    type Batch;

    /// The loss of one batch, in training mode.
    fn loss(&mut self, batch: &Self::Batch) -> candle_core::Result<Tensor>;

    /// The variables the optimiser updates and checkpoints save.
    fn params(&self) -> &ParamStore;

    /// Called before each step's [`Objective::loss`] with the step about to be taken (its
    /// 0-based index and epoch): settings that follow the epoch (DINO's teacher temperature and
    /// its frozen last layer) take it from here.
    fn before_step(&mut self, _progress: &Progress) -> candle_core::Result<()> {
        Ok(())
    }

    /// Called after each optimiser step with where training stands: momentum updates and their
    /// schedules (BYOL's and DINO's momentum follow `progress.fraction()`).
    fn after_step(&mut self, _progress: &Progress) -> candle_core::Result<()> {
        Ok(())
    }

    /// The method's figures that change as it trains (a learnable or scheduled temperature),
    /// read after each step's [`Objective::after_step`] and logged with it as `train/<name>`.
    fn step_figures(&self) -> candle_core::Result<Vec<(&'static str, f64)>> {
        Ok(Vec::new())
    }

    /// State beyond the parameters that an exact resume needs (a queue, a target network,
    /// dropout stream positions).
    fn extra_state(&self) -> Result<ExtraState> {
        Ok(ExtraState::default())
    }

    /// Restores what [`Objective::extra_state`] returned.
    fn load_extra_state(&mut self, _state: ExtraState) -> Result<()> {
        Ok(())
    }

    /// The method's configuration, saved beside every checkpoint and compared on resume.
    fn config(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Where training stands when [`Objective::before_step`], [`Objective::after_step`] or an
/// evaluation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The optimiser step just taken (0-based).
    pub step: usize,
    /// Steps the run takes in all: epochs x batches per epoch, or `max_steps` if fewer.
    pub total_steps: usize,
    /// The epoch of the step (0-based).
    pub epoch: usize,
}

impl Progress {
    /// The fraction of the run done after this step, in (0, 1].
    pub fn fraction(&self) -> f64 {
        (self.step + 1) as f64 / self.total_steps.max(self.step + 1) as f64
    }
}

/// An objective's extra checkpoint state: tensors and JSON.
#[derive(Clone, Debug, Default)]
pub struct ExtraState {
    /// Saved to `extra.safetensors`.
    pub tensors: HashMap<String, Tensor>,
    /// Saved to `extra.json`.
    pub json: serde_json::Value,
}

impl ExtraState {
    /// Adds `part` (a backbone's state, say) under `name`: its tensors as `name.<tensor>`, its
    /// JSON as the field `name` (self's JSON becomes an object if it is not one).
    pub fn insert(&mut self, name: &str, part: ExtraState) {
        self.tensors.extend(part.tensors.into_iter().map(|(k, v)| (format!("{name}.{k}"), v)));
        if !self.json.is_object() {
            self.json = serde_json::Value::Object(Default::default());
        }
        if let Some(fields) = self.json.as_object_mut() {
            fields.insert(name.to_string(), part.json);
        }
    }

    /// The part [`ExtraState::insert`] put under `name` (empty if there is none: a checkpoint
    /// written before the part existed).
    pub fn part(&self, name: &str) -> ExtraState {
        let prefix = format!("{name}.");
        let tensors = self
            .tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
            .collect();
        ExtraState { tensors, json: self.json.get(name).cloned().unwrap_or(serde_json::Value::Null) }
    }
}

#[cfg(test)]
mod tests {
    use super::ExtraState;
    use candle_core::{Device, Tensor};

    #[test]
    fn parts_inserted_come_back_out_and_a_missing_part_is_empty() {
        let t = |v: f32| Tensor::new(&[v], &Device::Cpu).unwrap();
        let mut state =
            ExtraState { tensors: [("queue".to_string(), t(1.0))].into(), json: serde_json::json!({ "steps": 3 }) };
        let part = ExtraState { tensors: [("mask".to_string(), t(2.0))].into(), json: serde_json::json!({ "pos": 7 }) };
        state.insert("encoder", part);
        assert_eq!(state.json, serde_json::json!({ "steps": 3, "encoder": { "pos": 7 } }));
        let mut names: Vec<&String> = state.tensors.keys().collect();
        names.sort();
        assert_eq!(names, ["encoder.mask", "queue"]);
        let back = state.part("encoder");
        assert_eq!(back.json, serde_json::json!({ "pos": 7 }));
        assert_eq!(back.tensors["mask"].to_vec1::<f32>().unwrap(), [2.0]);
        let missing = state.part("other");
        assert!(missing.tensors.is_empty() && missing.json.is_null());
        // A state whose JSON is not an object (an older checkpoint's null) takes parts too.
        let mut bare = ExtraState::default();
        bare.insert("a", ExtraState { tensors: Default::default(), json: serde_json::json!([1]) });
        assert_eq!(bare.part("a").json, serde_json::json!([1]));
    }
}
