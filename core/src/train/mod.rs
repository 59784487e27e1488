//! The one training loop. A method implements [`Objective`] (batch in, scalar loss out); the
//! [`Trainer`] owns everything else: epochs and steps, the learning-rate schedule, gradient
//! clipping, evaluations, checkpoints and exact resume, history, progress and Ctrl-C.

mod checkpoint;
mod collapse_monitor;
mod config;
mod data_parallel;
mod history;
mod objective;
pub mod tensorboard;

pub use checkpoint::list_checkpoints;
pub use config::TrainerConfig;
pub use data_parallel::{average_gradients, broadcast_params};
use history::RunLog;
pub use history::{read_history, HistoryRecord};
pub use objective::{ExtraState, Objective, Progress};

use crate::collective::{Collective, Local};
use crate::data::BatchSource;
use crate::error::{Error, Result};
use crate::json_file::read_json;
use crate::optim::{grad_sq_norms, scale_to_norm, Optimizer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Where training stands; saved as `state.json` in every checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps taken.
    pub step: usize,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Batches of the current epoch already trained on.
    pub batch_in_epoch: usize,
    /// The loader's seed (a resume with another seed would not continue the same run).
    pub seed: u64,
    /// The loader's batch size (each process's), likewise: a resume keeps `batch_size x
    /// world_size`, the global batch (0 in checkpoints written before it was recorded).
    #[serde(default)]
    pub batch_size: usize,
    /// Samples trained on.
    pub samples_seen: usize,
    /// Seconds spent training, over all sessions.
    pub elapsed_s: f64,
    /// Processes the run trained on last (1 in checkpoints written before it was recorded); a
    /// resume may change it if the global batch stays.
    #[serde(default = "one")]
    pub world_size: usize,
}

fn one() -> usize {
    1
}

/// What [`Trainer::fit`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Steps taken in all (including before a resume).
    pub steps: usize,
    /// Loss of the last step of this call, if any step was taken.
    pub last_loss: Option<f64>,
    /// Whether training stopped on request (Ctrl-C or the stop handle) before the end.
    pub interrupted: bool,
    /// The checkpoint written last, if any.
    pub checkpoint: Option<PathBuf>,
    /// Seconds from the start of this call to the end of its first step (the loader's start and
    /// first batch included), if a step was taken.
    pub first_step_seconds: Option<f64>,
}

/// An evaluation: how often (epochs) and what it records (named figures).
type Evaluation<O> = (usize, Box<dyn FnMut(&mut O, &Progress) -> Result<Vec<(String, f64)>>>);

/// Trains an [`Objective`].
pub struct Trainer<O: Objective> {
    config: TrainerConfig,
    objective: O,
    optimizer: Optimizer,
    state: TrainState,
    run_dir: Option<PathBuf>,
    evaluations: Vec<Evaluation<O>>,
    stop: Arc<AtomicBool>,
    collective: Arc<dyn Collective>,
}

/// Set by the Ctrl-C handler, once installed.
static CTRL_C: OnceLock<Arc<AtomicBool>> = OnceLock::new();

impl<O: Objective> Trainer<O> {
    /// A trainer over the objective's trainable parameters.
    pub fn new(config: TrainerConfig, objective: O) -> Result<Self> {
        config.validate()?;
        let optimizer = Optimizer::new(config.optimizer, objective.params().trainable())?;
        Ok(Self {
            config,
            objective,
            optimizer,
            state: TrainState::default(),
            run_dir: None,
            evaluations: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            collective: Arc::new(Local),
        })
    }

    /// Trains data-parallel over `collective`'s processes: every process runs this trainer on
    /// its share of each global batch (a loader's [`Shard`](crate::data::Shard)); the parameters
    /// start from rank 0's, each step averages the gradients (and the loss) over the processes,
    /// so every process takes the same optimiser step; rank 0 alone writes checkpoints, history
    /// and progress. A process whose training fails prints its error and aborts the run (the
    /// others would otherwise wait for it forever).
    pub fn with_collective(mut self, collective: Arc<dyn Collective>) -> Self {
        self.collective = collective;
        self
    }

    /// Whether this process writes the run's files (rank 0).
    pub fn is_leader(&self) -> bool {
        self.collective.rank() == 0
    }

