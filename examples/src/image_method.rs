//! What the image examples of the methods without negatives (`byol`, `simsiam`, `barlow_twins`,
//! `vicreg`, `dino`) share: their flags beside the common and image-file ones, and the encoder
//! each builds.

use crate::flags::positive;
use crate::recipe::{EncoderChoice, Recipe};
use clap::Args;
use contrastive_core::collective::Collective;
use contrastive_core::Result;
use contrastive_vision::{Encoder, EncoderConfig};
use serde::Serialize;
use std::sync::Arc;

/// Learning rate, encoder, recipe and SyncBatchNorm.
#[derive(Args, Clone, Debug, Serialize)]
pub struct MethodFlags {
    /// Learning rate (Adam).
    #[arg(long, default_value_t = 1e-3, value_parser = positive)]
    pub lr: f64,
    /// The encoder.
    #[arg(long, value_enum, default_value = "convnet")]
    pub encoder: EncoderChoice,
    /// The augmentation recipe.
    #[arg(long, value_enum, default_value = "reference")]
    pub recipe: Recipe,
    /// Under mpirun: BatchNorm statistics over the global batch (SyncBatchNorm) instead of each
    /// process's own batch.
    #[arg(long)]
    pub sync_batch_norm: bool,
}

/// The encoder a method trains and the processes it trains on.
pub struct EncoderSetup {
    /// The encoder's configuration.
    pub config: EncoderConfig,
    /// The run's processes (under mpirun, with `--sync-batch-norm` set up).
    pub processes: Arc<dyn Collective>,
}

impl EncoderSetup {
    /// Builds the encoder under a method's `VarBuilder` (twice for a method with a target).
    pub fn build(&self) -> impl Fn(candle_nn::VarBuilder) -> Result<Encoder> + '_ {
        move |vb| Encoder::new(&self.config, vb)
    }
}

impl MethodFlags {
    /// The encoder for images of `channels` seen as views of `size` (a ViT as `images` says, its
    /// drop path seeded by `seed`) and the run's processes.
    pub fn setup(
        &self,
        channels: usize,
        size: (usize, usize),
        images: &crate::image_data::ImageFlags,
        seed: u64,
    ) -> Result<EncoderSetup> {
        let processes = crate::processes::collective_with_batch_norm(self.sync_batch_norm)?;
        Ok(EncoderSetup { config: self.encoder.config(channels, size, images, seed)?, processes })
    }
}
