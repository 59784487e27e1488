//! Pearson and Spearman correlation, as used for semantic textual similarity.

use crate::check;
use candle_core::{DType, Tensor};
use contrastive_core::similarity::l2_normalize;
use contrastive_core::{Error, Result};

/// Pearson's r and Spearman's ρ of one set of predictions against human scores.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Correlation {
    /// Pearson's r.
    pub pearson: f64,
    /// Spearman's ρ.
    pub spearman: f64,
}

/// How well the cosine similarity of embedded items follows human judgements: `pairs` holds
/// (row i, row j, score) over the rows of `embeddings` (N, D); the cosine of each pair is
/// correlated with its score (STS benchmarks, Lee-50). A row index out of range is an error.
pub fn pair_correlation(embeddings: &Tensor, pairs: &[(usize, usize, f64)]) -> Result<Correlation> {
    let (n, _) = check::embeddings("pair_correlation", embeddings)?;
    if let Some(&(i, j, _)) = pairs.iter().find(|&&(i, j, _)| i >= n || j >= n) {
        return Err(Error::index(format!("pair_correlation: embeddings, by pair ({i}, {j})"), i.max(j), n));
    }
    let v = l2_normalize(&embeddings.to_dtype(DType::F64)?)?;
    let sims = v.matmul(&v.t()?)?.to_vec2::<f64>()?;
    let predicted: Vec<f64> = pairs.iter().map(|&(i, j, _)| sims[i][j]).collect();
    let gold: Vec<f64> = pairs.iter().map(|p| p.2).collect();
    Ok(Correlation { pearson: pearson(&predicted, &gold)?, spearman: spearman(&predicted, &gold)? })
}

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

#[cfg(test)]
mod tests {
    use super::pair_correlation;
    use candle_core::{Device, Tensor};

    #[test]
    fn cosines_of_pairs_against_scores() {
        // Rows (1, 0), (0, 1), (1, 1): cosines 0, 1/sqrt(2), 1/sqrt(2) against scores 0, 0.5, 0.9.
        // Python: scipy.stats.pearsonr([0, .70710678, .70710678], [0, .5, .9]) = 0.8962581595302718,
        // spearmanr(...) = 0.8660254037844387 (ties at average rank).
        let z = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &Device::Cpu).unwrap();
        let c = pair_correlation(&z, &[(0, 1, 0.0), (0, 2, 0.5), (1, 2, 0.9)]).unwrap();
        assert!((c.pearson - 0.8962581595302718).abs() < 1e-6, "{c:?}");
        assert!((c.spearman - 0.8660254037844387).abs() < 1e-12, "{c:?}");
        let err = pair_correlation(&z, &[(0, 3, 1.0), (0, 1, 0.0)]).unwrap_err();
        assert!(
            matches!(&err, contrastive_core::Error::Index { what, index: 3, len: 3 } if what.contains("pair (0, 3)")),
            "{err}"
        );
    }
}
