//! Gradient caching (GradCache: Gao, Zhang, Han and Callan, "Scaling Deep Contrastive Learning
//! Batch Size under Memory Limited Setup", 2021, arXiv:2101.06983; sentence-transformers'
//! `CachedMultipleNegativesRankingLoss`): an in-batch loss over a batch far larger than the
//! activations of memory allow.
//!
//! [`GradCache`] wraps an [`InBatch`] objective and computes each step in three parts:
//!
//! 1. the embeddings of the batch, at most `chunk` rows at a time (the batch split as evenly as
//!    can be), each chunk's graph dropped at once;
//! 2. the loss of all the embeddings and its gradient with respect to them (and to the loss's
//!    own variables, such as CLIP's temperature): one small graph;
//! 3. each chunk again, with its graph, back-propagating the cached gradient of its rows
//!    (`sum(e * g)`); the parameter gradients add up over the chunks.
//!
//! Memory holds one chunk's activations, whatever the batch; the forward pass runs twice. The
//! gradient is the full batch's when every chunk's forward pass is what the whole batch's would
//! be for those rows: randomness (dropout) keyed by the rows' place in the batch
//! ([`nn::in_global_batch`](crate::nn::in_global_batch)) and replayed in the second part (the
//! objective's [`InBatch::forward_state`], its dropout streams, is restored before each chunk).
//! BatchNorm in training is not: a row's output depends on the rows normalised with it, and the
//! whole batch's statistics at a layer depend on every earlier layer's over the whole batch, which
//! no pass over chunks has. [`ChunkBatchNorm`] chooses what a backbone with BatchNorm does:
//!
//! - [`ChunkBatchNorm::Chunk`] (the default): each chunk normalises with its own statistics, so
//!   the step is that of batches of `chunk` rows normalised apart (as `bn_groups` does, or as
//!   data parallelism without SyncBatchNorm does), with every row's negatives still the whole
//!   batch; the running statistics move once per chunk (the first pass's updates are undone).
//! - [`ChunkBatchNorm::Running`]: BatchNorm normalises by its running statistics and leaves them
//!   alone (frozen BatchNorm, [`nn::with_running_statistics`](crate::nn::with_running_statistics),
//!   γ and β still train); the gradient is then exactly the full batch's with frozen BatchNorm.
//!   For fine-tuning a pretrained backbone whose statistics are good; from scratch they stay at
//!   their initial values.
//!
//! To the [`Trainer`](crate::train::Trainer) it is one more [`Objective`]: its loss is the full
//! batch's value, and its backward pass yields the accumulated gradients.

use crate::error::Result;
use crate::nn::ParamStore;
use crate::train::{ExtraState, Objective, Progress};
use candle_core::{Tensor, Var};
use std::ops::Range;

/// An objective whose loss is a function of per-row embeddings that each row's forward pass
/// computes on its own: an in-batch contrastive loss (NT-Xent, SimCSE's InfoNCE, SupCon, CLIP).
/// `loss(batch)` must equal `loss_of_embeddings(batch, embed_rows(batch, 0..rows(batch)))`.
pub trait InBatch: Objective {
    /// The rows (samples) of `batch`.
    fn rows(&self, batch: &Self::Batch) -> Result<usize>;

    /// The embeddings of rows `rows` of `batch` in training mode: one tensor per role (anchors,
    /// positives, hard negatives; a tower), each `(rows.len(), D)`. Their randomness is the
    /// whole batch's for those rows ([`nn::in_global_batch`](crate::nn::in_global_batch)).
    fn embed_rows(&self, batch: &Self::Batch, rows: Range<usize>) -> candle_core::Result<Vec<Tensor>>;

    /// [`InBatch::embed_rows`]'s values (the same randomness) without their graph: the first
    /// pass. An objective whose encoder can free its activations as it goes
    /// ([`Backbone::encode_without_graph`](crate::Backbone::encode_without_graph)) overrides it;
    /// the default cuts the results once each chunk's graph was built.
    fn embed_rows_without_graph(&self, batch: &Self::Batch, rows: Range<usize>) -> candle_core::Result<Vec<Tensor>> {
        Ok(self.embed_rows(batch, rows)?.iter().map(Tensor::detach).collect())
    }

    /// What the forward pass's randomness depends on (dropout streams' positions): saved before
    /// the first chunk and restored before every chunk of both passes, so that the second pass
    /// replays the first. Default: the objective's whole [`Objective::extra_state`]; an objective
    /// whose extra state holds more (MoCo's key network and queue) gives its encoder's.
    fn forward_state(&self) -> Result<ExtraState> {
        self.extra_state()
    }

