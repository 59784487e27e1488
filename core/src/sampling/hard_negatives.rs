//! Hard-negative mining: keep only the negatives an anchor confuses most with its positive.

use super::mask::PairMask;
use candle_core::{bail, DType, Result, Tensor};

/// Keeps, for every anchor, its `k` most similar negatives and drops the rest from the loss.
///
/// With `false_negative_margin = Some(m)`, a candidate whose similarity to the anchor exceeds
/// the anchor's positive similarity minus `m` is first dropped as a probable false negative (the
/// filter of GISTEmbed, Solatorio 2024, arXiv:2402.16829, where the similarities come from a
/// guide model). With several positives the least similar one sets the threshold. Dropped
/// candidates become neither positive nor negative.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HardNegativeMiner {
    /// Negatives kept per anchor.
    pub k: usize,
    /// Margin of the false-negative filter; `None` turns the filter off.
    pub false_negative_margin: Option<f64>,
}

impl HardNegativeMiner {
    /// Mines `mask` with the (anchors, candidates) similarity matrix `similarity` (from the model
    /// being trained, or from a guide model).
    pub fn mine(&self, mask: &PairMask, similarity: &Tensor) -> Result<PairMask> {
        if self.k == 0 {
            bail!("HardNegativeMiner: k must be at least 1");
        }
        if let Some(m) = self.false_negative_margin {
            if !m.is_finite() {
                bail!("HardNegativeMiner: false_negative_margin must be finite, got {m}");
            }
        }
        let (rows, cols) = (mask.rows(), mask.cols());
        if similarity.dims() != [rows, cols] {
            bail!("HardNegativeMiner: similarity has shape {:?}, the mask is ({rows}, {cols})", similarity.dims());
        }
        let sim = similarity.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        if let Some(at) = sim.iter().position(|v| !v.is_finite()) {
            bail!("HardNegativeMiner: similarity ({}, {}) is not finite", at / cols, at % cols);
        }
        let (positives, mut negatives) = mask.to_dense();
        for i in 0..rows {
            let row = &sim[i * cols..(i + 1) * cols];
            let pos = &positives[i * cols..(i + 1) * cols];
            let neg = &mut negatives[i * cols..(i + 1) * cols];
            let threshold = self.false_negative_margin.and_then(|m| {
                let weakest = row.iter().zip(pos).filter(|(_, &p)| p).map(|(s, _)| *s).reduce(f64::min)?;
                Some(weakest - m)
            });
            let mut kept: Vec<usize> = (0..cols).filter(|&j| neg[j] && threshold.is_none_or(|t| row[j] <= t)).collect();
            kept.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            kept.truncate(self.k);
            neg.iter_mut().for_each(|n| *n = false);
            for j in kept {
                neg[j] = true;
            }
        }
        PairMask::from_dense(rows, cols, positives, negatives)
    }
}
