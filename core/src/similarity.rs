//! Similarity matrices between two sets of embeddings, whole or block by block.
//!
//! The whole matrix is what a loss needs; the blocked form is for evaluation and mining over sets
//! too large to hold an (M, K) matrix (60,000 x 10,000 pairs is 2.4 GB in f32).

use candle_core::{bail, DType, Result, Tensor, D};
use rayon::prelude::*;

/// How two embeddings are compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Similarity {
    /// Dot product of the L2-normalised rows (every loss in this crate uses this).
    #[default]
    Cosine,
    /// Plain dot product.
    Dot,
}

/// Norms below this are clamped before dividing, as `torch.nn.functional.normalize` does.
pub const NORM_EPS: f64 = 1e-12;

/// Scales each row of a 2-D tensor to unit L2 norm (rows with norm below [`NORM_EPS`] are divided
/// by `NORM_EPS` instead, so a zero row stays zero and nothing is NaN).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(NORM_EPS)?;
    x.broadcast_div(&norm)
}

/// Checks that `a` is (M, D) and `b` is (K, D) with the same D and dtype; `what` names the caller.
pub(crate) fn check_pair(what: &str, a: &Tensor, b: &Tensor) -> Result<(usize, usize, usize)> {
    let (m, d) = match a.dims() {
        [m, d] => (*m, *d),
        other => bail!("{what}: the first input must be 2-D (N, D), got shape {other:?}"),
    };
    let (k, d2) = match b.dims() {
        [k, d2] => (*k, *d2),
        other => bail!("{what}: the second input must be 2-D (N, D), got shape {other:?}"),
    };
    if d != d2 {
        bail!("{what}: embedding widths differ: {:?} against {:?}", a.dims(), b.dims());
    }
    if a.dtype() != b.dtype() {
        bail!("{what}: dtypes differ: {:?} against {:?}", a.dtype(), b.dtype());
    }
    if !a.dtype().is_float() {
        bail!("{what}: embeddings must be floating point, got {:?}", a.dtype());
    }
    Ok((m, k, d))
}

/// Row and column counts of one block of a blocked similarity computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSize {
    /// Rows of the first set per block.
    pub rows: usize,
    /// Rows of the second set per block.
    pub cols: usize,
}

impl Default for BlockSize {
    /// 1024 x 8192: 32 MiB per block in f32.
    fn default() -> Self {
        Self { rows: 1024, cols: 8192 }
    }
}

/// The `k` most similar rows of a corpus for each query, best first.
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    /// Neighbours per query (the requested k, or the corpus size if smaller was asked for).
    pub k: usize,
    /// Row-major (queries, k): corpus row indices.
    pub indices: Vec<u32>,
    /// Row-major (queries, k): their similarities.
    pub values: Vec<f32>,
}

impl TopK {
    /// Indices of the neighbours of query `q`, best first.
    pub fn indices_of(&self, q: usize) -> &[u32] {
        &self.indices[q * self.k..(q + 1) * self.k]
    }

    /// Similarities of the neighbours of query `q`, best first.
    pub fn values_of(&self, q: usize) -> &[f32] {
        &self.values[q * self.k..(q + 1) * self.k]
    }
}

impl Similarity {
    /// The full (M, K) similarity matrix between the rows of `a` (M, D) and of `b` (K, D).
    pub fn matrix(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check_pair("similarity", a, b)?;
        match self {
            Similarity::Cosine => l2_normalize(a)?.matmul(&l2_normalize(b)?.t()?),
            Similarity::Dot => a.matmul(&b.t()?),
        }
    }

