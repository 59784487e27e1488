//! BatchNorm's statistics per channel: the sums its kernel's passes take (in lanes of the element
//! type, then in f64, in an order fixed by the shapes), the batch moments (all-reduced under
//! SyncBatchNorm), and moments gathered block by block as a producer writes its output.

use crate::collective::Collective;
use crate::kernel::KernelFloat;
use candle_core::{bail, Result, WithDType};
use rayon::prelude::*;

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
pub(super) fn all_reduce_f64(values: &mut [f64], collective: &dyn Collective) -> Result<()> {
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
pub(super) const ROWS: usize = 256;

/// Per channel the two sums of f(p, q, r, m) over the rows of three (N, C) buffers with a
/// per-channel value `m`: each block of [`ROWS`] rows summed in T along the channels
/// (contiguous, so it vectorises), in parallel, the blocks in f64.
fn row_sums<T: KernelFloat>(
    p: &[T],
    q: &[T],
    r: &[T],
    m: &[T],
    f: impl Fn(T, T, T, T) -> (T, T) + Sync,
) -> (Vec<f64>, Vec<f64>) {
    let c = m.len();
    let blocks = p.par_chunks(c * ROWS).zip(q.par_chunks(c * ROWS)).zip(r.par_chunks(c * ROWS));
    let sums: Vec<(Vec<T>, Vec<T>)> = blocks.map(|((pb, qb), rb)| block_sums(pb, qb, rb, m, &f)).collect();
    add_blocks(c, sums)
}

/// [`row_sums`] on the calling thread (for a caller that already runs in parallel): the same
/// blocks, so the same sums.
fn row_sums_here<T: KernelFloat>(p: &[T], m: &[T], f: impl Fn(T, T, T, T) -> (T, T)) -> (Vec<f64>, Vec<f64>) {
    let c = m.len();
    add_blocks(c, p.chunks(c * ROWS).map(|pb| block_sums(pb, pb, pb, m, &f)).collect())
}

/// One block's two sums per channel, in T.
fn block_sums<T: KernelFloat>(
    pb: &[T],
    qb: &[T],
    rb: &[T],
    m: &[T],
    f: &impl Fn(T, T, T, T) -> (T, T),
) -> (Vec<T>, Vec<T>) {
    let c = m.len();
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
}

/// The blocks' sums added in order, in f64.
fn add_blocks<T: KernelFloat>(c: usize, blocks: Vec<(Vec<T>, Vec<T>)>) -> (Vec<f64>, Vec<f64>) {
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
pub(super) fn channel_sums<T: KernelFloat>(
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

/// The terms of a shifted mean and variance: v - shift and its square.
fn centred<T: KernelFloat>(v: T, _: T, _: T, shift: T) -> (T, T) {
    let d = v - shift;
    (d, d * d)
}

/// Per channel: mean and biased variance, from shifted sums (the shift keeps the variance free
/// of cancellation). One process: one pass, each channel shifted by its first value. Several
/// (SyncBatchNorm): the sums all-reduced, a first pass for the mean, a second about it.
pub(super) fn channel_moments<T: KernelFloat>(
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
    /// (free of cancellation), summed as the batch moments are.
    pub fn of_rows<T: KernelFloat>(rows: &[T], c: usize) -> Self {
        let n = rows.len().checked_div(c).unwrap_or(0);
        if n == 0 {
            return Self::empty(c);
        }
        let shift = &rows[..c];
        let (sum, sq) = row_sums_here(rows, shift, centred);
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
