//! BYOL on Fashion-MNIST (or any IDX folder, image folder or list of image files, read lazily):
//! train, monitor (kNN and collapse), evaluate.
//!
//!     cargo run --release -p contrastive-examples --bin byol -- --epochs 2 --out runs/byol

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use clap::Parser;
use contrastive_core::methods::{Byol, ByolConfig};
use contrastive_core::nn::Momentum;
use contrastive_examples::flags::{unit_interval, CommonFlags};
use contrastive_examples::image_data::ImageFlags;
use contrastive_examples::image_method::MethodFlags;
use contrastive_examples::image_training::{train_and_evaluate, ImageRun, RunSpec};
use contrastive_examples::report::finish;
use contrastive_vision::{Encoder, ViewBatch};

/// BYOL (Grill et al. 2020) with lightly's CIFAR-10 heads on the encoder's width (projector and
/// predictor 1024 hidden with BatchNorm, 128 out), the symmetric negative cosine, the target's
/// momentum cosine from 0.996 to 1; Adam 1e-3, batch 256, as the simclr example.
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
    /// The target's momentum at the first step (cosine to 1 at the last).
    #[arg(long, default_value_t = 0.996, value_parser = unit_interval)]
    momentum: f64,
}

type Model = Byol<Encoder, ViewBatch>;

fn run(cli: Cli) -> contrastive_core::Result<serde_json::Value> {
    cli.common.setup()?;
    cli.common.check_paths("byol", &cli)?;
    let run = ImageRun::prepare(&cli.common, &cli.images, cli.method.recipe)?;
    let setup = cli.method.setup(run.data.train.channels(), run.size, &cli.images, cli.common.seed)?;
    let config = ByolConfig {
        momentum: Momentum::Cosine { base: cli.momentum },
        ..ByolConfig::with_widths(setup.config.dim(), 1024, 128)
    };
    let model: Model = Byol::new(setup.build(), config, cli.common.seed, &cli.common.device()?)?;
    let spec = RunSpec { method: "byol", epochs: 2, batch_size: 256, lr: cli.method.lr };
    train_and_evaluate(&cli.common, &cli.images, &spec, run, model, Model::encoder, |m| m.sync_target())
}

fn main() {
    finish(run(Cli::parse()));
}
