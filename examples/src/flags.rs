//! The flags every example takes, so that people learn them once.

use clap::Args;
use contrastive_core::grad_cache::{ChunkBatchNorm, GradCache, InBatch};
use serde::Serialize;
use std::path::PathBuf;

/// Shared flags: data, run length, reproducibility, output, resuming, initial weights, export.
#[derive(Args, Clone, Debug, Serialize)]
pub struct CommonFlags {
    /// Dataset location (a folder or file; each example says what it reads).
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Training epochs.
    #[arg(long, value_name = "N", value_parser = at_least_one())]
    pub epochs: Option<usize>,
    /// Stop after N optimizer steps (then evaluate and report as usual); the run ends at
    /// whichever of --epochs and --max-steps comes first.
    #[arg(long, value_name = "N", value_parser = at_least_one())]
    pub max_steps: Option<usize>,
    /// Samples per training batch.
    #[arg(long, value_name = "N", value_parser = at_least_one())]
    pub batch_size: Option<usize>,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (0: all cores; more than the machine has are cut to that, with a warning).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Where the model and each batch live: cpu, cuda, cuda:N, metal, metal:N (GPUs need a build
    /// with `--features cuda` or `metal`). Data is read and augmented on the CPU and each batch
    /// moves once.
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: contrastive_core::device::DeviceSpec,
    /// Folder for checkpoints, history.jsonl, TensorBoard event files and plots (none: nothing is
    /// written).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run whose checkpoints are in DIR (the same flags as the first run).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Initial encoder weights: a safetensors file (torchvision, timm or one of ours) or, with the
    /// `hub` feature, a Hugging Face Hub repository id.
    #[arg(long, value_name = "PATH_OR_REPO")]
    pub init: Option<String>,
    /// Write the evaluation set's embeddings (`embeddings` (N, D) f32) and labels (`labels` (N)
    /// i64) to this `.safetensors` file, or, for any other path, to a folder of safetensors shards
    /// with an `index.json`, written as they are computed (for image files, streamed from them).
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub save_embeddings: Option<PathBuf>,
    /// A short run for CI: little data, few steps.
    #[arg(long)]
    pub quick: bool,
}

/// Gradient caching, on the examples whose in-batch objective trains a backbone with BatchNorm.
#[derive(Args, Clone, Debug, Serialize)]
pub struct GradCacheFlags {
    /// Gradient caching: N samples (of each view or tower) through the encoder at a time: memory
    /// holds N samples' activations, whatever --batch-size, and every sample's negatives are the
    /// whole batch.
    #[arg(long, value_name = "N", value_parser = at_least_one())]
    pub grad_cache_chunk: Option<usize>,
    /// With --grad-cache-chunk, what BatchNorm normalises by: `chunk`, each chunk's own statistics
    /// (the step of batches of N normalised apart), or `running`, the running statistics, frozen
    /// (exactly the full batch's step with frozen BatchNorm; for a pretrained --init).
    #[arg(long, value_name = "chunk|running", default_value = "chunk", requires = "grad_cache_chunk",
          value_parser = |s: &str| s.parse::<ChunkBatchNorm>())]
    pub grad_cache_batch_norm: ChunkBatchNorm,
}

impl GradCacheFlags {
    /// `model` trained through gradient caching in chunks of `chunk` with these flags' BatchNorm.
    pub fn wrap<O: InBatch>(&self, model: O, chunk: usize) -> contrastive_core::Result<GradCache<O>> {
        Ok(GradCache::new(model, chunk)?.with_batch_norm(self.grad_cache_batch_norm))
    }

    /// The BatchNorm choice in use, for the final JSON (`grad_cache_batch_norm`): none without
    /// caching.
    pub fn batch_norm_in_use(&self) -> Option<ChunkBatchNorm> {
        self.grad_cache_chunk.map(|_| self.grad_cache_batch_norm)
    }
}

/// The device this run opened, for the final JSON.
static OPENED: std::sync::OnceLock<(contrastive_core::device::DeviceSpec, candle_core::Device)> =
    std::sync::OnceLock::new();

/// The device the run opened with [`CommonFlags::device`] (the CPU if it opened none).
pub fn opened_device() -> (contrastive_core::device::DeviceSpec, candle_core::Device) {
    OPENED.get().cloned().unwrap_or((contrastive_core::device::DeviceSpec::Cpu, candle_core::Device::Cpu))
}

/// A count flag that must be at least 1 (clap names the flag and the range when it is not).
pub fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// `--seeds` and other u64 counts: at least 1.
pub fn at_least_one_u64() -> clap::builder::RangedU64ValueParser<u64> {
    clap::builder::RangedU64ValueParser::<u64>::new().range(1..)
}

fn real(s: &str) -> Result<f64, String> {
    s.trim().parse::<f64>().map_err(|_| format!("`{s}` is not a number"))
}

/// A rate or temperature: finite and > 0.
pub fn positive(s: &str) -> Result<f64, String> {
    let v = real(s)?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{v} is outside the allowed range: finite and > 0"))
    }
}

/// A momentum: in [0, 1].
pub fn unit_interval(s: &str) -> Result<f64, String> {
    let v = real(s)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside the allowed range [0, 1]"))
    }
}

/// A fraction to drop or mask: in [0, 1).
pub fn below_one(s: &str) -> Result<f64, String> {
    let v = real(s)?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside the allowed range [0, 1)"))
    }
}

