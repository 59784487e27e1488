//! Splits of a labelled set that keep each class in proportion: the folds of cross validation,
//! a train/test split of one folder, and the label-efficient subsets (1% and 10% of labels).

use crate::error::{Error, Result};
use crate::rng::keyed_rng;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;

/// The indices of each class's samples, in order, by ascending class (one pass, whatever the ids).
fn members_by_class(labels: &[u32]) -> BTreeMap<u32, Vec<usize>> {
    let mut by_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    by_class
}

/// The fold (0..k) of each sample: within each class, samples are shuffled by `seed` and dealt
/// to the folds in turn, so every fold holds each class in proportion.
pub fn stratified_folds(labels: &[u32], k: usize, seed: u64) -> Vec<usize> {
    let mut folds = vec![0; labels.len()];
    let mut offset = 0;
    for (class, mut members) in members_by_class(labels) {
        members.shuffle(&mut keyed_rng(seed, &[10, u64::from(class)]));
        for (j, &i) in members.iter().enumerate() {
            // Continuing the deal across classes keeps the fold sizes within one of each other.
            folds[i] = (offset + j) % k.max(1);
        }
        offset += members.len();
    }
    folds
}

/// A stratified subset of about `fraction` of the samples (at least one of each class), chosen by
/// `seed`: the label-efficient protocols (1% and 10% of the labels).
pub fn stratified_subset(labels: &[u32], fraction: f64, seed: u64) -> Result<Vec<usize>> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(Error::config("stratified subset fraction", format!("must be in (0, 1], got {fraction}")));
    }
    let mut keep = Vec::new();
    for (class, mut members) in members_by_class(labels) {
        members.shuffle(&mut keyed_rng(seed, &[11, u64::from(class)]));
        let take = ((members.len() as f64 * fraction).round() as usize).max(1);
        keep.extend_from_slice(&members[..take.min(members.len())]);
    }
    keep.sort_unstable();
    Ok(keep)
}

/// (train, test) indices: fold 0 of `k` [`stratified_folds`] is the test part, so `k = 5` is the
/// usual 4:1 split with each class in proportion.
pub fn stratified_split(labels: &[u32], k: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let folds = stratified_folds(labels, k, seed);
    (0..labels.len()).partition(|&i| folds[i] != 0)
}
