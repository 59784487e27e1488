//! Stratified k-fold cross validation of a linear probe: the protocol of graph contrastive
//! learning papers (GraphCL: 10 folds, C chosen inside each training part).

use crate::linear_probe::LinearProbe;
use crate::summary::MeanStd;
use candle_core::{Device, Tensor};
use contrastive_core::data::stratified_folds;
use contrastive_core::{Error, Result};

/// The outer loop: `folds` stratified folds drawn by `seed`; in each, `probe` (with its own inner
/// cross validation over C) is fitted on the other folds and scored on this one.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossValidation {
    /// Outer folds (GraphCL: 10).
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// The probe fitted in each fold.
    pub probe: LinearProbe,
}

/// Accuracy over the folds.
#[derive(Clone, Debug, PartialEq)]
pub struct CvReport {
    /// Mean test accuracy over the folds.
    pub mean: f64,
    /// Population standard deviation of the fold accuracies (numpy's default).
    pub std: f64,
    /// Each fold's test accuracy.
    pub fold_accuracy: Vec<f64>,
    /// Share of the most frequent class: the accuracy of always guessing it.
    pub majority_rate: f64,
}

impl CrossValidation {
    /// Cross-validated accuracy of classifying `labels` from the rows of `x` (N, D).
    pub fn evaluate(&self, x: &Tensor, labels: &[u32]) -> Result<CvReport> {
        let (n, _) = x.dims2()?;
        if labels.len() != n {
            return Err(Error::shape("cross validation: labels", format!("({n},), one per row"), &[labels.len()]));
        }
        if self.folds < 2 {
            return Err(Error::config("cross_validation.folds", format!("must be at least 2, got {}", self.folds)));
        }
        let fold = stratified_folds(labels, self.folds, self.seed);
        let x = x.to_device(&Device::Cpu)?;
        let mut fold_accuracy = Vec::with_capacity(self.folds);
        for f in 0..self.folds {
            let (test, train): (Vec<u32>, Vec<u32>) = (0..n as u32).partition(|&i| fold[i as usize] == f);
            if test.is_empty() {
                continue;
            }
            let pick = |idx: &[u32]| -> Result<(Tensor, Vec<u32>)> {
                let t = Tensor::from_vec(idx.to_vec(), idx.len(), &Device::Cpu)?;
                Ok((x.index_select(&t, 0)?, idx.iter().map(|&i| labels[i as usize]).collect()))
            };
            let ((xtr, ytr), (xte, yte)) = (pick(&train)?, pick(&test)?);
            let probe = LinearProbe { seed: self.seed.wrapping_add(f as u64), ..self.probe.clone() };
            fold_accuracy.push(probe.evaluate(&xtr, &ytr, &xte, &yte)?.accuracy);
        }
        let MeanStd { mean, std, .. } = MeanStd::of(&fold_accuracy);
        let mut counts = std::collections::HashMap::new();
        labels.iter().for_each(|l| *counts.entry(l).or_insert(0usize) += 1);
        let majority_rate = counts.values().copied().max().unwrap_or(0) as f64 / n.max(1) as f64;
        Ok(CvReport { mean, std, fold_accuracy, majority_rate })
    }
}