impl CommonFlags {
    /// Installs the log subscriber (RUST_LOG, default `info` to stderr) and sizes the thread pools
    /// (rayon's and candle's own).
    pub fn setup(&self) -> contrastive_core::Result<()> {
        contrastive_core::alloc::keep_freed_memory();
        contrastive_core::candle_pool::configure_candle_pool(self.threads());
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
        if self.threads > 0 {
            if self.threads() < self.threads {
                let cores = self.threads();
                tracing::warn!("--threads {} is more than the {cores} cores here: using {cores}", self.threads);
            }
            rayon::ThreadPoolBuilder::new()
                .num_threads(self.threads())
                .build_global()
                .map_err(|e| contrastive_core::Error::config("--threads", e.to_string()))?;
        }
        Ok(())
    }

    /// The device `--device` names, opened (an error that says which feature a GPU needs); the
    /// final JSON reports it.
    pub fn device(&self) -> contrastive_core::Result<candle_core::Device> {
        let device = self.device.open()?;
        let _ = OPENED.set((self.device, device.clone()));
        Ok(device)
    }

    /// `--threads`, at most the cores this machine has (0: all of them).
    pub fn threads(&self) -> usize {
        self.threads.min(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Checks the paths a run will need before any work, so that a wrong one is found at once:
    /// `--resume DIR` must hold a checkpoint (graphcl, with a folder per seed, checks each),
    /// `--save-embeddings` must be writable without touching other files, and the run folder must take this
    /// run ([`Self::claim_run_dir`]). `flags` is the example's whole parsed command line.
    pub fn check_paths(&self, example: &str, flags: &impl Serialize) -> contrastive_core::Result<()> {
        if let Some(dir) = &self.resume {
            Self::require_checkpoint(dir)?;
        }
        self.check_outputs()?;
        self.claim_run_dir(example, flags)
    }

    /// Records the example and its flags in the run folder's `run.json` (`--out`: a folder that
    /// holds another run's checkpoints is refused) or checks them against it (`--resume`: another
    /// example or another value of a flag that shapes the run is refused, naming the flag).
    pub fn claim_run_dir(&self, example: &str, flags: &impl Serialize) -> contrastive_core::Result<()> {
        match self.run_dir() {
            Some(dir) => crate::run_record::RunRecord::new(example, flags)?.claim(&dir, self.resume.is_some()),
            None => Ok(()),
        }
    }

    /// `--save-embeddings FILE.safetensors` must not be a folder; `--save-embeddings DIR` (any
    /// other path: shards) must be new, empty or an earlier set of shards.
    pub fn check_outputs(&self) -> contrastive_core::Result<()> {
        if let Some(path) = &self.save_embeddings {
            if crate::report::saves_shards(path) {
                contrastive_eval::ShardWriter::check_target(path)?;
            } else if path.is_dir() {
                return Err(contrastive_core::Error::config(
                    "--save-embeddings",
                    format!(
                        "{} is a folder; name a .safetensors file, or a folder without that extension for shards",
                        path.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Fails unless `dir` holds a checkpoint to resume from.
    pub fn require_checkpoint(dir: &std::path::Path) -> contrastive_core::Result<()> {
        if contrastive_core::train::list_checkpoints(dir)?.is_empty() {
            return Err(contrastive_core::Error::checkpoint(dir, "--resume: no checkpoint in this folder"));
        }
        Ok(())
    }

    /// Ends the run with [`contrastive_core::Error::Interrupted`] if training was stopped by
    /// Ctrl-C (its checkpoint is saved): the remaining evaluation would describe a half-trained
    /// model. [`crate::report::finish`] then prints the command that resumes it.
    pub fn stop_if_interrupted(&self, summary: &contrastive_core::train::Summary) -> contrastive_core::Result<()> {
        if summary.interrupted {
            return Err(contrastive_core::Error::Interrupted {
                step: summary.steps,
                checkpoint: summary.checkpoint.clone(),
            });
        }
        Ok(())
    }

    /// The run folder: `--resume` if given, else `--out`.
    pub fn run_dir(&self) -> Option<PathBuf> {
        self.resume.clone().or_else(|| self.out.clone())
    }
}

impl CommonFlags {
    /// The shared start of a training run: checkpoints and history in `--out` (or the `--resume`
    /// folder), continuing from the latest checkpoint there with `--resume` (an error when there is
    /// none), and Ctrl-C stopping after the current step with a checkpoint.
    pub fn start<O: contrastive_core::train::Objective>(
        &self,
        trainer: contrastive_core::train::Trainer<O>,
    ) -> contrastive_core::Result<contrastive_core::train::Trainer<O>> {
        self.start_in(trainer, self.run_dir())
    }

    /// [`Self::start`] with the run's checkpoints in `dir` (graphcl: a folder per seed).
    pub fn start_in<O: contrastive_core::train::Objective>(
        &self,
        mut trainer: contrastive_core::train::Trainer<O>,
        dir: Option<PathBuf>,
    ) -> contrastive_core::Result<contrastive_core::train::Trainer<O>> {
        trainer = trainer.with_collective(crate::processes::for_trainer()?);
        if let Some(dir) = &dir {
            trainer = trainer.with_run_dir(dir);
        }
        if self.resume.is_some() && !trainer.resume()? {
            let dir = dir.unwrap_or_default();
            return Err(contrastive_core::Error::checkpoint(dir, "--resume: no checkpoint in this folder"));
        }
        trainer.stop_on_ctrl_c()?;
        Ok(trainer)
    }
}
