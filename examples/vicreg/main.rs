//! VICReg on Fashion-MNIST (or any IDX folder, image folder or list of image files, read lazily):
//! train, monitor (kNN and collapse), evaluate.
//!
//!     cargo run --release -p contrastive-examples --bin vicreg -- --epochs 2 --out runs/vicreg

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use clap::Parser;
use contrastive_core::loss::VicRegWeights;
use contrastive_core::methods::{VicReg, VicRegConfig};
use contrastive_examples::flags::CommonFlags;
use contrastive_examples::image_data::ImageFlags;
use contrastive_examples::image_method::MethodFlags;
use contrastive_examples::image_training::{train_and_evaluate, ImageRun, RunSpec};
use contrastive_examples::report::finish;
use contrastive_vision::{Encoder, ViewBatch};

/// VICReg (Bardes et al. 2022) with lightly's CIFAR-10 projector on the encoder's width
/// (2048-2048, BatchNorm and ReLU between), weights 25/25/1; Adam 1e-3, batch 256, as the simclr
/// example.
#[derive(Parser, Debug, serde::Serialize)]
#[command(about)]
struct Cli {
    #[command(flatten)]
    #[serde(flatten)]
    common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    images: ImageFlags,
    #[command(flatten)]
    #[serde(flatten)]
    method: MethodFlags,
    /// Weight of the invariance term (the views' mean squared distance).
    #[arg(long, default_value_t = 25.0)]
    invariance: f64,
    /// Weight of the variance term (each dimension's std held above 1).
    #[arg(long, default_value_t = 25.0)]
    variance: f64,
    /// Weight of the covariance term (off-diagonal covariances pushed to 0).
    #[arg(long, default_value_t = 1.0)]
    covariance: f64,
}

type Model = VicReg<Encoder, ViewBatch>;

fn run(cli: Cli) -> contrastive_core::Result<serde_json::Value> {
    cli.common.setup()?;
    cli.common.check_paths("vicreg", &cli)?;
    let run = ImageRun::prepare(&cli.common, &cli.images, cli.method.recipe)?;
    let setup = cli.method.setup(run.data.train.channels(), run.size, &cli.images, cli.common.seed)?;
    let weights = VicRegWeights {
        invariance: cli.invariance,
        variance: cli.variance,
        covariance: cli.covariance,
        ..Default::default()
    };
    let config = VicRegConfig { weights, ..VicRegConfig::with_widths(setup.config.dim(), 2048, 2048) };
    let model: Model = VicReg::new(setup.build(), config, cli.common.seed, &cli.common.device()?)?
        .with_collective(setup.processes.clone());
    let spec = RunSpec { method: "vicreg", epochs: 2, batch_size: 256, lr: cli.method.lr };
    train_and_evaluate(&cli.common, &cli.images, &spec, run, model, Model::encoder, |_| Ok(()))
}

fn main() {
    finish(run(Cli::parse()));
}
