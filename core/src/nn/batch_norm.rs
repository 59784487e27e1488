//! BatchNorm with PyTorch's semantics, whose batch statistics span every process of a
//! data-parallel run when [`collective::set_sync_batch_norm`] says so (SyncBatchNorm). Training
//! on the CPU runs the fused kernel of [`batch_norm_kernel`](super::batch_norm_kernel); elsewhere,
//! and with frozen statistics, candle's tensor ops.

use super::batch_norm_kernel::{BatchNormOp, Moments};
use crate::collective::{self, Collective};
use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{Init, ModuleT, VarBuilder};
use std::cell::Cell;
use std::sync::{Arc, Mutex};

thread_local! {
    /// Inside [`with_running_statistics`].
    static RUNNING_IN_TRAINING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every BatchNorm on this thread (this one and `contrastive-vision`'s `ConvBn`)
/// normalising by its running statistics in training mode too, and leaving them as they are:
/// frozen BatchNorm, as when fine-tuning a pretrained backbone; γ and β still train. Each row's
/// output then depends on that row alone, so a batch computed in chunks
/// ([`GradCache`](crate::grad_cache::GradCache) with
/// [`ChunkBatchNorm::Running`](crate::grad_cache::ChunkBatchNorm::Running)) is the whole batch
/// exactly.
pub fn with_running_statistics<T>(f: impl FnOnce() -> T) -> T {
    let before = RUNNING_IN_TRAINING.with(|r| r.replace(true));
    let out = f();
    RUNNING_IN_TRAINING.with(|r| r.set(before));
    out
}

/// Whether this thread is inside [`with_running_statistics`]: training-mode BatchNorm then
/// normalises by the running statistics.
pub fn uses_running_statistics() -> bool {
    RUNNING_IN_TRAINING.with(Cell::get)
}

/// Batch normalisation: biased batch variance to normalise, unbiased variance into the running
/// estimate, `running = (1 - momentum) running + momentum batch`. Variables `weight`, `bias`,
/// `running_mean`, `running_var` (PyTorch's names).
#[derive(Clone, Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

/// A BatchNorm of `channels` under `vb`, eps 1e-5, momentum 0.1 (PyTorch's defaults).
pub fn batch_norm(channels: usize, vb: VarBuilder) -> Result<BatchNorm> {
    Ok(BatchNorm {
        weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
        bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
        running_mean: Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?)?,
        running_var: Var::from_tensor(&vb.get_with_hints(channels, "running_var", Init::Const(1.0))?)?,
        eps: 1e-5,
        momentum: 0.1,
    })
}

/// The reduced dimensions of a (N, C) or (N, C, H, W) input: all but the channels.
fn reduced_dims(x: &Tensor, channels: usize) -> Result<Vec<usize>> {
    match x.dims() {
        [_, c] if *c == channels => Ok(vec![0]),
        [_, c, _, _] if *c == channels => Ok(vec![0, 2, 3]),
        dims => candle_core::bail!(
            "BatchNorm of {channels} channels: expects (N, {channels}) or (N, {channels}, H, W), got {dims:?}"
        ),
    }
}

/// Training-mode statistics of `x` per channel: (mean, biased variance) with the channel
/// dimension kept (shape (1, C) or (1, C, 1, 1)), and the values per channel they span. With
/// `sync`, over every process's rows (two all-reduces whose gradients are all-reduced too, so
/// each process's input receives the gradient of every process's outputs), else over `x`.
pub fn batch_statistics(
    x: &Tensor,
    channels: usize,
    sync: Option<&Arc<dyn Collective>>,
) -> Result<(Tensor, Tensor, usize)> {
    let dims = reduced_dims(x, channels)?;
    let local = x.elem_count() / channels.max(1);
    let Some(c) = sync.filter(|c| c.world_size() > 1) else {
        let mean = x.mean_keepdim(dims.as_slice())?;
        let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(dims.as_slice())?;
        return Ok((mean, var, local));
    };
    let mut count = [local as f32];
    c.all_reduce_sum(&mut count).map_err(candle_core::Error::wrap)?;
    let count = count[0] as usize;
    if count < 2 {
        candle_core::bail!("BatchNorm in training needs more than one value per channel, got {count}");
    }
    let all = |t: Tensor| collective::all_reduce_with_grad(&t, c).map_err(candle_core::Error::wrap);
    let mean = (all(x.sum_keepdim(dims.as_slice())?)? / count as f64)?;
    let var = (all(x.broadcast_sub(&mean)?.sqr()?.sum_keepdim(dims.as_slice())?)? / count as f64)?;
    Ok((mean, var, count))
}

impl BatchNorm {
    /// The scale (C,).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The shift (C,).
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The variance's epsilon.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// The running mean (C,).
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running variance (C,).
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// Folds a batch's per-channel mean and biased variance over `count` values into the
    /// running estimates (the variance made unbiased, as PyTorch does).
    pub fn update_running(&self, mean: &[f64], var: &[f64], count: usize) -> Result<()> {
        let m = self.momentum;
        let unbiased = count as f64 / (count as f64 - 1.0);
        let dev = self.running_mean.device();
        let dtype = self.running_mean.dtype();
        let rm = self.running_mean.as_tensor().to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let rv = self.running_var.as_tensor().to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let rm: Vec<f64> = rm.iter().zip(mean).map(|(r, b)| (1.0 - m) * r + m * b).collect();
        let rv: Vec<f64> = rv.iter().zip(var).map(|(r, b)| (1.0 - m) * r + m * b * unbiased).collect();
        self.running_mean.set(&Tensor::from_vec(rm, mean.len(), dev)?.to_dtype(dtype)?)?;
        self.running_var.set(&Tensor::from_vec(rv, var.len(), dev)?.to_dtype(dtype)?)
    }

    fn channel_view(&self, t: &Tensor, rank: usize) -> Result<Tensor> {
        if rank == 4 {
            t.reshape((1, (), 1, 1))
        } else {
            t.reshape((1, ()))
        }
    }

    /// Normalised by the running statistics.
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        reduced_dims(x, self.weight.dim(0)?)?;
        let scale = (&self.weight / (self.running_var.as_tensor() + self.eps)?.sqrt()?)?;
        let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
        x.broadcast_mul(&self.channel_view(&scale, x.rank())?)?.broadcast_add(&self.channel_view(&shift, x.rank())?)
    }

    /// Normalised by the batch's statistics (every process's under SyncBatchNorm), which also
    /// update the running ones (by the running ones, left alone, inside
    /// [`with_running_statistics`]); `relu` applies ReLU after. One fused op on the CPU.
    pub fn forward_train(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        if uses_running_statistics() {
            let y = self.forward_eval(x)?;
            return if relu { y.relu() } else { Ok(y) };
        }
        reduced_dims(x, self.weight.dim(0)?)?;
        if crate::kernel::runs_kernel(x) && self.weight.dtype() == x.dtype() {
            return self.forward_fused(x, relu);
        }
        let sync = collective::sync_batch_norm();
        let (mean, var, count) = batch_statistics(x, self.weight.dim(0)?, sync.as_ref())?;
        if count < 2 {
            candle_core::bail!("BatchNorm in training needs more than one value per channel, got input {:?}", x.dims());
        }
        let y = x
            .broadcast_sub(&mean)?
            .broadcast_div(&(&var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.channel_view(&self.weight, x.rank())?)?
            .broadcast_add(&self.channel_view(&self.bias, x.rank())?)?;
        let to_vec = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>();
        self.update_running(&to_vec(&mean)?, &to_vec(&var)?, count)?;
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// `relu(batch_norm(x))`: in training one fused op on the CPU (its backward masks the
    /// gradient by the output's sign instead of running ReLU's backward as separate passes).
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(x, true)
        } else {
            self.forward_eval(x)?.relu()
        }
    }

    fn forward_fused(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        if x.elem_count() / self.weight.dim(0)?.max(1) < 2 {
            candle_core::bail!("BatchNorm in training needs more than one value per channel, got input {:?}", x.dims());
        }
        // SyncBatchNorm: the kernel's forward and backward all-reduce the per-channel sums.
        let stats = Arc::new(Mutex::new(None));
        let sync = collective::sync_batch_norm();
        let op = BatchNormOp { eps: self.eps, relu, stats: Arc::clone(&stats), sync };
        let y = x.contiguous()?.apply_op3(&self.weight.contiguous()?, &self.bias.contiguous()?, op)?;
        let kept = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(Moments { mean, var, count }) = kept else {
            candle_core::bail!("BatchNorm: the fused op left no statistics")
        };
        self.update_running(&mean, &var, count).map(|()| y)
    }
}

impl ModuleT for BatchNorm {
    /// Batch statistics (and a running-statistics update) when `train`, running statistics
    /// otherwise.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(x, false)
        } else {
            self.forward_eval(x)
        }
    }
}