    /// Restores what [`InBatch::forward_state`] returned.
    fn load_forward_state(&mut self, state: ExtraState) -> Result<()> {
        self.load_extra_state(state)
    }

    /// The loss of the whole batch's embeddings (each role's rows in batch order); `batch` for
    /// what else the loss reads (SupCon's labels).
    fn loss_of_embeddings(&self, batch: &Self::Batch, embeddings: &[Tensor]) -> candle_core::Result<Tensor>;
}

/// A batch input that splits by rows: a tensor's first dimension, a token batch's sentences. What
/// an objective over any encoder needs to embed a chunk of its batch.
pub trait RowSlice: Sized {
    /// The rows.
    fn row_count(&self) -> Result<usize>;
    /// Rows `rows`, in order.
    fn slice_rows(&self, rows: Range<usize>) -> Result<Self>;
}

impl RowSlice for Tensor {
    fn row_count(&self) -> Result<usize> {
        Ok(self.dim(0)?)
    }

    fn slice_rows(&self, rows: Range<usize>) -> Result<Self> {
        Ok(self.narrow(0, rows.start, rows.len())?)
    }
}

/// What BatchNorm layers normalise by in a cached step (nothing changes for a backbone without
/// BatchNorm); the module documentation says how each differs from the full batch's step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkBatchNorm {
    /// Each chunk's own batch statistics.
    #[default]
    Chunk,
    /// The running statistics, frozen: exactly the full batch's step with frozen BatchNorm.
    Running,
}

impl std::str::FromStr for ChunkBatchNorm {
    type Err = String;

    /// `chunk` or `running` (a flag's or a config's value).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "chunk" => Ok(Self::Chunk),
            "running" => Ok(Self::Running),
            other => Err(format!("`{other}`: expected `chunk` (each chunk's statistics) or `running` (frozen)")),
        }
    }
}

/// An [`InBatch`] objective trained with gradient caching in chunks of `chunk` rows (the module
/// documentation says how).
pub struct GradCache<O> {
    inner: O,
    chunk: usize,
    batch_norm: ChunkBatchNorm,
}

impl<O: InBatch> GradCache<O> {
    /// Wraps `inner`; `chunk` rows go through the encoder at a time (at least 1).
    pub fn new(inner: O, chunk: usize) -> Result<Self> {
        if chunk == 0 {
            return Err(crate::Error::config("grad_cache.chunk", "must be at least 1 row"));
        }
        Ok(Self { inner, chunk, batch_norm: ChunkBatchNorm::default() })
    }

    /// What BatchNorm layers normalise by ([`ChunkBatchNorm::Chunk`] unless set).
    pub fn with_batch_norm(mut self, batch_norm: ChunkBatchNorm) -> Self {
        self.batch_norm = batch_norm;
        self
    }

    /// What BatchNorm layers normalise by.
    pub fn batch_norm(&self) -> ChunkBatchNorm {
        self.batch_norm
    }

    /// The wrapped objective.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// The wrapped objective, unwrapped.
    pub fn into_inner(self) -> O {
        self.inner
    }

    /// Rows per chunk.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// `rows` in the fewest chunks of at most `chunk` rows, as even as can be (sizes differ by
    /// one at most: no tail of a single row, which BatchNorm could not normalise).
    fn chunks(&self, rows: usize) -> Vec<Range<usize>> {
        let count = rows.div_ceil(self.chunk).max(1);
        let (base, extra) = (rows / count, rows % count);
        let mut start = 0;
        (0..count)
            .map(|i| {
                let len = base + usize::from(i < extra);
                start += len;
                start - len..start
            })
            .collect()
    }

