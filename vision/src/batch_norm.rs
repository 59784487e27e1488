//! Batch normalisation over (N, C) or (N, C, H, W) with a fused forward and backward on the CPU.
//!
//! candle-nn's BatchNorm trains correctly but as a dozen tensor ops, each a pass over the
//! activations; in a ConvNet on the CPU that costs as much as the convolutions. Here training mode
//! is one custom op: a pass for the statistics and one to normalise, and in backward one pass for
//! the two sums and one for the input gradient. Off the CPU, candle-nn's composite form runs.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, Var, WithDType};
use candle_nn::{Init, ModuleT, VarBuilder};
use contrastive_core::kernel::{contiguous_slice, with_cpu_slice, KernelFloat};
use contrastive_core::with_kernel_float;
use num_traits::Float;
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Batch normalisation with PyTorch's semantics: biased batch variance to normalise, unbiased
/// variance into the running estimate, `running = (1 - momentum) · running + momentum · batch`.
/// Variables `weight`, `bias`, `running_mean`, `running_var` (torchvision's names).
#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    running_mean: Var,
    running_var: Var,
    pub(crate) eps: f64,
    momentum: f64,
}

/// A BatchNorm of `channels` under `vb`, eps 1e-5, momentum 0.1 (PyTorch's defaults).
pub fn batch_norm(channels: usize, vb: VarBuilder) -> Result<BatchNorm> {
    let running_mean = Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?)?;
    let running_var = Var::from_tensor(&vb.get_with_hints(channels, "running_var", Init::Const(1.0))?)?;
    Ok(BatchNorm {
        weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
        bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
        running_mean,
        running_var,
        eps: 1e-5,
        momentum: 0.1,
    })
}

impl BatchNorm {
    /// The running mean (C,).
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running variance (C,).
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    fn check(&self, x: &Tensor) -> Result<usize> {
        let c = self.weight.dim(0)?;
        if !matches!(x.rank(), 2 | 4) || x.dim(1)? != c {
            bail!("BatchNorm of {c} channels: expects (N, {c}) or (N, {c}, H, W), got {:?}", x.dims());
        }
        Ok(c)
    }

    fn channel_view(&self, t: &Tensor, rank: usize) -> Result<Tensor> {
        if rank == 4 {
            t.reshape((1, (), 1, 1))
        } else {
            t.reshape((1, ()))
        }
    }

    /// `relu(batch_norm(x))`, one fused op in training on the CPU (its backward masks the gradient
    /// by the output's sign instead of running ReLU's backward as separate passes).
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(x, true)
        } else {
            self.forward_eval(x)?.relu()
        }
    }

    fn forward_train(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let c = self.check(x)?;
        let count = x.elem_count() / c;
        if count < 2 {
            bail!("BatchNorm in training needs more than one value per channel, got input {:?}", x.dims());
        }
        // SyncBatchNorm (statistics over every process) takes the composite path, whose two
        // all-reduces carry the gradient between the processes.
        let sync = contrastive_core::collective::sync_batch_norm();
        let fused = contrastive_core::kernel::runs_kernel(x) && self.weight.dtype() == x.dtype() && sync.is_none();
        let (y, mean, var, count) = if fused {
            let stats = Arc::new(Mutex::new(None));
            let op = BatchNormOp { eps: self.eps, relu, stats: Arc::clone(&stats) };
            let y = x.contiguous()?.apply_op3(&self.weight.contiguous()?, &self.bias.contiguous()?, op)?;
            let kept = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let Some((mean, var)) = kept else { bail!("BatchNorm: the fused op left no statistics") };
            (y, mean, var, count)
        } else {
            let (mean, var, count) = contrastive_core::nn::batch_statistics(x, c, sync.as_ref())?;
            let y = x
                .broadcast_sub(&mean)?
                .broadcast_div(&(&var + self.eps)?.sqrt()?)?
                .broadcast_mul(&self.channel_view(&self.weight, x.rank())?)?
                .broadcast_add(&self.channel_view(&self.bias, x.rank())?)?;
            let to_vec = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>();
            let y = if relu { y.relu()? } else { y };
            (y, to_vec(&mean)?, to_vec(&var)?, count)
        };
        self.update_running(&mean, &var, count)?;
        Ok(y)
    }

    pub(crate) fn update_running(&self, mean: &[f64], var: &[f64], count: usize) -> Result<()> {
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

    pub(crate) fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        let scale = (&self.weight / (self.running_var.as_tensor() + self.eps)?.sqrt()?)?;
        let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
        x.broadcast_mul(&self.channel_view(&scale, x.rank())?)?.broadcast_add(&self.channel_view(&shift, x.rank())?)
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

/// The training-mode op; it keeps the batch mean and biased variance per channel of its forward.
struct BatchNormOp {
    eps: f64,
    /// ReLU fused after the affine step.
    relu: bool,
    stats: SharedStats,
}

/// The batch mean and biased variance per channel of the op's forward pass, shared with the
/// module (which updates the running statistics from them).
type SharedStats = Arc<Mutex<Option<(Vec<f64>, Vec<f64>)>>>;

/// (N, C, S): S = H·W, or 1 for (N, C) input.
fn layout_dims(l: &Layout) -> (usize, usize, usize) {
    let d = l.dims();
    (d[0], d[1], d[2..].iter().product())
}

/// Σ f(i) and Σ g(i) over i < n, in eight lanes of T (so the loop vectorises), returned in f64.
#[inline(always)]
fn lane_sums<T: KernelFloat>(n: usize, f: impl Fn(usize) -> (T, T)) -> (f64, f64) {
    let (mut a, mut b) = ([T::zero(); 8], [T::zero(); 8]);
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        for l in 0..8 {
            let (u, v) = f(i + l);
            a[l] += u;
            b[l] += v;
        }
    }
    let mut sa: f64 = a.iter().map(|&v| WithDType::to_f64(v)).sum();
    let mut sb: f64 = b.iter().map(|&v| WithDType::to_f64(v)).sum();
    for i in full..n {
        let (u, v) = f(i);
        sa += WithDType::to_f64(u);
        sb += WithDType::to_f64(v);
    }
    (sa, sb)
}

