//! SimCLR on Fashion-MNIST (or any IDX folder, image folder or list of image files, read lazily): train, monitor, evaluate.
//!
//!     cargo run --release -p contrastive-examples --bin simclr -- --epochs 2 --out runs/simclr

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use clap::Parser;
use contrastive_core::grad_cache::GradCache;
use contrastive_core::nn::ProjectionHeadConfig;
use contrastive_examples::flags::{positive, CommonFlags, GradCacheFlags};
use contrastive_examples::image_data::ImageFlags;
use contrastive_examples::image_training::{train_and_evaluate, ImageRun, RunSpec};
use contrastive_examples::processes;
use contrastive_examples::recipe::{EncoderChoice, Recipe};
use contrastive_examples::report::finish;
use contrastive_vision::{Encoder, SimClr, SimClrConfig};

/// SimCLR (Chen et al. 2020) with the PyTorch reference recipe by default: the small ConvNet, head
/// 256-256-64, NT-Xent at temperature 0.5, Adam 1e-3, batch 256.
#[derive(Parser, Debug, serde::Serialize)]
#[command(about)]
struct Cli {
    #[command(flatten)]
    #[serde(flatten)]
    common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    images: ImageFlags,
    /// NT-Xent temperature.
    #[arg(long, default_value_t = 0.5, value_parser = positive)]
    temperature: f64,
    /// Learning rate (Adam).
    #[arg(long, default_value_t = 1e-3, value_parser = positive)]
    lr: f64,
    /// The encoder.
    #[arg(long, value_enum, default_value = "convnet")]
    encoder: EncoderChoice,
    /// The augmentation recipe.
    #[arg(long, value_enum, default_value = "reference")]
    recipe: Recipe,
    /// Under mpirun: BatchNorm statistics over the global batch (SyncBatchNorm, as SimCLR's
    /// paper trains) instead of each process's own batch (PyTorch DDP's default).
    #[arg(long)]
    sync_batch_norm: bool,
    #[command(flatten)]
    #[serde(flatten)]
    grad_cache: GradCacheFlags,
}

fn run(cli: Cli) -> contrastive_core::Result<serde_json::Value> {
    cli.common.setup()?;
    cli.common.check_paths("simclr", &cli)?;
    let run = ImageRun::prepare(&cli.common, &cli.images, cli.recipe)?;
    let encoder = cli.encoder.config(run.data.train.channels(), run.size, &cli.images, cli.common.seed)?;
    let width = encoder.dim();
    let head = ProjectionHeadConfig {
        input_dim: width,
        hidden_dim: width,
        output_dim: 64,
        layers: 2,
        batch_norm: true,
        output_batch_norm: false,
    };
    let config = SimClrConfig { encoder, head, temperature: cli.temperature };
    // Under mpirun (feature mpi) NT-Xent sees every process's batch, and with --sync-batch-norm
    // BatchNorm normalises over it too.
    let processes = processes::collective_with_batch_norm(cli.sync_batch_norm)?;
    let model = SimClr::new(config, cli.common.seed, &cli.common.device()?)?.with_collective(processes);
    let spec = RunSpec { method: "simclr", epochs: 2, batch_size: 256, lr: cli.lr };
    match cli.grad_cache.grad_cache_chunk {
        Some(chunk) => {
            let encoder_of: fn(&GradCache<SimClr>) -> &Encoder = |m| m.inner().encoder();
            let cached = cli.grad_cache.wrap(model, chunk)?;
            train_and_evaluate(&cli.common, &cli.images, &spec, run, cached, encoder_of, |_| Ok(()))
        }
        None => {
            let encoder_of: fn(&SimClr) -> &Encoder = SimClr::encoder;
            train_and_evaluate(&cli.common, &cli.images, &spec, run, model, encoder_of, |_| Ok(()))
        }
    }
}

fn main() {
    finish(run(Cli::parse()));
}
