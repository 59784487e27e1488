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

impl MethodFlags {
    /// The encoder's configuration for images of `channels`, a function that builds it under a
    /// method's `VarBuilder`, and the run's processes (under mpirun, with `--sync-batch-norm`
    /// set up).
    pub fn encoder(
        &self,
        channels: usize,
    ) -> Result<(EncoderConfig, impl Fn(candle_nn::VarBuilder) -> Result<Encoder>, Arc<dyn Collective>)> {
        let config = self.encoder.config(channels);
        let build = {
            let config = config.clone();
            move |vb: candle_nn::VarBuilder| Encoder::new(&config, vb)
        };
        Ok((config, build, crate::processes::collective_with_batch_norm(self.sync_batch_norm)?))
    }
}
