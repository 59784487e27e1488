//! Several processes training one model: the operations data parallelism needs (rank, world
//! size, all-reduce, all-gather, broadcast, barrier), one process's trivial [`Local`] and, with the
//! feature `mpi`, [`Mpi`] over the system's MPI library. The [`Trainer`](crate::train::Trainer)
//! averages gradients through one; [`gather_rows`] gives a loss the global batch's embeddings
//! while each process back-propagates into its own.

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;

use crate::error::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use std::sync::{Arc, RwLock};

/// The processes of one training run and the collective operations between them. Every process
/// calls the same operations in the same order (as with MPI); values are `f32`, the dtype of the
/// parameters and gradients. `Send + Sync` so that an op's backward can hold one; MPI's is used
/// from the thread that opened it, and says so when it is not.
pub trait Collective: Send + Sync {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn world_size(&self) -> usize;
    /// Replaces `values` by their element-wise sum over every process (same length everywhere).
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()>;
    /// Every process's `local` values, in rank order (lengths may differ between processes).
    fn all_gather(&self, local: &[f32]) -> Result<Vec<Vec<f32>>>;
    /// Replaces `values` everywhere by those of process `root` (same length everywhere).
    fn broadcast(&self, values: &mut [f32], root: usize) -> Result<()>;
    /// Waits until every process has reached it.
    fn barrier(&self) -> Result<()>;
    /// Ends every process of the run with `code`: what a process that failed calls, so that the
    /// others, waiting in a collective operation for it, stop instead of hanging.
    fn abort(&self, code: i32) -> !;
}

/// One process alone: rank 0 of 1, every operation the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _values: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_gather(&self, local: &[f32]) -> Result<Vec<Vec<f32>>> {
        Ok(vec![local.to_vec()])
    }
    fn broadcast(&self, _values: &mut [f32], root: usize) -> Result<()> {
        match root {
            0 => Ok(()),
            _ => Err(Error::config("collective.root", format!("rank {root} of a world of 1"))),
        }
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Every process's rows of `local` (shape `(n_r, ...)`, the same trailing dimensions
/// everywhere), concatenated in rank order: the global batch, on `local`'s device. The gradient
/// that reaches `local` is its own rows' gradient times the world size, which is exact when every
/// process computes the same loss over the gathered rows (each then holds the gradient of that
/// loss for its own rows only) and the trainer averages the gradients over the processes: the
/// average of `world_size x` each process's share is their sum. With one process it returns
/// `local` itself.
pub fn gather_rows(local: &Tensor, collective: &dyn Collective) -> Result<Tensor> {
    let world = collective.world_size();
    if world == 1 {
        return Ok(local.clone());
    }
    if local.dtype() != DType::F32 || local.rank() == 0 {
        return Err(Error::shape("gather_rows input", "f32 (rows, ...)", local.dims()));
    }
    let (_, rest) = local.dims().split_first().expect("rank checked above");
    let row_len: usize = rest.iter().product();
    let parts = collective.all_gather(&local.detach().flatten_all()?.to_vec1::<f32>()?)?;
    // Value `local`, gradient `world x`: local + (world - 1) (local - local), the second term zero.
    let own = (local + ((local - local.detach())? * (world - 1) as f64)?)?;
    let mut pieces = Vec::with_capacity(world);
    for (rank, part) in parts.into_iter().enumerate() {
        if rank == collective.rank() {
            pieces.push(own.clone());
            continue;
        }
        if row_len == 0 || part.len() % row_len != 0 {
            return Err(Error::shape(
                format!("gather_rows: the rows of rank {rank}"),
                format!("(n, {rest:?})"),
                &[part.len()],
            ));
        }
        let mut shape = vec![part.len() / row_len];
        shape.extend_from_slice(rest);
        pieces.push(Tensor::from_vec(part, shape, local.device())?);
    }
    Ok(Tensor::cat(&pieces, 0)?)
}

/// Every process's `labels` (a (n_r,) u32 or i64 tensor of class ids, each below 2^24 in
/// magnitude), concatenated in rank order, in `labels`' dtype and device: the labels of the rows
/// [`gather_rows`] gathers, for a supervised loss over the global batch (SupCon). With one
/// process it returns `labels` itself.
pub fn gather_labels(labels: &Tensor, collective: &dyn Collective) -> Result<Tensor> {
    if collective.world_size() == 1 {
        return Ok(labels.clone());
    }
    if labels.rank() != 1 || !matches!(labels.dtype(), DType::U32 | DType::I64) {
        return Err(Error::shape("gather_labels input", "(n,) u32 or i64", labels.dims()));
    }
    let values = labels.to_dtype(DType::I64)?.to_vec1::<i64>()?;
    // f32 holds every integer below 2^24 exactly.
    if let Some(&bad) = values.iter().find(|v| v.unsigned_abs() >= 1 << 24) {
        return Err(Error::config("gather_labels", format!("label {bad} is too large to gather (at most 2^24 - 1)")));
    }
    let local: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let all: Vec<i64> = collective.all_gather(&local)?.into_iter().flatten().map(|v| v as i64).collect();
    let n = all.len();
    Ok(Tensor::from_vec(all, n, labels.device())?.to_dtype(labels.dtype())?)
}

/// Where one process's rows sit in the global batch of a data-parallel step: rows
/// `first..first + rows` of `total`, the processes' batches in rank order (as [`gather_rows`]
/// concatenates them). What randomness keyed by the sample needs: a process draws exactly the
/// numbers a single process with the whole global batch would draw for those rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalRows {
    /// The global index of this process's first row.
    pub first: usize,
    /// This process's rows.
    pub rows: usize,
    /// The rows of the global batch.
    pub total: usize,
}