    /// Visits the similarity matrix block by block, never holding more than one block of
    /// `block.rows x block.cols` entries: `visit(row_offset, col_offset, block)`.
    pub fn for_each_block(
        self,
        a: &Tensor,
        b: &Tensor,
        block: BlockSize,
        mut visit: impl FnMut(usize, usize, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let (m, k, _) = check_pair("blocked similarity", a, b)?;
        if block.rows == 0 || block.cols == 0 {
            bail!("blocked similarity: block size must be positive, got {block:?}");
        }
        let (a, b) = match self {
            Similarity::Cosine => (l2_normalize(a)?, l2_normalize(b)?),
            Similarity::Dot => (a.clone(), b.clone()),
        };
        for r0 in (0..m).step_by(block.rows) {
            let rows = a.narrow(0, r0, block.rows.min(m - r0))?;
            for c0 in (0..k).step_by(block.cols) {
                let cols = b.narrow(0, c0, block.cols.min(k - c0))?;
                let sim = rows.matmul(&cols.t()?)?;
                visit(r0, c0, &sim)?;
            }
        }
        Ok(())
    }

    /// The `k` most similar rows of `corpus` for every row of `queries`, computed block by block
    /// (ties go to the lower corpus index).
    pub fn top_k(self, queries: &Tensor, corpus: &Tensor, k: usize, block: BlockSize) -> Result<TopK> {
        let mut running = RunningTopK::new(self, queries, k, block)?;
        running.add(corpus)?;
        running.finish()
    }
}

/// The `k` most similar rows of a corpus that arrives in parts (shards read one at a time from
/// disk), for every query: only the queries, one part and the candidates are ever held. Corpus
/// rows are numbered across the parts in the order they were added. The same result as
/// [`Similarity::top_k`] over the parts concatenated.
pub struct RunningTopK {
    similarity: Similarity,
    queries: Tensor,
    block: BlockSize,
    k: usize,
    best: Vec<Candidates>,
    seen: usize,
}

impl RunningTopK {
    /// Starts a search for the `k` best of each row of `queries` (M, D).
    pub fn new(similarity: Similarity, queries: &Tensor, k: usize, block: BlockSize) -> Result<Self> {
        let m = match queries.dims() {
            [m, _] => *m,
            other => bail!("top_k: the queries must be 2-D (N, D), got shape {other:?}"),
        };
        if k == 0 {
            bail!("top_k: k must be at least 1");
        }
        if block.rows == 0 || block.cols == 0 {
            bail!("top_k: block size must be positive, got {block:?}");
        }
        // Normalised once, not once per part.
        let queries = match similarity {
            Similarity::Cosine => l2_normalize(queries)?,
            Similarity::Dot => queries.clone(),
        };
        let best = (0..m).map(|_| Candidates::new(k)).collect();
        Ok(Self { similarity, queries, block, k, best, seen: 0 })
    }

    /// Offers the next `part` (K, D) of the corpus; its rows are numbered from the rows seen so far.
    pub fn add(&mut self, part: &Tensor) -> Result<()> {
        let (_, k, _) = check_pair("top_k", &self.queries, part)?;
        if self.seen + k > u32::MAX as usize {
            bail!("top_k: a corpus of more than {} rows", u32::MAX);
        }
        let part = match self.similarity {
            Similarity::Cosine => l2_normalize(part)?,
            Similarity::Dot => part.clone(),
        };
        // Each query keeps a buffer of candidates and the value of its k-th best so far: a later
        // candidate at or below it can never enter (it also loses ties, having a larger index),
        // so most are rejected by one comparison. Rows are independent: rayon takes them.
        let (best, offset) = (&mut self.best, self.seen);
        Similarity::Dot.for_each_block(&self.queries, &part, self.block, |r0, c0, sim| {
            let cols = sim.dim(1)?;
            let values = sim.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            best[r0..r0 + values.len() / cols.max(1)].par_iter_mut().zip(values.par_chunks(cols.max(1))).for_each(
                |(keep, row)| {
                    for (c, &v) in row.iter().enumerate() {
                        keep.offer(v, (offset + c0 + c) as u32);
                    }
                },
            );
            Ok(())
        })?;
        self.seen += k;
        Ok(())
    }

    /// Corpus rows offered so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// The `k` best of each query, best first; an error if fewer than `k` corpus rows were offered.
    pub fn finish(self) -> Result<TopK> {
        let k = self.k;
        if k > self.seen {
            bail!("top_k: k = {k} must be between 1 and the corpus size {}", self.seen);
        }
        let m = self.best.len();
        let mut out = TopK { k, indices: Vec::with_capacity(m * k), values: Vec::with_capacity(m * k) };
        for keep in self.best {
            for (v, i) in keep.into_sorted() {
                out.values.push(v);
                out.indices.push(i);
            }
        }
        Ok(out)
    }
}

/// The running top k of one query.
struct Candidates {
    k: usize,
    kept: Vec<(f32, u32)>,
    /// The k-th best value once k candidates have been kept since the last cut.
    threshold: f32,
}

impl Candidates {
    fn new(k: usize) -> Self {
        Self { k, kept: Vec::with_capacity(2 * k), threshold: f32::NEG_INFINITY }
    }

    /// Offers a candidate; indices must arrive in increasing order.
    #[inline]
    fn offer(&mut self, v: f32, i: u32) {
        if v <= self.threshold && self.kept.len() >= self.k {
            return;
        }
        self.kept.push((v, i));
        if self.kept.len() == 2 * self.k {
            self.cut();
        }
    }

    fn cut(&mut self) {
        if self.kept.len() > self.k {
            self.kept.select_nth_unstable_by(self.k - 1, better_first);
            self.kept.truncate(self.k);
        }
        if self.kept.len() == self.k {
            self.threshold = self.kept.iter().map(|p| p.0).fold(f32::INFINITY, f32::min);
        }
    }

    fn into_sorted(mut self) -> Vec<(f32, u32)> {
        self.cut();
        self.kept.sort_unstable_by(better_first);
        self.kept
    }
}

/// Orders (similarity, index) pairs by similarity, highest first, then by index.
fn better_first(x: &(f32, u32), y: &(f32, u32)) -> std::cmp::Ordering {
    y.0.total_cmp(&x.0).then(x.1.cmp(&y.1))
}
