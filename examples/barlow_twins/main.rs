//! Barlow Twins on Fashion-MNIST (or any IDX folder, image folder or list of image files, read
//! lazily): train, monitor (kNN and collapse), evaluate.
//!
//!     cargo run --release -p contrastive-examples --bin barlow_twins -- --epochs 2 --out runs/barlow_twins

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use clap::Parser;
use contrastive_core::loss::BARLOW_TWINS_LAMBDA;
use contrastive_core::methods::{BarlowTwins, BarlowTwinsConfig};
use contrastive_examples::flags::CommonFlags;
use contrastive_examples::image_data::ImageFlags;
use contrastive_examples::image_method::MethodFlags;
use contrastive_examples::image_training::{train_and_evaluate, ImageRun, RunSpec};
use contrastive_examples::report::finish;
use contrastive_vision::{Encoder, ViewBatch};

/// Barlow Twins (Zbontar et al. 2021) with lightly's CIFAR-10 projector on the encoder's width
/// (2048-2048, BatchNorm and ReLU between), λ 5e-3; Adam 1e-3, batch 256, as the simclr example.
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
    /// Weight of the off-diagonal (redundancy) terms.
    #[arg(long, default_value_t = BARLOW_TWINS_LAMBDA)]
    lambda: f64,
}

type Model = BarlowTwins<Encoder, ViewBatch>;

fn run(cli: Cli) -> contrastive_core::Result<serde_json::Value> {
    cli.common.setup()?;
    cli.common.check_paths("barlow_twins", &cli)?;
    let run = ImageRun::prepare(&cli.common, &cli.images, cli.method.recipe)?;
    let setup = cli.method.setup(run.data.train.channels(), run.size, &cli.images, cli.common.seed)?;
    let config =
        BarlowTwinsConfig { lambda: cli.lambda, ..BarlowTwinsConfig::with_widths(setup.config.dim(), 2048, 2048) };
    let model: Model = BarlowTwins::new(setup.build(), config, cli.common.seed, &cli.common.device()?)?
        .with_collective(setup.processes.clone());
    let spec = RunSpec { method: "barlow_twins", epochs: 2, batch_size: 256, lr: cli.method.lr };
    train_and_evaluate(&cli.common, &cli.images, &spec, run, model, Model::encoder, |_| Ok(()))
}

fn main() {
    finish(run(Cli::parse()));
}
