//! Which anchor-candidate pairs are positives and which are negatives.

use candle_core::{bail, DType, Device, Result, Tensor};

/// An (anchors x candidates) assignment of every pair to positive, negative, or neither.
///
/// The two in-batch layouts are stored by their structure (no N x N buffers), everything else
/// densely. A pair is never both positive and negative; a pair that is neither is left out of
/// the loss (for example an anchor against itself).
#[derive(Clone, Debug, PartialEq)]
pub struct PairMask {
    rows: usize,
    cols: usize,
    structure: Structure,
}

#[derive(Clone, Debug, PartialEq)]
enum Structure {
    /// Row i's positive is column i; every other column (including any past the rows) is a
    /// negative.
    CrossView,
    /// rows = cols = 2n: row i's positive is column (i + n) mod 2n, itself is excluded, every
    /// other column is a negative.
    Joint { n: usize },
    /// Row-major flags.
    Dense { positives: Vec<bool>, negatives: Vec<bool> },
}

/// One row of a mask, as the fused loss kernel reads it.
pub(crate) enum RowMask<'a> {
    /// One positive, at most one excluded column, every other column negative.
    Structured {
        positive: usize,
        excluded: Option<usize>,
    },
    Dense {
        positives: &'a [bool],
        negatives: &'a [bool],
    },
}

/// What a labelled candidate with the anchor's own label becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameLabel {
    /// A positive (supervised contrastive learning with a queue).
    Positive,
    /// Neither: it is left out, so that it is not pushed away as a false negative.
    Ignore,
}

impl PairMask {
    /// Cross-view in-batch layout (SimCSE, GraphCL, MoCo): anchor i of view 1 against the n
    /// candidates of view 2; candidate i is its positive, the other n - 1 are negatives.
    pub fn cross_view(n: usize) -> Self {
        Self { rows: n, cols: n, structure: Structure::CrossView }
    }

    /// Joint in-batch layout (SimCLR's NT-Xent): both views pooled into 2n rows, each row's
    /// positive is the other view of its sample, the remaining 2n - 2 rows are negatives.
    pub fn joint(n: usize) -> Self {
        Self { rows: 2 * n, cols: 2 * n, structure: Structure::Joint { n } }
    }

    /// Supervised layout (SupCon): rows and columns are the same samples; a pair with equal
    /// labels is positive, unequal labels negative, a sample against itself neither.
    pub fn supervised(labels: &[i64]) -> Self {
        let n = labels.len();
        let mut positives = vec![false; n * n];
        let mut negatives = vec![false; n * n];
        for (i, li) in labels.iter().enumerate() {
            for (j, lj) in labels.iter().enumerate() {
                if i != j {
                    positives[i * n + j] = li == lj;
                    negatives[i * n + j] = li != lj;
                }
            }
        }
        Self { rows: n, cols: n, structure: Structure::Dense { positives, negatives } }
    }

    /// A mask from row-major flags of length `rows * cols`.
    pub fn from_dense(rows: usize, cols: usize, positives: Vec<bool>, negatives: Vec<bool>) -> Result<Self> {
        if positives.len() != rows * cols || negatives.len() != rows * cols {
            bail!(
                "PairMask::from_dense: expected {rows} x {cols} = {} flags, got {} positives and {} negatives",
                rows * cols,
                positives.len(),
                negatives.len()
            );
        }
        if let Some(at) = positives.iter().zip(&negatives).position(|(p, n)| *p && *n) {
            bail!("PairMask::from_dense: pair ({}, {}) is both positive and negative", at / cols, at % cols);
        }
        Ok(Self { rows, cols, structure: Structure::Dense { positives, negatives } })
    }

    /// Number of anchors.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of candidates.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Whether candidate `j` is a positive of anchor `i`.
    pub fn is_positive(&self, i: usize, j: usize) -> bool {
        match self.row(i) {
            RowMask::Structured { positive, .. } => j == positive,
            RowMask::Dense { positives, .. } => positives[j],
        }
    }

    /// Whether candidate `j` is a negative of anchor `i`.
    pub fn is_negative(&self, i: usize, j: usize) -> bool {
        match self.row(i) {
            RowMask::Structured { positive, excluded } => j != positive && Some(j) != excluded,
            RowMask::Dense { negatives, .. } => negatives[j],
        }
    }

    /// Number of positives of each anchor.
    pub fn positive_counts(&self) -> Vec<usize> {
        self.counts(|p, _| p)
    }

    /// Number of negatives of each anchor.
    pub fn negative_counts(&self) -> Vec<usize> {
        self.counts(|_, n| n)
    }

