//! How good image features are: weighted kNN and a linear probe on a held-out set.

use candle_core::{Device, Tensor};
use contrastive_core::Result;
use contrastive_eval::{Knn, LinearProbe};
use contrastive_vision::InMemoryImages;
use serde::Serialize;

/// Test accuracies, in percent.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Scores {
    /// Weighted kNN top-1.
    pub knn: f64,
    /// Logistic-regression probe.
    pub linear: f64,
}

/// kNN and linear-probe accuracy of `test` features classified from `train` features.
pub fn score(
    train: &Tensor,
    train_labels: &[u32],
    test: &Tensor,
    test_labels: &[u32],
    knn: &Knn,
    probe: &LinearProbe,
) -> Result<Scores> {
    let knn = knn.accuracy(train, train_labels, test, test_labels)?.top1;
    let linear = probe.evaluate(train, train_labels, test, test_labels)?.accuracy;
    Ok(Scores { knn: 100.0 * knn, linear: 100.0 * linear })
}

/// The images as flat pixel vectors (N, C·H·W): the baseline every encoder must beat.
pub fn raw_pixels(images: &InMemoryImages) -> Result<Tensor> {
    Ok(Tensor::from_vec(images.pixels.clone(), (images.labels.len(), images.image_len()), &Device::Cpu)?)
}