    /// The cached step: the full batch's loss value, with the accumulated gradients.
    fn cached_loss(&mut self, batch: &O::Batch) -> candle_core::Result<Tensor> {
        let wrap = candle_core::Error::wrap;
        let rows = self.inner.rows(batch).map_err(wrap)?;
        let chunks = self.chunks(rows);
        // Where the forward pass's randomness starts: every chunk starts there, in both passes.
        let start = self.inner.forward_state().map_err(wrap)?;
        let trainable_names: Vec<String> = self.inner.params().trainable().into_iter().map(|(n, _)| n).collect();
        let buffers: Vec<(Var, Tensor)> = self
            .inner
            .params()
            .all()
            .into_iter()
            .filter(|(n, _)| !trainable_names.contains(n))
            .map(|(_, v)| {
                let copy = v.as_tensor().copy()?;
                Ok((v, copy))
            })
            .collect::<candle_core::Result<_>>()?;
        // 1. Every chunk's embeddings, without keeping its graph.
        let mut parts: Vec<Vec<Tensor>> = vec![];
        for range in &chunks {
            self.inner.load_forward_state(start.clone()).map_err(wrap)?;
            let e = self.inner.embed_rows_without_graph(batch, range.clone())?;
            if parts.is_empty() {
                parts = vec![Vec::with_capacity(chunks.len()); e.len()];
            }
            if e.len() != parts.len() {
                candle_core::bail!("grad cache: a chunk gave {} embeddings, the first {}", e.len(), parts.len());
            }
            for (role, t) in e.into_iter().enumerate() {
                parts[role].push(t);
            }
        }
        let end = self.inner.forward_state().map_err(wrap)?;
        // The first pass's updates of the buffers (BatchNorm's running statistics) are undone:
        // the second pass makes them, once per chunk.
        for (var, before) in &buffers {
            var.set(before)?;
        }
        // 2. The loss of all of them, and its gradient with respect to each embedding.
        let embeddings: Vec<Var> =
            parts.iter().map(|p| Var::from_tensor(&Tensor::cat(p, 0)?)).collect::<candle_core::Result<_>>()?;
        let held: Vec<Tensor> = embeddings.iter().map(|v| v.as_tensor().clone()).collect();
        let loss = self.inner.loss_of_embeddings(batch, &held)?;
        let grads = loss.backward()?;
        let trainable = self.inner.params().trainable();
        let mut total: Vec<Option<Tensor>> = trainable.iter().map(|(_, v)| grads.get(v.as_tensor()).cloned()).collect();
        let cached: Vec<Tensor> = embeddings
            .iter()
            .map(|v| match grads.get(v.as_tensor()) {
                Some(g) => Ok(g.clone()),
                None => v.as_tensor().zeros_like(),
            })
            .collect::<candle_core::Result<_>>()?;
        drop(grads);
        // 3. Each chunk again, with its graph, back-propagating its rows' cached gradient.
        for range in &chunks {
            self.inner.load_forward_state(start.clone()).map_err(wrap)?;
            let e = self.inner.embed_rows(batch, range.clone())?;
            let mut surrogate = Tensor::zeros((), loss.dtype(), loss.device())?;
            for (t, g) in e.iter().zip(&cached) {
                let g = g.narrow(0, range.start, range.len())?;
                surrogate = (surrogate + (t * g)?.sum_all()?.to_dtype(loss.dtype())?)?;
            }
            let chunk_grads = surrogate.backward()?;
            for ((_, v), sum) in trainable.iter().zip(total.iter_mut()) {
                if let Some(g) = chunk_grads.get(v.as_tensor()) {
                    *sum = Some(match sum.take() {
                        Some(s) => (s + g)?,
                        None => g.clone(),
                    });
                }
            }
        }
        self.inner.load_forward_state(end).map_err(wrap)?;
        // The value of the loss, with the gradient `total` for each variable: v * g - v' * g is
        // zero in value (the same products) and has gradient g with respect to v.
        let mut out = loss.detach();
        for ((_, v), g) in trainable.iter().zip(&total) {
            let Some(g) = g else { continue };
            let g = g.detach();
            let linear = ((v.as_tensor() * &g)?.sum_all()? - (v.as_tensor().detach() * &g)?.sum_all()?)?;
            out = (out + linear.to_dtype(loss.dtype())?)?;
        }
        Ok(out)
    }
}

impl<O: InBatch> Objective for GradCache<O> {
    type Batch = O::Batch;

    /// The full batch's loss, as a tensor whose backward pass gives every trainable variable its
    /// gradient accumulated over the chunks.
    fn loss(&mut self, batch: &Self::Batch) -> candle_core::Result<Tensor> {
        match self.batch_norm {
            ChunkBatchNorm::Chunk => self.cached_loss(batch),
            ChunkBatchNorm::Running => crate::nn::with_running_statistics(|| self.cached_loss(batch)),
        }
    }

    fn params(&self) -> &ParamStore {
        self.inner.params()
    }

    fn before_step(&mut self, progress: &Progress) -> candle_core::Result<()> {
        self.inner.before_step(progress)
    }

    fn after_step(&mut self, progress: &Progress) -> candle_core::Result<()> {
        self.inner.after_step(progress)
    }

    fn step_figures(&self) -> candle_core::Result<Vec<(&'static str, f64)>> {
        self.inner.step_figures()
    }

    fn extra_state(&self) -> Result<ExtraState> {
        self.inner.extra_state()
    }

    fn load_extra_state(&mut self, state: ExtraState) -> Result<()> {
        self.inner.load_extra_state(state)
    }

    /// The wrapped objective's: caching changes how the gradient is computed, not what it is.
    fn config(&self) -> serde_json::Value {
        self.inner.config()
    }
}