    fn counts(&self, pick: impl Fn(usize, usize) -> usize) -> Vec<usize> {
        (0..self.rows)
            .map(|i| match self.row(i) {
                RowMask::Structured { excluded, .. } => pick(1, self.cols - 1 - usize::from(excluded.is_some())),
                RowMask::Dense { positives, negatives } => {
                    pick(positives.iter().filter(|&&p| p).count(), negatives.iter().filter(|&&n| n).count())
                }
            })
            .collect()
    }

    /// The mask as row-major (positives, negatives) flags.
    pub fn to_dense(&self) -> (Vec<bool>, Vec<bool>) {
        if let Structure::Dense { positives, negatives } = &self.structure {
            return (positives.clone(), negatives.clone());
        }
        let mut positives = vec![false; self.rows * self.cols];
        let mut negatives = vec![true; self.rows * self.cols];
        for i in 0..self.rows {
            if let RowMask::Structured { positive, excluded } = self.row(i) {
                positives[i * self.cols + positive] = true;
                negatives[i * self.cols + positive] = false;
                if let Some(e) = excluded {
                    negatives[i * self.cols + e] = false;
                }
            }
        }
        (positives, negatives)
    }

    /// The mask as two (rows, cols) u8 tensors of 0/1: (positives, negatives).
    pub fn to_tensors(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let (p, n) = self.to_dense();
        let as_u8 = |v: Vec<bool>| {
            Tensor::from_vec(v.into_iter().map(u8::from).collect::<Vec<_>>(), (self.rows, self.cols), device)
        };
        Ok((as_u8(p)?, as_u8(n)?))
    }

    /// Appends `extra` candidate columns that are negatives of every anchor (a MoCo queue,
    /// SimCSE's hard negatives).
    pub fn with_extra_negatives(&self, extra: usize) -> Self {
        if let Structure::CrossView = self.structure {
            return Self { rows: self.rows, cols: self.cols + extra, structure: Structure::CrossView };
        }
        self.append_columns(extra, |_, _| (false, true))
    }

    /// Appends labelled candidate columns (a labelled queue): a candidate whose label differs
    /// from the anchor's is a negative; one with the anchor's label is handled by `same`.
    pub fn with_labeled_candidates(
        &self,
        anchor_labels: &[i64],
        candidate_labels: &[i64],
        same: SameLabel,
    ) -> Result<Self> {
        if anchor_labels.len() != self.rows {
            bail!("with_labeled_candidates: {} anchor labels for {} anchors", anchor_labels.len(), self.rows);
        }
        Ok(self.append_columns(candidate_labels.len(), |i, j| {
            if anchor_labels[i] != candidate_labels[j] {
                (false, true)
            } else {
                (same == SameLabel::Positive, false)
            }
        }))
    }

    fn append_columns(&self, extra: usize, flag: impl Fn(usize, usize) -> (bool, bool)) -> Self {
        let (p, n) = self.to_dense();
        let cols = self.cols + extra;
        let mut positives = Vec::with_capacity(self.rows * cols);
        let mut negatives = Vec::with_capacity(self.rows * cols);
        for i in 0..self.rows {
            positives.extend_from_slice(&p[i * self.cols..(i + 1) * self.cols]);
            negatives.extend_from_slice(&n[i * self.cols..(i + 1) * self.cols]);
            for j in 0..extra {
                let (is_pos, is_neg) = flag(i, j);
                positives.push(is_pos);
                negatives.push(is_neg);
            }
        }
        Self { rows: self.rows, cols, structure: Structure::Dense { positives, negatives } }
    }

    pub(crate) fn row(&self, i: usize) -> RowMask<'_> {
        match &self.structure {
            Structure::CrossView => RowMask::Structured { positive: i, excluded: None },
            Structure::Joint { n } => RowMask::Structured { positive: (i + n) % (2 * n), excluded: Some(i) },
            Structure::Dense { positives, negatives } => RowMask::Dense {
                positives: &positives[i * self.cols..(i + 1) * self.cols],
                negatives: &negatives[i * self.cols..(i + 1) * self.cols],
            },
        }
    }
}

/// Reads a label tensor of shape (N,) and dtype u32 or i64 into a vector; `what` names the caller.
pub fn labels_to_vec(what: &str, labels: &Tensor, expected: usize) -> Result<Vec<i64>> {
    if labels.dims() != [expected] {
        bail!("{what}: labels must have shape ({expected},), got {:?}", labels.dims());
    }
    match labels.dtype() {
        DType::I64 => labels.to_vec1::<i64>(),
        DType::U32 => Ok(labels.to_vec1::<u32>()?.into_iter().map(i64::from).collect()),
        DType::U8 => Ok(labels.to_vec1::<u8>()?.into_iter().map(i64::from).collect()),
        other => bail!("{what}: labels must be u32 or i64 (or u8), got {other:?}"),
    }
}