    /// Keep checkpoints and `history.jsonl` in `dir`.
    pub fn with_run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.run_dir = Some(dir.into());
        self
    }

    /// Runs `evaluate(objective, progress)` after every `every_epochs` epochs (`progress`: the
    /// epoch's last step, the run's total and the epoch) and records the result under `name` in
    /// the history (a kNN monitor, for instance).
    pub fn add_evaluation(
        &mut self,
        name: &str,
        every_epochs: usize,
        evaluate: impl FnMut(&mut O, &Progress) -> Result<f64> + 'static,
    ) {
        let name = name.to_string();
        let mut evaluate = evaluate;
        self.evaluations.push((every_epochs.max(1), Box::new(move |o, p| Ok(vec![(name.clone(), evaluate(o, p)?)]))));
    }

    /// A flag that, once set, makes training save a checkpoint after the current step and return.
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Makes Ctrl-C stop training cleanly (a checkpoint is saved after the current step; a second
    /// Ctrl-C exits at once with status 130). The handler is installed once per process.
    pub fn stop_on_ctrl_c(&self) -> Result<()> {
        if CTRL_C.get().is_some() {
            return Ok(());
        }
        let flag = Arc::new(AtomicBool::new(false));
        let set = Arc::clone(&flag);
        ctrlc::set_handler(move || {
            // The first Ctrl-C asks for a clean stop; a second one, when the first is not heard
            // (an evaluation under way, a stuck step), ends the process at once.
            if set.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond Ctrl-C: exiting without saving");
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: stopping after the current step, saving a checkpoint if the run has a folder (Ctrl-C again quits at once)");
        })
        .map_err(|e| Error::config("ctrl-c handler", e.to_string()))?;
        let _ = CTRL_C.set(flag);
        Ok(())
    }

    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || CTRL_C.get().is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// The objective.
    pub fn objective(&self) -> &O {
        &self.objective
    }

    /// The objective, mutably.
    pub fn objective_mut(&mut self) -> &mut O {
        &mut self.objective
    }

    /// The objective, ending training.
    pub fn into_objective(self) -> O {
        self.objective
    }

    /// Where training stands.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    fn saved_config(&self) -> serde_json::Value {
        serde_json::json!({ "trainer": self.config, "objective": self.objective.config() })
    }

    /// Continues from the newest checkpoint in the run folder, if there is one; returns whether
    /// one was loaded. The optimiser, the trainer's schedule and the objective's config must be
    /// those the checkpoint was written with (epochs and checkpoint settings may change).
    pub fn resume(&mut self) -> Result<bool> {
        let Some(run_dir) = &self.run_dir else { return Ok(false) };
        let Some(dir) = list_checkpoints(run_dir)?.pop() else { return Ok(false) };
        self.load_checkpoint(&dir)?;
        Ok(true)
    }

    /// Loads one checkpoint folder.
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<()> {
        checkpoint::verify_checksums(dir)?;
        let config_path = dir.join("config.json");
        let saved: serde_json::Value = read_json(&config_path)?;
        let current = self.saved_config();
        for field in ["lr", "schedule", "optimizer", "clip_grad_norm"] {
            if saved["trainer"][field] != current["trainer"][field] {
                return Err(Error::checkpoint(
                    &config_path,
                    format!("trainer.{field} was {} and is now {}", saved["trainer"][field], current["trainer"][field]),
                ));
            }
        }
        if let Some(path) = first_difference(&saved["objective"], &current["objective"], "objective") {
            return Err(Error::checkpoint(&config_path, format!("{path} differs from the current configuration")));
        }
        self.objective.params().load(&dir.join("model.safetensors"))?;
        self.optimizer.load(dir)?;
        let device =
            self.objective.params().all().first().map(|(_, v)| v.device().clone()).unwrap_or(candle_core::Device::Cpu);
        self.objective.load_extra_state(checkpoint::load_extra(dir, &device)?)?;
        let state_path = dir.join("state.json");
        let state: TrainState = read_json(&state_path)?;
        if let Some(step) = checkpoint::step_of(dir).filter(|&s| s != state.step) {
            return Err(Error::checkpoint(
                &state_path,
                format!("says step {}, but the folder is the checkpoint of step {step}", state.step),
            ));
        }
        self.state = state;
        tracing::info!(checkpoint = %dir.display(), step = self.state.step, "resumed");
        Ok(())
    }

    fn newest_checkpoint(&self) -> Result<Option<PathBuf>> {
        Ok(match &self.run_dir {
            Some(dir) => list_checkpoints(dir)?.pop(),
            None => None,
        })
    }

    fn save_checkpoint(&self) -> Result<Option<PathBuf>> {
        let Some(run_dir) = self.run_dir.as_ref().filter(|_| self.is_leader()) else { return Ok(None) };
        let dir = checkpoint::save(
            run_dir,
            checkpoint::Contents {
                params: self.objective.params(),
                optimizer: &self.optimizer,
                state: &self.state,
                config: &self.saved_config(),
                extra: self.objective.extra_state()?,
            },
            self.config.keep_last,
        )?;
        tracing::info!(checkpoint = %dir.display(), step = self.state.step, "checkpoint saved");
        Ok(Some(dir))
    }

    /// Trains until the configured epochs or steps are done, from wherever the state stands,
    /// on batches from `source` (a [`Loader`](crate::data::Loader) or any other [`BatchSource`]).
    pub fn fit<S: BatchSource<Batch = O::Batch>>(&mut self, source: &S) -> Result<Summary> {
        let result = self.fit_steps(source);
        if let Err(e) = &result {
            if self.collective.world_size() > 1 {
                eprintln!(
                    "rank {} of {}: {e}; stopping every process",
                    self.collective.rank(),
                    self.collective.world_size()
                );
                self.collective.abort(1);
            }
        }
        result
    }

    fn fit_steps<S: BatchSource<Batch = O::Batch>>(&mut self, source: &S) -> Result<Summary> {
        let world = self.collective.world_size();
        let per_epoch = source.batches_per_epoch();
        let total = self.config.total_steps(per_epoch);
        if self.state.step == 0 && self.state.samples_seen == 0 {
            self.state.seed = source.seed();
        } else if self.state.batch_size != 0
            && self.state.batch_size * self.state.world_size != source.batch_size() * world
        {
            // The order of the global batches depends on their size only, so a run resumes on
            // any number of processes that keeps it.
            let (b, n) = (self.state.batch_size, self.state.world_size);
            return Err(Error::config(
                "loader.batch_size",
                format!(
                    "the checkpoint was trained with batch size {b} on {n} process(es) (a global batch of {}), this run has {} on {world} ({}): the batch size times the processes must stay {0}",
                    b * n,
                    source.batch_size(),
                    source.batch_size() * world
                ),
            ));
        } else if self.state.seed != source.seed() {
            return Err(Error::config(
                "loader.seed",
                format!("the checkpoint was trained with seed {}, the loader has {}", self.state.seed, source.seed()),
            ));
        }
        // A resume may split the same global batch over another number of processes.
        self.state.world_size = world;
        self.state.batch_size = source.batch_size();
        if world > 1 {
            data_parallel::broadcast_params(self.objective.params(), self.collective.as_ref())?;
        }
        let mut history = self.open_history()?;
        let bar = progress_bar(self.config.progress && self.is_leader(), total as u64, self.state.step as u64);
        let started = Instant::now();
        let elapsed_before = self.state.elapsed_s;
        let mut summary = Summary {
            steps: self.state.step,
            last_loss: None,
            interrupted: false,
            checkpoint: None,
            first_step_seconds: None,
        };
        let mut last_saved = None;
        let mut saved_at = None;
        'epochs: while self.state.step < total {
            let epoch = self.state.epoch;
            for batch in source.epoch_from(epoch, self.state.batch_in_epoch) {
                if self.state.step >= total {
                    break 'epochs;
                }
                let step_started = Instant::now();
                let batch = batch?;
                self.objective.before_step(&Progress { step: self.state.step, total_steps: total, epoch })?;
                let loss = self.objective.loss(&batch)?;
                let mut value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
                // One process stops before a backward pass through a NaN; several first share
                // the loss, so that all stop together.
                let non_finite = |trainer: &Self, value: f64| -> Result<Summary> {
                    bar.abandon();
                    let checkpoint = trainer.newest_checkpoint()?;
                    Err(Error::NonFiniteLoss { step: trainer.state.step, epoch, value, checkpoint })
                };
                if world == 1 && !value.is_finite() {
                    return non_finite(self, value);
                }
                let mut grads = loss.backward()?;
                let trainable = self.objective.params().trainable();
                let vars: Vec<_> = trainable.iter().map(|(_, v)| v.clone()).collect();
                let mut stop = self.stop_requested();
                if world > 1 {
                    // Every process leaves this exchange with the same gradients, loss and stop
                    // request, so all take the same step and stop at the same one.
                    let mut shared = [value as f32, f32::from(stop)];
                    data_parallel::average_gradients(&mut grads, &vars, &mut shared, self.collective.as_ref())?;
                    value = f64::from(shared[0]) / world as f64;
                    stop = shared[1] > 0.0;
                }
                if !value.is_finite() {
                    return non_finite(self, value);
                }
                let sq_norms = grad_sq_norms(&grads, &vars)?;
                if let Some(bad) = sq_norms.iter().position(|s| !s.is_finite()) {
                    bar.abandon();
                    return Err(Error::NonFiniteGradient {
                        step: self.state.step,
                        epoch,
                        parameter: trainable[bad].0.clone(),
                        loss: value,
                        checkpoint: self.newest_checkpoint()?,
                    });
                }
                if let Some(max) = self.config.clip_grad_norm {
                    scale_to_norm(&mut grads, &vars, sq_norms.iter().sum::<f64>().sqrt(), max)?;
                }
                let lr = self.config.schedule.lr(self.config.lr, self.state.step);
                self.optimizer.step(&grads, lr)?;
                self.objective.after_step(&Progress { step: self.state.step, total_steps: total, epoch })?;
                let batch_len = source.batch_len(self.state.batch_in_epoch);
                self.state.step += 1;
                self.state.batch_in_epoch += 1;
                self.state.samples_seen += batch_len * world;
                self.state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
                summary.last_loss = Some(value);
                summary.first_step_seconds.get_or_insert(started.elapsed().as_secs_f64());
                let step_seconds = step_started.elapsed().as_secs_f64();
                let record = HistoryRecord {
                    step: self.state.step,
                    epoch,
                    loss: Some(value),
                    lr: Some(lr),
                    samples_per_s: Some((batch_len * world) as f64 / step_seconds),
                    step_s: Some(step_seconds),
                    method: self.objective.step_figures()?.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                    elapsed_s: self.state.elapsed_s,
                    eval: HashMap::new(),
                };
                history.append(&record)?;
                tracing::debug!(step = self.state.step, epoch, loss = value, lr, "step");
                bar.set_position(self.state.step as u64);
                bar.set_message(format!("epoch {epoch} loss {value:.4} lr {lr:.2e}"));
                if self.config.checkpoint_every.is_some_and(|n| self.state.step % n == 0) {
                    last_saved = self.save_checkpoint()?;
                    saved_at = Some(self.state.step);
                }
                // One process also hears a request made during the step's last part.
                if stop || (world == 1 && self.stop_requested()) {
                    summary.interrupted = self.state.step < total;
                    break 'epochs;
                }
            }
            if self.state.batch_in_epoch >= per_epoch {
                self.state.epoch += 1;
                self.state.batch_in_epoch = 0;
                let progress = Progress { step: self.state.step.saturating_sub(1), total_steps: total, epoch };
                self.evaluate(&progress, &mut history)?;
                if self.config.checkpoint_each_epoch && saved_at != Some(self.state.step) {
                    last_saved = self.save_checkpoint()?;
                    saved_at = Some(self.state.step);
                }
            }
        }
        bar.finish_and_clear();
        if saved_at != Some(self.state.step) {
            last_saved = self.save_checkpoint()?;
        }
        summary.steps = self.state.step;
        summary.checkpoint = last_saved;
        Ok(summary)
    }

    fn evaluate(&mut self, progress: &Progress, history: &mut RunLog) -> Result<()> {
        if !self.is_leader() {
            return Ok(());
        }
        let epoch = progress.epoch;
        let mut eval = HashMap::new();
        for (every, f) in &mut self.evaluations {
            if (epoch + 1) % *every == 0 {
                for (name, value) in f(&mut self.objective, progress)? {
                    tracing::info!(epoch, metric = %name, value, "evaluation");
                    eval.insert(name, value);
                }
            }
        }
        if eval.is_empty() {
            return Ok(());
        }
        let record = HistoryRecord {
            step: self.state.step,
            epoch,
            loss: None,
            lr: None,
            samples_per_s: None,
            step_s: None,
            method: Default::default(),
            elapsed_s: self.state.elapsed_s,
            eval,
        };
        history.append(&record)
    }

    /// Whether a history record belongs to the run up to the current state: an evaluation at the
    /// current step only if the epoch it closes was closed before the checkpoint (else it runs
    /// again after the resume).
    fn keeps(&self, r: &HistoryRecord) -> bool {
        let s = self.state.step;
        s > 0 && (r.step < s || (r.step == s && (r.loss.is_some() || self.state.batch_in_epoch == 0)))
    }

    /// The run's log (rank 0 with a run folder; nothing otherwise): see [`RunLog::open`].
    fn open_history(&self) -> Result<RunLog> {
        match self.run_dir.as_ref().filter(|_| self.is_leader()) {
            Some(run_dir) => RunLog::open(run_dir, self.state.step, |r| self.keeps(r)),
            None => Ok(RunLog::default()),
        }
    }
}

fn progress_bar(enabled: bool, total: u64, position: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
    {
        bar.set_style(style);
    }
    bar.set_position(position);
    bar
}

/// The path of the first leaf where two JSON values differ.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        _ if a == b => None,
        _ => Some(path.to_string()),
    }
}
