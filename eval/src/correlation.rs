//! Pearson and Spearman correlation, as used for semantic textual similarity.

use crate::check;
use contrastive_core::{Error, Result};

/// Pearson's r between two series of equal length (>= 2); a constant series is an error.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    check::series("pearson", x, y, 2)?;
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return Err(Error::Data("pearson: a series is constant, so the correlation is undefined".into()));
    }
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Spearman's ρ: Pearson's r of the ranks, ties given their average rank (scipy's `spearmanr`).
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check::series("spearman", x, y, 2)?;
    pearson(&average_ranks(x), &average_ranks(y)).map_err(|e| Error::Data(e.to_string().replace("pearson", "spearman")))
}

/// 1-based ranks, ties sharing the mean of the ranks they span.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = rank;
        }
        i = j + 1;
    }
    ranks
}
