//! The fused CPU kernel of training-mode BatchNorm over (N, C) or (N, C, H, W): a pass for the
//! statistics and one to normalise (ReLU fused when asked), and in backward one pass for the two
//! sums and one for the input gradient, where candle's tensor ops take a dozen passes over the
//! activations. [`BatchNorm`](super::BatchNorm) runs it on the CPU; [`forward`], [`backward`]
//! and [`relu_masked`] serve ops that embed a BatchNorm (`contrastive-vision`'s `ConvBn`).

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

/// Per channel: mean, biased variance, and the number of values (over every process under
/// SyncBatchNorm).
#[derive(Clone, Debug)]
pub struct Moments {
    /// The mean per channel.
    pub mean: Vec<f64>,
    /// The biased variance per channel.
    pub var: Vec<f64>,
    /// The values per channel.
    pub count: usize,
}

/// Sums `values` over the processes in f64: each value travels as two f32s (its f32 rounding and
/// the rest), every process adds them up in rank order, so the sums keep about 48 bits and are
/// the same everywhere. The statistics need that: the input gradient subtracts a mean-sized
/// term from another, and f32 sums on the wire cost up to 1e-3 of it.
fn all_reduce_f64(values: &mut [f64], collective: &dyn Collective) -> Result<()> {
    let wire: Vec<f32> = values
        .iter()
        .flat_map(|&v| {
            let high = v as f32;
            [high, (v - f64::from(high)) as f32]
        })
        .collect();
    let parts = collective.all_gather(&wire).map_err(candle_core::Error::wrap)?;
    for (i, v) in values.iter_mut().enumerate() {
        *v = parts.iter().map(|p| f64::from(p[2 * i]) + f64::from(p[2 * i + 1])).sum();
    }
    Ok(())
}

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

