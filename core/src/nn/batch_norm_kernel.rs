//! The fused CPU kernel of training-mode BatchNorm over (N, C) or (N, C, H, W): a pass for the
//! statistics and one to normalise (ReLU fused when asked), and in backward one pass for the two
//! sums and one for the input gradient, where candle's tensor ops take a dozen passes over the
//! activations. [`BatchNorm`](super::BatchNorm) runs it on the CPU; [`forward`], [`backward`]
//! and [`relu_masked`] serve ops that embed a BatchNorm (`contrastive-vision`'s `ConvBn`).

use super::batch_norm_moments::{all_reduce_f64, channel_moments, channel_sums, ROWS};
pub use super::batch_norm_moments::{Moments, PartialMoments};
use crate::collective::Collective;
use crate::kernel::{contiguous_slice, with_cpu_slice, written_vec, KernelFloat};
use crate::with_kernel_float;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

/// The training-mode op; it keeps the batch mean and biased variance per channel of its forward.
pub(crate) struct BatchNormOp {
    pub(crate) eps: f64,
    /// ReLU fused after the affine step.
    pub(crate) relu: bool,
    pub(crate) stats: SharedStats,
    /// The processes whose batches it normalises together (SyncBatchNorm), if any.
    pub(crate) sync: Option<Arc<dyn Collective>>,
}

/// The batch mean and biased variance per channel of the op's forward pass and the values per
/// channel they span, shared with the module (which updates the running statistics from them).
pub(crate) type SharedStats = Arc<Mutex<Option<Moments>>>;