impl GlobalRows {
    /// A single process's batch of `rows`: all of the global batch.
    pub fn whole(rows: usize) -> Self {
        Self { first: 0, rows, total: rows }
    }

    /// This process's place, given every process's row count in rank order.
    pub fn from_counts(counts: &[usize], rank: usize) -> Result<Self> {
        let rows =
            *counts.get(rank).ok_or_else(|| Error::index("GlobalRows: the rank's row count", rank, counts.len()))?;
        Ok(Self { first: counts[..rank].iter().sum(), rows, total: counts.iter().sum() })
    }

    /// This process's place in the global batch (one all-gather of the row counts).
    pub fn of(rows: usize, collective: &dyn Collective) -> Result<Self> {
        if collective.world_size() == 1 {
            return Ok(Self::whole(rows));
        }
        let counts: Vec<usize> =
            collective.all_gather(&[rows as f32])?.iter().map(|c| c.first().copied().unwrap_or(0.0) as usize).collect();
        Self::from_counts(&counts, collective.rank())
    }
}

/// `t` summed over every process (same shape everywhere), as an op whose gradient is also summed
/// over the processes: what SyncBatchNorm's statistics need, so that each process's input
/// receives the gradient of every process's outputs. f32; computed on the CPU (a tensor on
/// another device goes there and back). With one process it returns `t` itself.
pub fn all_reduce_with_grad(t: &Tensor, collective: &Arc<dyn Collective>) -> Result<Tensor> {
    if collective.world_size() == 1 {
        return Ok(t.clone());
    }
    if t.dtype() != DType::F32 {
        return Err(Error::shape("all_reduce_with_grad input (f32)", format!("{:?}", t.dims()), t.dims()));
    }
    let op = AllReduceSum { collective: Arc::clone(collective) };
    Ok(match t.device() {
        Device::Cpu => t.contiguous()?.apply_op1(op)?,
        device => t.to_device(&Device::Cpu)?.contiguous()?.apply_op1(op)?.to_device(device)?,
    })
}

struct AllReduceSum {
    collective: Arc<dyn Collective>,
}

impl CustomOp1 for AllReduceSum {
    fn name(&self) -> &'static str {
        "all-reduce-sum"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(all) = storage else { candle_core::bail!("all-reduce-sum: f32 only") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("all-reduce-sum: not contiguous")
        };
        let mut values = all[start..end].to_vec();
        self.collective.all_reduce_sum(&mut values).map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(values), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let op = AllReduceSum { collective: Arc::clone(&self.collective) };
        Ok(Some(grad_res.contiguous()?.apply_op1(op)?))
    }
}

/// The processes whose batches BatchNorm layers normalise together, when set.
static SYNC_BATCH_NORM: RwLock<Option<Arc<dyn Collective>>> = RwLock::new(None);

/// Makes every BatchNorm layer of this process (core's and `contrastive-vision`'s) compute its
/// training statistics over the global batch of `collective`'s processes (SyncBatchNorm, as
/// SimCLR trains), or over each process's own batch again with `None`. A data-parallel run sets it
/// on every process before training.
pub fn set_sync_batch_norm(collective: Option<Arc<dyn Collective>>) {
    *SYNC_BATCH_NORM.write().unwrap_or_else(|e| e.into_inner()) = collective;
}

/// The processes BatchNorm layers synchronise over, if [`set_sync_batch_norm`] set them and
/// there are several.
pub fn sync_batch_norm() -> Option<Arc<dyn Collective>> {
    SYNC_BATCH_NORM.read().unwrap_or_else(|e| e.into_inner()).clone().filter(|c| c.world_size() > 1)
}
