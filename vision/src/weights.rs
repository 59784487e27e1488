//! Loading published weights (torchvision, timm, our own checkpoints) into an encoder.

use contrastive_core::nn::ParamStore;
use contrastive_core::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// What [`load_encoder_weights`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Variables set from the file.
    pub loaded: usize,
    /// Tensors of the file that are not encoder variables and were left out (a classifier `fc.*`,
    /// a projection `head.*`, `num_batches_tracked`).
    pub ignored: Vec<String>,
}

/// Sets every variable under `prefix` (e.g. `encoder.`) in `store` from a safetensors file saved
/// by torchvision or timm (`conv1.weight`, `layer1.0.bn1.running_mean`, ...) or by this crate
/// (`encoder.conv1.weight`, ...). Tensors that are not variables of the encoder are left out and
/// listed; a variable the file lacks, or a shape that differs, is an error naming the tensor, both
/// shapes and the file. Half-precision files are converted.
pub fn load_encoder_weights(store: &ParamStore, path: &Path, prefix: &str) -> Result<LoadReport> {
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .map_err(|e| Error::checkpoint(path, format!("cannot read safetensors: {e}")))?;
    let wanted: Vec<(String, candle_core::Var)> =
        store.all().into_iter().filter(|(k, _)| k.starts_with(prefix)).collect();
    if wanted.is_empty() {
        return Err(Error::checkpoint(path, format!("the model has no variable under `{prefix}`")));
    }
    let by_name: HashMap<&str, &candle_core::Tensor> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut report = LoadReport::default();
    for (name, var) in &wanted {
        let short = &name[prefix.len()..];
        let Some(t) = by_name.get(name.as_str()).or_else(|| by_name.get(short)) else {
            return Err(Error::checkpoint(
                path,
                format!("tensor `{short}` (or `{name}`) is missing; the encoder needs {} tensors", wanted.len()),
            ));
        };
        // A ViT's position embeddings for another image size (timm's 224 weights for 96 pixel
        // views): resampled to the model's grid, as timm does when it loads them.
        let resampled;
        let t = match (short.ends_with("pos_embed"), t.dims(), var.dims()) {
            (true, &[1, n, d], &[1, m, e]) if n != m && d == e => {
                resampled = crate::vit::resample_position_embeddings(t, m)
                    .map_err(|e| Error::checkpoint(path, format!("tensor `{short}`: {e}")))?;
                &resampled
            }
            _ => *t,
        };
        if t.dims() != var.dims() {
            return Err(Error::checkpoint(
                path,
                format!("tensor `{short}` has shape {:?}, the encoder expects {:?}", t.dims(), var.dims()),
            ));
        }
        contrastive_core::nn::check_finite(short, t, path)?;
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        report.loaded += 1;
    }
    let used = |k: &str| wanted.iter().any(|(n, _)| n == k || &n[prefix.len()..] == k);
    report.ignored = tensors.keys().filter(|k| !used(k)).cloned().collect();
    report.ignored.sort();
    Ok(report)
}
