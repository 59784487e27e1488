//! Agreement between two labellings of the same samples: normalised mutual information and the
//! adjusted Rand index, as scikit-learn defines them.

use contrastive_core::{Error, Result};
use std::collections::HashMap;

struct Contingency {
    n: f64,
    /// (row, column, count) of every non-empty cell.
    cells: Vec<(usize, usize, f64)>,
    rows: Vec<f64>,
    cols: Vec<f64>,
}

fn contingency(what: &str, a: &[u32], b: &[u32]) -> Result<Contingency> {
    if a.len() != b.len() {
        return Err(Error::shape(
            format!("{what}: second labelling"),
            format!("({},) as the first", a.len()),
            &[b.len()],
        ));
    }
    if a.is_empty() {
        return Err(Error::shape(format!("{what}: labellings"), "(N >= 1,)", &[0]));
    }
    let index = |labels: &[u32]| {
        let mut map = HashMap::new();
        for &l in labels {
            let next = map.len();
            map.entry(l).or_insert(next);
        }
        map
    };
    let (ia, ib) = (index(a), index(b));
    let mut cells: HashMap<(usize, usize), f64> = HashMap::new();
    let mut rows = vec![0.0; ia.len()];
    let mut cols = vec![0.0; ib.len()];
    for (x, y) in a.iter().zip(b) {
        let (r, c) = (ia[x], ib[y]);
        *cells.entry((r, c)).or_insert(0.0) += 1.0;
        rows[r] += 1.0;
        cols[c] += 1.0;
    }
    let mut cells: Vec<(usize, usize, f64)> = cells.into_iter().map(|((r, c), n)| (r, c, n)).collect();
    cells.sort_by_key(|&(r, c, _)| (r, c));
    Ok(Contingency { n: a.len() as f64, cells, rows, cols })
}

fn entropy(counts: &[f64], n: f64) -> f64 {
    -counts.iter().filter(|&&c| c > 0.0).map(|&c| (c / n) * (c / n).ln()).sum::<f64>()
}

/// Normalised mutual information with the arithmetic mean of the entropies (scikit-learn's
/// default); 1 when both labellings put every sample in one cluster.
pub fn nmi(labels_true: &[u32], labels_pred: &[u32]) -> Result<f64> {
    let t = contingency("nmi", labels_true, labels_pred)?;
    if t.rows.len() == 1 && t.cols.len() == 1 {
        return Ok(1.0);
    }
    let mi: f64 = t.cells.iter().map(|&(r, c, nij)| (nij / t.n) * (t.n * nij / (t.rows[r] * t.cols[c])).ln()).sum();
    let (ha, hb) = (entropy(&t.rows, t.n), entropy(&t.cols, t.n));
    let denom = (ha + hb) / 2.0;
    if denom <= 0.0 {
        return Ok(1.0);
    }
    Ok((mi.max(0.0) / denom).min(1.0))
}

/// The adjusted Rand index (Hubert and Arabie 1985): 1 for identical partitions (whatever the
/// label names), about 0 for independent ones.
pub fn ari(labels_true: &[u32], labels_pred: &[u32]) -> Result<f64> {
    let t = contingency("ari", labels_true, labels_pred)?;
    let pairs = |x: f64| x * (x - 1.0) / 2.0;
    let index: f64 = t.cells.iter().map(|&(_, _, c)| pairs(c)).sum();
    let sum_a: f64 = t.rows.iter().map(|&c| pairs(c)).sum();
    let sum_b: f64 = t.cols.iter().map(|&c| pairs(c)).sum();
    let expected = sum_a * sum_b / pairs(t.n).max(1.0);
    let max = (sum_a + sum_b) / 2.0;
    if max == expected {
        return Ok(1.0);
    }
    Ok((index - expected) / (max - expected))
}