/// Rows per task of the (N, C) path: the per-channel sums run over blocks of this many rows, in
/// a fixed order, so the result does not depend on the thread count.
const ROWS: usize = 256;

/// Per channel Σ f(p, q, m) and Σ g(p, q, m) over the rows of two (N, C) buffers `p` and `q`
/// with a per-channel value `m`: each block of [`ROWS`] rows summed in T along the channels
/// (contiguous, so it vectorises), the blocks in f64.
fn row_sums<T: KernelFloat>(p: &[T], q: &[T], m: &[T], f: impl Fn(T, T, T) -> (T, T) + Sync) -> (Vec<f64>, Vec<f64>) {
    let c = m.len();
    let blocks: Vec<(Vec<T>, Vec<T>)> = p
        .par_chunks(c * ROWS)
        .zip(q.par_chunks(c * ROWS))
        .map(|(pb, qb)| {
            let (mut a, mut b) = (vec![T::zero(); c], vec![T::zero(); c]);
            for (pr, qr) in pb.chunks_exact(c).zip(qb.chunks_exact(c)) {
                for ((a, b), ((&pv, &qv), &mv)) in a.iter_mut().zip(b.iter_mut()).zip(pr.iter().zip(qr).zip(m)) {
                    let (u, v) = f(pv, qv, mv);
                    *a += u;
                    *b += v;
                }
            }
            (a, b)
        })
        .collect();
    let (mut sa, mut sb) = (vec![0.0; c], vec![0.0; c]);
    for (a, b) in blocks {
        for ch in 0..c {
            sa[ch] += WithDType::to_f64(a[ch]);
            sb[ch] += WithDType::to_f64(b[ch]);
        }
    }
    (sa, sb)
}

/// Per channel: mean and biased variance, in one pass of shifted sums (the shift, the channel's
/// first value, keeps the variance free of cancellation), each plane (or block of rows) summed in
/// T and the planes in f64.
fn channel_moments<T: KernelFloat>(x: &[T], (n, c, s): (usize, usize, usize)) -> (Vec<f64>, Vec<f64>) {
    let count = (n * s) as f64;
    let finish = |shift: T, sum: f64, sq: f64| {
        let m = sum / count;
        (WithDType::to_f64(shift) + m, (sq / count - m * m).max(0.0))
    };
    if s == 1 {
        let (sum, sq) = row_sums(x, x, &x[..c], |v, _, shift| {
            let d = v - shift;
            (d, d * d)
        });
        return (0..c).map(|ch| finish(x[ch], sum[ch], sq[ch])).unzip();
    }
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let shift = x[ch * s];
            let (mut sum, mut sq) = (0.0, 0.0);
            for i in 0..n {
                let plane = &x[(i * c + ch) * s..][..s];
                let (a, b) = lane_sums(s, |j| {
                    let d = plane[j] - shift;
                    (d, d * d)
                });
                sum += a;
                sq += b;
            }
            finish(shift, sum, sq)
        })
        .unzip()
}