/// (N, C, S): S = H·W, or 1 for (N, C) input.
fn layout_dims(l: &Layout) -> (usize, usize, usize) {
    let d = l.dims();
    (d[0], d[1], d[2..].iter().product())
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

/// y = x·a + b, then ReLU if `relu`, over a run of values with their (a, b); writes every `y`.
#[inline(always)]
fn affine_run<T: Float>(y: &mut [MaybeUninit<T>], x: &[T], coefs: impl Iterator<Item = (T, T)>, relu: bool) {
    let out = y.iter_mut().zip(x).zip(coefs);
    if relu {
        out.for_each(|((o, &v), (a, b))| {
            o.write(Float::max(v * a + b, T::zero()));
        });
    } else {
        out.for_each(|((o, &v), (a, b))| {
            o.write(v * a + b);
        });
    }
}

/// Training-mode BatchNorm of a contiguous (N, C, S) buffer (`dims`; S = H·W, or 1 for (N, C))
/// with scale `w` and shift `b`, ReLU after when `relu`: the output and the batch statistics
/// (over every process of `sync`).
pub fn forward<T: KernelFloat>(
    x: &[T],
    w: &[T],
    b: &[T],
    dims: (usize, usize, usize),
    eps: f64,
    relu: bool,
    sync: Option<&dyn Collective>,
) -> Result<(Vec<T>, Moments)> {
    let moments = channel_moments(x, dims, sync)?;
    let y = normalize(x, w, b, dims, &moments, eps, relu);
    Ok((y, moments))
}

/// The normalising pass of [`forward`] on statistics already gathered: x·γ/√(var + eps) + the
/// shift, then ReLU if `relu`.
pub fn normalize<T: KernelFloat>(
    x: &[T],
    w: &[T],
    b: &[T],
    (_, c, s): (usize, usize, usize),
    moments: &Moments,
    eps: f64,
    relu: bool,
) -> Vec<T> {
    let (scale, shift) = affine(&moments.mean, &moments.var, w, b, eps);
    let fill = |y: &mut [MaybeUninit<T>]| {
        if s == 1 {
            y.par_chunks_mut(c * ROWS).zip(x.par_chunks(c * ROWS)).for_each(|(yb, xb)| {
                for (yr, xr) in yb.chunks_mut(c).zip(xb.chunks(c)) {
                    affine_run(yr, xr, scale.iter().copied().zip(shift.iter().copied()), relu);
                }
            });
            return;
        }
        y.par_chunks_mut(c * s).zip(x.par_chunks(c * s)).for_each(|(yi, xi)| {
            for ch in 0..c {
                let run = std::iter::repeat((scale[ch], shift[ch]));
                affine_run(&mut yi[ch * s..][..s], &xi[ch * s..][..s], run, relu);
            }
        });
    };
    // SAFETY: `x` and `y` have one length, and the runs cover every value of every row or plane
    // (`x` holds whole rows of C or planes of C·S: its layout's shape).
    unsafe { written_vec(x.len(), fill) }
}

/// `dy` where a fused op's output is positive, 0 elsewhere (ReLU's backward), in one pass.
pub fn relu_masked<T: KernelFloat>(dy: &[T], out: &[T]) -> Vec<T> {
    let fill = |g: &mut [MaybeUninit<T>]| {
        g.par_chunks_mut(1 << 14).zip(dy.par_chunks(1 << 14)).zip(out.par_chunks(1 << 14)).for_each(|((g, d), o)| {
            for ((g, &d), &o) in g.iter_mut().zip(d).zip(o) {
                g.write(relu_gate(d, o));
            }
        });
    };
    // SAFETY: `g` is no longer than either input, so each of its chunks is written whole.
    unsafe { written_vec(dy.len().min(out.len()), fill) }
}

/// (dx, dγ, dβ) from x, γ and the output gradient `dy`, with the batch statistics of the forward
/// pass. After a fused ReLU, `relu_out` is the forward's output: the gradient passes where it is
/// positive, read on the fly by both passes. Under SyncBatchNorm (`sync`) the input gradient
/// takes the sums over every process (its outputs depend on every process's inputs through the
/// statistics), while dγ and dβ stay this process's share, which the trainer's average completes.
pub fn backward<T: KernelFloat>(
    x: &[T],
    w: &[T],
    (dy, relu_out): (&[T], Option<&[T]>),
    (n, c, s): (usize, usize, usize),
    moments: &Moments,
    eps: f64,
    sync: Option<&dyn Collective>,
) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
    let Moments { mean, var, count } = moments;
    let rstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    // Σ g and Σ g·(x - mean) per channel.
    let m: Vec<T> = mean.iter().map(|&v| <T as WithDType>::from_f64(v)).collect();
    let (local_dy, local_dy_xc) = match relu_out {
        Some(out) => channel_sums(dy, x, out, &m, (n, c, s), |g, v, o, m| {
            let g = relu_gate(g, o);
            (g, g * (v - m))
        }),
        None => channel_sums(dy, x, dy, &m, (n, c, s), |g, v, _, m| (g, g * (v - m))),
    };
    let (sum_dy, sum_dy_xc, count) = match sync {
        None => (local_dy.clone(), local_dy_xc.clone(), (n * s) as f64),
        Some(collective) => {
            let mut all = [local_dy.as_slice(), local_dy_xc.as_slice()].concat();
            all_reduce_f64(&mut all, collective)?;
            let sum_dy_xc = all.split_off(c);
            (all, sum_dy_xc, *count as f64)
        }
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
    let dx = match relu_out {
        Some(out) => input_gradient(x, dy, out, &coef, s, relu_gate),
        // Without the ReLU, `dy` stands in for the output (never read).
        None => input_gradient(x, dy, dy, &coef, s, |g, _| g),
    };
    Ok((dx, own_dw(&local_dy_xc, &rstd), own_db(&local_dy)))
}

/// dx = k1·gate(g, out) + k2·x + k3 per channel (k from `coef`), over (N, C, S) buffers.
fn input_gradient<T: KernelFloat>(
    x: &[T],
    dy: &[T],
    out: &[T],
    coef: &[(T, T, T)],
    s: usize,
    gate: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    let c = coef.len();
    assert!(dy.len() == x.len() && out.len() == x.len(), "BatchNorm backward: x, dy and the output differ in size");
    let fill = |dx: &mut [MaybeUninit<T>]| {
        if s == 1 {
            let k1: Vec<T> = coef.iter().map(|k| k.0).collect();
            let k2: Vec<T> = coef.iter().map(|k| k.1).collect();
            let k3: Vec<T> = coef.iter().map(|k| k.2).collect();
            let blocks = dx.par_chunks_mut(c * ROWS).zip(x.par_chunks(c * ROWS)).zip(dy.par_chunks(c * ROWS));
            blocks.zip(out.par_chunks(c * ROWS)).for_each(|(((dxb, xb), dyb), ob)| {
                let rows = dxb.chunks_mut(c).zip(xb.chunks(c)).zip(dyb.chunks(c)).zip(ob.chunks(c));
                for (((dxr, xr), dyr), or) in rows {
                    let values = xr.iter().zip(dyr).zip(or);
                    let coefs = k1.iter().zip(&k2).zip(&k3);
                    for ((o, ((&v, &g), &out)), ((&k1, &k2), &k3)) in dxr.iter_mut().zip(values).zip(coefs) {
                        o.write(k1 * gate(g, out) + k2 * v + k3);
                    }
                }
            });
            return;
        }
        let planes = dx.par_chunks_mut(c * s).zip(x.par_chunks(c * s)).zip(dy.par_chunks(c * s));
        planes.zip(out.par_chunks(c * s)).for_each(|(((dxi, xi), dyi), oi)| {
            for (ch, &(k1, k2, k3)) in coef.iter().enumerate() {
                let r = ch * s..(ch + 1) * s;
                let values = xi[r.clone()].iter().zip(&dyi[r.clone()]).zip(&oi[r.clone()]);
                for (o, ((&v, &g), &out)) in dxi[r].iter_mut().zip(values) {
                    o.write(k1 * gate(g, out) + k2 * v + k3);
                }
            }
        });
    };
    // SAFETY: dx, x, dy and the output have one length (asserted), and the runs cover every
    // value of every row of C or plane of C·S.
    unsafe { written_vec(x.len(), fill) }
}

/// ReLU's backward: the gradient `g` where the output `out` is positive, 0 elsewhere.
#[inline(always)]
fn relu_gate<T: KernelFloat>(g: T, out: T) -> T {
    if out > T::zero() {
        g
    } else {
        T::zero()
    }
}

/// dγ = Σ g·x̂ over this process's values.
fn own_dw<T: KernelFloat>(sum_dy_xc: &[f64], rstd: &[f64]) -> Vec<T> {
    sum_dy_xc.iter().zip(rstd).map(|(v, r)| <T as WithDType>::from_f64(v * r)).collect()
}

/// dβ = Σ g over this process's values.
fn own_db<T: KernelFloat>(sum_dy: &[f64]) -> Vec<T> {
    sum_dy.iter().map(|&v| <T as WithDType>::from_f64(v)).collect()
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
        let (y, moments) = with_kernel_float!(s1.dtype(), "BatchNorm", |T| {
            let (y, moments) = forward::<T>(
                contiguous_slice(s1, l1, "BatchNorm")?,
                contiguous_slice(s2, l2, "BatchNorm")?,
                contiguous_slice(s3, l3, "BatchNorm")?,
                dims,
                self.eps,
                self.relu,
                self.sync.as_deref(),
            )?;
            (<T as candle_core::WithDType>::to_cpu_storage_owned(y), moments)
        });
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = Some(moments);
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
        let sync = self.sync.as_deref();
        let (dx, dw, db) = with_kernel_float!(x.dtype(), "BatchNorm", |T| {
            gradients::<T>(x, w, &grad, out.as_ref(), stats, self.eps, sync)?
        });
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

fn gradients<T: KernelFloat>(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    relu_out: Option<&Tensor>,
    stats: Option<Moments>,
    eps: f64,
    sync: Option<&dyn Collective>,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dims = layout_dims(x.layout());
    let Some(moments) = stats else { bail!("BatchNorm: backward before the forward pass kept its statistics") };
    let (dx, dw, db) = with_cpu_slice(x, "BatchNorm", |xs: &[T]| {
        with_cpu_slice(w, "BatchNorm", |ws: &[T]| {
            with_cpu_slice(grad, "BatchNorm", |gs: &[T]| match relu_out {
                Some(out) => with_cpu_slice(out, "BatchNorm", |os: &[T]| {
                    backward(xs, ws, (gs, Some(os)), dims, &moments, eps, sync)
                }),
                None => Ok(backward(xs, ws, (gs, None), dims, &moments, eps, sync)),
            })
        })
    })?????;
    let c = dims.1;
    Ok((
        Tensor::from_vec(dx, x.dims(), x.device())?,
        Tensor::from_vec(dw, c, w.device())?,
        Tensor::from_vec(db, c, w.device())?,
    ))
}
