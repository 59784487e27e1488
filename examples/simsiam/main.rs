//! SimSiam on Fashion-MNIST (or any IDX folder, image folder or list of image files, read
//! lazily): train, monitor (kNN and collapse), evaluate.
//!
//!     cargo run --release -p contrastive-examples --bin simsiam -- --epochs 2 --out runs/simsiam

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use clap::Parser;
use contrastive_core::methods::{SimSiam, SimSiamConfig};
use contrastive_examples::flags::CommonFlags;
use contrastive_examples::image_data::ImageFlags;
use contrastive_examples::image_method::MethodFlags;
use contrastive_examples::image_training::{train_and_evaluate, ImageRun, RunSpec};
use contrastive_examples::report::finish;
use contrastive_vision::{Encoder, ViewBatch};

/// SimSiam (Chen and He 2021) with lightly's CIFAR-10 heads on the encoder's width (projector
/// 512-512-128 with BatchNorm after every layer, predictor 128-64-128), the symmetric negative
/// cosine with the stop-gradient; Adam 1e-3, batch 256, as the simclr example.
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
}

type Model = SimSiam<Encoder, ViewBatch>;

fn run(cli: Cli) -> contrastive_core::Result<serde_json::Value> {
    cli.common.setup()?;
    cli.common.check_paths("simsiam", &cli)?;
    let run = ImageRun::prepare(&cli.common, &cli.images, cli.method.recipe)?;
    let setup = cli.method.setup(run.data.train.channels(), run.size, &cli.images, cli.common.seed)?;
    let config = SimSiamConfig::with_widths(setup.config.dim(), 512, 128, 64);
    let model: Model = SimSiam::new(setup.build(), config, cli.common.seed, &cli.common.device()?)?;
    let spec = RunSpec { method: "simsiam", epochs: 2, batch_size: 256, lr: cli.method.lr };
    train_and_evaluate(&cli.common, &cli.images, &spec, run, model, Model::encoder, |_| Ok(()))
}

fn main() {
    finish(run(Cli::parse()));
}
