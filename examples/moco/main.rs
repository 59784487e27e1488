//! MoCo v2 on Fashion-MNIST (or any IDX folder, image folder or list of image files, read lazily): train, monitor, evaluate.
//!
//!     cargo run --release -p contrastive-examples --bin moco -- --epochs 2 --out runs/moco

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use clap::Parser;
use contrastive_core::grad_cache::GradCache;
use contrastive_core::nn::ProjectionHeadConfig;
use contrastive_examples::flags::{at_least_one, positive, unit_interval, CommonFlags, GradCacheFlags};
use contrastive_examples::image_data::ImageFlags;
use contrastive_examples::image_training::{train_and_evaluate, ImageRun, RunSpec};
use contrastive_examples::processes;
use contrastive_examples::recipe::{EncoderChoice, Recipe};
use contrastive_examples::report::finish;
use contrastive_vision::{Encoder, MoCo, MoCoConfig, MoCoSettings};

/// MoCo v2 (Chen et al. 2020): query and momentum key encoders, a queue of keys, InfoNCE at
/// temperature 0.2, momentum 0.99, split BatchNorm with the key batch shuffled.
#[derive(Parser, Debug, serde::Serialize)]
#[command(about)]
struct Cli {
    #[command(flatten)]
    #[serde(flatten)]
    common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    images: ImageFlags,
    /// Keys in the queue.
    #[arg(long, default_value_t = 16384, value_parser = at_least_one())]
    queue_size: usize,
    /// InfoNCE temperature.
    #[arg(long, default_value_t = 0.2, value_parser = positive)]
    temperature: f64,
    /// Momentum of the key encoder.
    #[arg(long, default_value_t = 0.99, value_parser = unit_interval)]
    momentum: f64,
    /// Both views as queries (the mean of the two losses).
    #[arg(long)]
    symmetric: bool,
    /// BatchNorm groups per process (the key batch is shuffled across every process's groups:
    /// shuffle-BN; 1 on one process turns it off).
    #[arg(long, default_value_t = 4, value_parser = at_least_one())]
    bn_groups: usize,
    /// Normalise the keys in the queries' BatchNorm groups instead of shuffling them across.
    #[arg(long)]
    no_shuffle_bn: bool,
    /// Learning rate (Adam).
    #[arg(long, default_value_t = 1e-3, value_parser = positive)]
    lr: f64,
    /// The encoder.
    #[arg(long, value_enum, default_value = "convnet")]
    encoder: EncoderChoice,
    /// The augmentation recipe.
    #[arg(long, value_enum, default_value = "reference")]
    recipe: Recipe,
    // Gradient caching (--grad-cache-chunk N: N queries of each view through the query network
    // at a time; the keys, without gradient, over the whole batch).
    #[command(flatten)]
    #[serde(flatten)]
    grad_cache: GradCacheFlags,
}

fn run(cli: Cli) -> contrastive_core::Result<serde_json::Value> {
    cli.common.setup()?;
    cli.common.check_paths("moco", &cli)?;
    let run = ImageRun::prepare(&cli.common, &cli.images, cli.recipe)?;
    let encoder = cli.encoder.config(run.data.train.channels(), run.size, &cli.images, cli.common.seed)?;
    let width = encoder.dim();
    let config = MoCoConfig {
        encoder,
        moco: MoCoSettings {
            head: ProjectionHeadConfig::moco_v2(width),
            queue_size: cli.queue_size,
            temperature: cli.temperature,
            momentum: cli.momentum,
            symmetric: cli.symmetric,
            bn_groups: cli.bn_groups,
            shuffle_bn: !cli.no_shuffle_bn,
        },
    };
    // Under mpirun (feature mpi): shuffle-BN across every process's groups, the queue filled with
    // every process's keys.
    let processes = processes::collective()?;
    let model = MoCo::new(config, cli.common.seed, &cli.common.device()?)?.with_collective(processes);
    let spec = RunSpec { method: "moco_v2", epochs: 2, batch_size: 256, lr: cli.lr };
    match cli.grad_cache.grad_cache_chunk {
        Some(chunk) => {
            let encoder_of: fn(&GradCache<MoCo>) -> &Encoder = |m| m.inner().encoder();
            let cached = cli.grad_cache.wrap(model, chunk)?;
            train_and_evaluate(&cli.common, &cli.images, &spec, run, cached, encoder_of, |m| {
                m.inner().sync_key_network()
            })
        }
        None => {
            let encoder_of: fn(&MoCo) -> &Encoder = MoCo::encoder;
            train_and_evaluate(&cli.common, &cli.images, &spec, run, model, encoder_of, |m| m.sync_key_network())
        }
    }
}

fn main() {
    finish(run(Cli::parse()));
}