/// Per channel the two sums of f(p, q, r, m) over the rows of three (N, C) buffers with a
/// per-channel value `m`: each block of [`ROWS`] rows summed in T along the channels
/// (contiguous, so it vectorises), the blocks in f64.
fn row_sums<T: KernelFloat>(
    p: &[T],
    q: &[T],
    r: &[T],
    m: &[T],
    f: impl Fn(T, T, T, T) -> (T, T) + Sync,
) -> (Vec<f64>, Vec<f64>) {
    let c = m.len();
    let blocks: Vec<(Vec<T>, Vec<T>)> = p
        .par_chunks(c * ROWS)
        .zip(q.par_chunks(c * ROWS))
        .zip(r.par_chunks(c * ROWS))
        .map(|((pb, qb), rb)| {
            let (mut a, mut b) = (vec![T::zero(); c], vec![T::zero(); c]);
            for ((pr, qr), rr) in pb.chunks_exact(c).zip(qb.chunks_exact(c)).zip(rb.chunks_exact(c)) {
                let values = pr.iter().zip(qr).zip(rr).zip(m);
                for ((a, b), (((&pv, &qv), &rv), &mv)) in a.iter_mut().zip(b.iter_mut()).zip(values) {
                    let (u, v) = f(pv, qv, rv, mv);
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

/// Per channel the two sums of f(p, q, r, m) over three (N, C, S) buffers with a per-channel
/// value `m`: each plane (or block of rows) summed in T, the planes in f64, in a fixed order.
fn channel_sums<T: KernelFloat>(
    p: &[T],
    q: &[T],
    r: &[T],
    m: &[T],
    (n, c, s): (usize, usize, usize),
    f: impl Fn(T, T, T, T) -> (T, T) + Sync,
) -> (Vec<f64>, Vec<f64>) {
    if s == 1 {
        return row_sums(p, q, r, m, f);
    }
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mv, mut a, mut b) = (m[ch], 0.0, 0.0);
            for i in 0..n {
                let at = (i * c + ch) * s;
                let (pp, qp, rp) = (&p[at..at + s], &q[at..at + s], &r[at..at + s]);
                let (u, v) = lane_sums(s, |j| f(pp[j], qp[j], rp[j], mv));
                a += u;
                b += v;
            }
            (a, b)
        })
        .unzip()
}

/// Per channel: mean and biased variance, from shifted sums (the shift keeps the variance free
/// of cancellation). One process: one pass, each channel shifted by its first value. Several
/// (SyncBatchNorm): the sums all-reduced, a first pass for the mean, a second about it.
fn channel_moments<T: KernelFloat>(
    x: &[T],
    (n, c, s): (usize, usize, usize),
    sync: Option<&dyn Collective>,
) -> Result<Moments> {
    let local = n * s;
    let moments = |shift: &[T], sum: &[f64], sq: &[f64], count: f64| -> (Vec<f64>, Vec<f64>) {
        (0..c)
            .map(|ch| {
                let m = sum[ch] / count;
                (WithDType::to_f64(shift[ch]) + m, (sq[ch] / count - m * m).max(0.0))
            })
            .unzip()
    };
    let centred = |v: T, _: T, _: T, shift: T| {
        let d = v - shift;
        (d, d * d)
    };
    let Some(collective) = sync else {
        let shift: Vec<T> = (0..c).map(|ch| if s == 1 { x[ch] } else { x[ch * s] }).collect();
        let (sum, sq) = channel_sums(x, x, x, &shift, (n, c, s), centred);
        let (mean, var) = moments(&shift, &sum, &sq, local as f64);
        return Ok(Moments { mean, var, count: local });
    };
    let (mut sum, _) = channel_sums(x, x, x, &vec![T::zero(); c], (n, c, s), |v, _, _, _| (v, T::zero()));
    sum.push(local as f64);
    all_reduce_f64(&mut sum, collective)?;
    let count = sum.pop().unwrap_or(0.0);
    if count < 2.0 {
        bail!("BatchNorm in training needs more than one value per channel, got {count} over the processes");
    }
    let shift: Vec<T> = sum.iter().map(|v| <T as WithDType>::from_f64(v / count)).collect();
    let (mut parts, sq) = channel_sums(x, x, x, &shift, (n, c, s), centred);
    parts.extend(sq);
    all_reduce_f64(&mut parts, collective)?;
    let (mean, var) = moments(&shift, &parts[..c], &parts[c..], count);
    Ok(Moments { mean, var, count: count as usize })
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

/// Per-channel count, mean and sum of squared deviations of some rows of an (N, C) buffer, for
/// statistics gathered block by block while a producer writes the blocks (`contrastive-vision`'s
/// ConvBn sums each block of its convolution's output while it is still in cache). Blocks merge
/// by Chan et al.'s pairwise update; merged in a fixed order, the result does not depend on the
/// thread count.
#[derive(Clone, Debug, PartialEq)]
pub struct PartialMoments {
    count: usize,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl PartialMoments {
    /// No rows of `c` channels.
    pub fn empty(c: usize) -> Self {
        Self { count: 0, mean: vec![0.0; c], m2: vec![0.0; c] }
    }

    /// The moments of `rows` (R x C, row-major): each channel shifted by its first row's value
    /// (free of cancellation), summed in T along the channels over 256 rows at a time, then
    /// in f64.
    pub fn of_rows<T: KernelFloat>(rows: &[T], c: usize) -> Self {
        let n = rows.len().checked_div(c).unwrap_or(0);
        if n == 0 {
            return Self::empty(c);
        }
        let shift = &rows[..c];
        let (mut sum, mut sq) = (vec![0.0f64; c], vec![0.0f64; c]);
        let (mut block_sum, mut block_sq) = (vec![T::zero(); c], vec![T::zero(); c]);
        for block in rows.chunks(c * ROWS) {
            block_sum.iter_mut().chain(block_sq.iter_mut()).for_each(|v| *v = T::zero());
            for row in block.chunks_exact(c) {
                for ((a, q), (&v, &m)) in block_sum.iter_mut().zip(block_sq.iter_mut()).zip(row.iter().zip(shift)) {
                    let d = v - m;
                    *a += d;
                    *q += d * d;
                }
            }
            for ch in 0..c {
                sum[ch] += WithDType::to_f64(block_sum[ch]);
                sq[ch] += WithDType::to_f64(block_sq[ch]);
            }
        }
        let count = n as f64;
        let mean = (0..c).map(|ch| WithDType::to_f64(shift[ch]) + sum[ch] / count).collect();
        let m2 = (0..c).map(|ch| (sq[ch] - sum[ch] * sum[ch] / count).max(0.0)).collect();
        Self { count: n, mean, m2 }
    }

    /// Adds `other`'s rows to these.
    pub fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        for ch in 0..self.mean.len().min(other.mean.len()) {
            let delta = other.mean[ch] - self.mean[ch];
            self.mean[ch] += delta * nb / n;
            self.m2[ch] += other.m2[ch] + delta * delta * na * nb / n;
        }
        self.count += other.count;
    }

    /// The mean and biased variance per channel.
    pub fn moments(&self) -> Moments {
        let count = self.count.max(1) as f64;
        Moments { mean: self.mean.clone(), var: self.m2.iter().map(|m| m / count).collect(), count: self.count }
    }
}

/// `dy` where a fused op's output is positive, 0 elsewhere (ReLU's backward), in one pass.
pub fn relu_masked<T: KernelFloat>(dy: &[T], out: &[T]) -> Vec<T> {
    let mut g = vec![T::zero(); dy.len()];
    g.par_chunks_mut(1 << 14).zip(dy.par_chunks(1 << 14)).zip(out.par_chunks(1 << 14)).for_each(|((g, d), o)| {
        for ((g, &d), &o) in g.iter_mut().zip(d).zip(o) {
            *g = relu_gate(d, o);
        }
    });
    g
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