/// Per channel: (rstd, the shift that makes y = x·a + b).
fn affine<T: KernelFloat>(mean: &[f64], var: &[f64], w: &[T], b: &[T], eps: f64) -> (Vec<T>, Vec<T>) {
    mean.iter()
        .zip(var)
        .zip(w.iter().zip(b))
        .map(|((&m, &v), (&g, &beta))| {
            let a = WithDType::to_f64(g) / (v + eps).sqrt();
            let shift = WithDType::to_f64(beta) - m * a;
            (<T as WithDType>::from_f64(a), <T as WithDType>::from_f64(shift))
        })
        .unzip()
}

/// y = x·a + b, then ReLU if `relu`, over a run of values with their (a, b).
#[inline(always)]
fn affine_run<T: Float>(y: &mut [T], x: &[T], coefs: impl Iterator<Item = (T, T)>, relu: bool) {
    let out = y.iter_mut().zip(x).zip(coefs);
    if relu {
        out.for_each(|((o, &v), (a, b))| *o = Float::max(v * a + b, T::zero()));
    } else {
        out.for_each(|((o, &v), (a, b))| *o = v * a + b);
    }
}

pub(crate) fn forward<T: KernelFloat>(
    x: &[T],
    w: &[T],
    b: &[T],
    dims: (usize, usize, usize),
    eps: f64,
    relu: bool,
) -> (Vec<T>, Vec<f64>, Vec<f64>) {
    let (_, c, s) = dims;
    let (mean, var) = channel_moments(x, dims);
    let (scale, shift) = affine(&mean, &var, w, b, eps);
    let mut y = vec![T::zero(); x.len()];
    if s == 1 {
        y.par_chunks_mut(c * ROWS).zip(x.par_chunks(c * ROWS)).for_each(|(yb, xb)| {
            for (yr, xr) in yb.chunks_mut(c).zip(xb.chunks(c)) {
                affine_run(yr, xr, scale.iter().copied().zip(shift.iter().copied()), relu);
            }
        });
        return (y, mean, var);
    }
    y.par_chunks_mut(c * s).zip(x.par_chunks(c * s)).for_each(|(yi, xi)| {
        for ch in 0..c {
            affine_run(&mut yi[ch * s..][..s], &xi[ch * s..][..s], std::iter::repeat((scale[ch], shift[ch])), relu);
        }
    });
    (y, mean, var)
}

/// `dy` where the fused op's output is positive, 0 elsewhere (ReLU's backward), in one pass.
pub(crate) fn relu_masked<T: KernelFloat>(dy: &[T], out: &[T]) -> Vec<T> {
    let mut g = vec![T::zero(); dy.len()];
    g.par_chunks_mut(1 << 14).zip(dy.par_chunks(1 << 14)).zip(out.par_chunks(1 << 14)).for_each(|((g, d), o)| {
        for ((g, &d), &o) in g.iter_mut().zip(d).zip(o) {
            *g = if o > T::zero() { d } else { T::zero() };
        }
    });
    g
}

