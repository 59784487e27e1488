//! DINO on Fashion-MNIST (or any IDX folder, image folder or list of image files, read lazily):
//! multi-crop views, train, monitor (kNN and collapse), evaluate.
//!
//!     cargo run --release -p contrastive-examples --bin dino -- --epochs 2 --out runs/dino

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use clap::Parser;
use contrastive_core::methods::{Dino, DinoConfig};
use contrastive_core::nn::Momentum;
use contrastive_examples::flags::{at_least_one, positive, unit_interval, CommonFlags};
use contrastive_examples::image_data::ImageFlags;
use contrastive_examples::image_method::MethodFlags;
use contrastive_examples::image_training::{train_and_evaluate, ImageRun, RunSpec};
use contrastive_examples::report::finish;
use contrastive_vision::{CropBatch, Encoder, EncoderConfig};

/// DINO (Caron et al. 2021) with lightly's CIFAR-10 head on the encoder's width (512 hidden, 64
/// bottleneck, 2048 prototypes), 2 global views (40-100% crops at the image size) and 6 local
/// ones (5-40% crops at 96/224 of it), teacher temperature 0.04, student 0.1, centre momentum
/// 0.9, the teacher's momentum cosine from 0.996, the last layer frozen for the first epoch; Adam
/// 1e-3, batch 256, as the simclr example.
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
    /// Local views of each image.
    #[arg(long, default_value_t = 6)]
    local_views: usize,
    /// Side of the local views (default: 96/224 of the global views', at least 8).
    #[arg(long, value_parser = at_least_one())]
    local_size: Option<usize>,
    /// Prototypes: the head's output width.
    #[arg(long, default_value_t = 2048, value_parser = at_least_one())]
    prototypes: usize,
    /// The teacher's temperature.
    #[arg(long, default_value_t = 0.04, value_parser = positive)]
    teacher_temperature: f64,
    /// The student's temperature.
    #[arg(long, default_value_t = 0.1, value_parser = positive)]
    student_temperature: f64,
    /// The teacher's momentum at the first step (cosine to 1 at the last).
    #[arg(long, default_value_t = 0.996, value_parser = unit_interval)]
    momentum: f64,
    /// Epochs at the start during which the head's last layer does not train.
    #[arg(long, default_value_t = 1)]
    freeze_last_layer_epochs: usize,
}

type Model = Dino<Encoder, CropBatch>;

fn run(cli: Cli) -> contrastive_core::Result<serde_json::Value> {
    cli.common.setup()?;
    cli.common.check_paths("dino", &cli)?;
    let run = ImageRun::prepare(&cli.common, &cli.images, cli.method.recipe)?;
    let local_size = cli.local_size.unwrap_or((run.size.0 * 96 / 224).max(8));
    let run = run.multi_crop(2, cli.local_views, local_size)?;
    let setup = cli.method.setup(run.data.train.channels(), run.size, &cli.images, cli.common.seed)?;
    if let EncoderConfig::Vit(vit) = &setup.config {
        if local_size % vit.patch_size != 0 {
            return Err(contrastive_core::Error::config(
                "--local-size",
                format!("{local_size}: a ViT's local views must be a multiple of --patch-size {}", vit.patch_size),
            ));
        }
    }
    let mut config = DinoConfig::with_widths(setup.config.dim(), 512, 64, cli.prototypes);
    config.loss.teacher_temp = cli.teacher_temperature;
    config.loss.warmup_teacher_temp = cli.teacher_temperature.min(config.loss.warmup_teacher_temp);
    config.loss.student_temp = cli.student_temperature;
    config.momentum = Momentum::Cosine { base: cli.momentum };
    config.freeze_last_layer_epochs = cli.freeze_last_layer_epochs;
    let model: Model = Dino::new(setup.build(), config, cli.common.seed, &cli.common.device()?)?
        .with_collective(setup.processes.clone());
    let spec = RunSpec { method: "dino", epochs: 2, batch_size: 256, lr: cli.method.lr };
    train_and_evaluate(&cli.common, &cli.images, &spec, run, model, Model::encoder, |m| m.sync_teacher())
}

fn main() {
    finish(run(Cli::parse()));
}