/// (dx, dγ, dβ) from x, γ and the output gradient `dy`, with the batch statistics of the forward
/// pass.
pub(crate) fn backward<T: KernelFloat>(
    x: &[T],
    w: &[T],
    dy: &[T],
    (n, c, s): (usize, usize, usize),
    mean: &[f64],
    var: &[f64],
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let count = (n * s) as f64;
    let rstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    // Σ g and Σ g·(x - mean) per channel.
    let (sum_dy, sum_dy_xc): (Vec<f64>, Vec<f64>) = if s == 1 {
        let m: Vec<T> = mean.iter().map(|&v| <T as WithDType>::from_f64(v)).collect();
        row_sums(dy, x, &m, |g, v, m| (g, g * (v - m)))
    } else {
        (0..c)
            .into_par_iter()
            .map(|ch| {
                let m = <T as WithDType>::from_f64(mean[ch]);
                let (mut sd, mut sdx) = (0.0, 0.0);
                for i in 0..n {
                    let off = (i * c + ch) * s;
                    let (gp, xp) = (&dy[off..off + s], &x[off..off + s]);
                    let (a, b) = lane_sums(s, |j| (gp[j], gp[j] * (xp[j] - m)));
                    sd += a;
                    sdx += b;
                }
                (sd, sdx)
            })
            .unzip()
    };
    let sum_dy_xhat: Vec<f64> = sum_dy_xc.iter().zip(&rstd).map(|(v, r)| v * r).collect();
    // dx = γ·rstd · (g - Σg/M - x̂ · Σg·x̂/M), written as dx = k1·g + k2·x + k3 per channel.
    let coef: Vec<(T, T, T)> = (0..c)
        .map(|ch| {
            let k1 = WithDType::to_f64(w[ch]) * rstd[ch];
            let k2 = -k1 * rstd[ch] * sum_dy_xhat[ch] / count;
            let k3 = -k1 * sum_dy[ch] / count - k2 * mean[ch];
            let t = |v: f64| <T as WithDType>::from_f64(v);
            (t(k1), t(k2), t(k3))
        })
        .collect();
    let mut dx = vec![T::zero(); x.len()];
    if s == 1 {
        let k1: Vec<T> = coef.iter().map(|k| k.0).collect();
        let k2: Vec<T> = coef.iter().map(|k| k.1).collect();
        let k3: Vec<T> = coef.iter().map(|k| k.2).collect();
        dx.par_chunks_mut(c * ROWS).zip(x.par_chunks(c * ROWS)).zip(dy.par_chunks(c * ROWS)).for_each(
            |((dxb, xb), dyb)| {
                for ((dxr, xr), dyr) in dxb.chunks_mut(c).zip(xb.chunks(c)).zip(dyb.chunks(c)) {
                    let coefs = k1.iter().zip(&k2).zip(&k3);
                    for (((o, &v), &g), ((&k1, &k2), &k3)) in dxr.iter_mut().zip(xr).zip(dyr).zip(coefs) {
                        *o = k1 * g + k2 * v + k3;
                    }
                }
            },
        );
        let t = |v: &f64| <T as WithDType>::from_f64(*v);
        return (dx, sum_dy_xhat.iter().map(t).collect(), sum_dy.iter().map(t).collect());
    }
    dx.par_chunks_mut(c * s).zip(x.par_chunks(c * s)).zip(dy.par_chunks(c * s)).for_each(|((dxi, xi), dyi)| {
        for (ch, &(k1, k2, k3)) in coef.iter().enumerate() {
            let r = ch * s..(ch + 1) * s;
            for ((o, &v), &g) in dxi[r.clone()].iter_mut().zip(&xi[r.clone()]).zip(&dyi[r]) {
                *o = k1 * g + k2 * v + k3;
            }
        }
    });
    let t = |v: &f64| <T as WithDType>::from_f64(*v);
    (dx, sum_dy_xhat.iter().map(t).collect(), sum_dy.iter().map(t).collect())
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = layout_dims(l1);
        let (y, mean, var) = with_kernel_float!(s1.dtype(), "BatchNorm", |T| {
            let (y, m, v) = forward::<T>(
                contiguous_slice(s1, l1, "BatchNorm")?,
                contiguous_slice(s2, l2, "BatchNorm")?,
                contiguous_slice(s3, l3, "BatchNorm")?,
                dims,
                self.eps,
                self.relu,
            );
            (<T as candle_core::WithDType>::to_cpu_storage_owned(y), m, v)
        });
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = Some((mean, var));
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        // Through the fused ReLU: the gradient passes where the output is positive.
        let out = if self.relu { Some(res.contiguous()?) } else { None };
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (dx, dw, db) =
            with_kernel_float!(x.dtype(), "BatchNorm", |T| gradients::<T>(x, w, &grad, out.as_ref(), stats, self.eps)?);
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

fn gradients<T: KernelFloat>(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    relu_out: Option<&Tensor>,
    stats: Option<(Vec<f64>, Vec<f64>)>,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dims = layout_dims(x.layout());
    let (dx, dw, db) = with_cpu_slice(x, "BatchNorm", |xs: &[T]| {
        with_cpu_slice(w, "BatchNorm", |ws: &[T]| {
            with_cpu_slice(grad, "BatchNorm", |gs: &[T]| {
                let (mean, var) = stats.unwrap_or_else(|| channel_moments(xs, dims));
                match relu_out {
                    Some(out) => with_cpu_slice(out, "BatchNorm", |os: &[T]| {
                        backward(xs, ws, &relu_masked(gs, os), dims, &mean, &var, eps)
                    }),
                    None => Ok(backward(xs, ws, gs, dims, &mean, &var, eps)),
                }
            })
        })
    })????;
    let c = dims.1;
    Ok((
        Tensor::from_vec(dx, x.dims(), x.device())?,
        Tensor::from_vec(dw, c, w.device())?,
        Tensor::from_vec(db, c, w.device())?,
    ))
}
