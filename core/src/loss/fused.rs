//! The masked InfoNCE (plain estimator) forward and backward as one candle custom op.
//!
//! The composite form in `composite.rs` chains a dozen tensor ops, each a full pass over the
//! (M, K) logits with its own allocation, and autograd adds as many again. Here the forward is
//! one matrix product into the logits buffer and one pass per row (mask, max, exp, sum), whose
//! exponentials are kept; the backward turns them into the logit gradient in place and needs one
//! more product (two when anchors and candidates differ). For the joint layout (anchors are the
//! candidates) the gradient is (G + Gᵀ)Ẑ/τ: the transpose is added in place, tile by tile, so one
//! product serves both roles where autograd would run two.
//!
//! With L = (1/V) Σ_valid [ LSE_{j∈D_i} s_ij - (1/|P_i|) Σ_{p∈P_i} s_ip ] and s = ÂĈᵀ/τ:
//! dL/ds_ij = (1/V) (softmax_D(s_i)_j - [j∈P_i]/|P_i|), then through the product and the row
//! normalisation x̂ = x/max(|x|, ε): dx = (dx̂ - x̂ (x̂·dx̂))/|x| (or dx̂/ε for clamped rows).

use super::Denominator;
use crate::kernel::{gemm, KernelFloat, Strided, Threads};
use crate::sampling::{PairMask, RowMask};
use crate::similarity::NORM_EPS;
use crate::with_kernel_float;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;
use std::any::Any;
use std::sync::Mutex;

/// What the forward pass keeps for the backward pass.
struct Saved<T> {
    anchors: Normalized<T>,
    /// `None` when the candidates are the anchors (joint layout).
    candidates: Option<Normalized<T>>,
    /// (M, K): exp(s_ij - max_i) inside the denominator, 0 outside.
    exps: Vec<T>,
    /// Per row: the sum of `exps`, the number of positives, and the row's weight 1/V (0 for an
    /// anchor without positives).
    sums: Vec<T>,
    positives: Vec<usize>,
    weights: Vec<T>,
}

struct Normalized<T> {
    rows: usize,
    hat: Vec<T>,
    norms: Vec<T>,
}

/// The fused masked InfoNCE; applied as a unary op when anchors and candidates are one tensor,
/// as a binary op otherwise.
pub(crate) struct FusedInfoNce {
    pub(crate) mask: PairMask,
    pub(crate) denominator: Denominator,
    pub(crate) inv_temperature: f64,
    saved: Mutex<Option<Box<dyn Any + Send>>>,
}

impl FusedInfoNce {
    pub(crate) fn new(mask: PairMask, denominator: Denominator, temperature: f64) -> Self {
        Self { mask, denominator, inv_temperature: 1.0 / temperature, saved: Mutex::new(None) }
    }

    fn forward<T: KernelFloat>(&self, a: &[T], c: Option<&[T]>, dim: usize) -> Result<T> {
        let (loss, saved) = self.compute(a, c, dim)?;
        *self.saved.lock().map_err(|_| candle_core::Error::Msg("fused loss: poisoned cache".into()))? =
            Some(Box::new(saved));
        Ok(loss)
    }

    fn compute<T: KernelFloat>(&self, a: &[T], c: Option<&[T]>, dim: usize) -> Result<(T, Saved<T>)> {
        let anchors = normalize(a, dim);
        let candidates = c.map(|c| normalize(c, dim));
        let (m, k) = (anchors.rows, candidates.as_ref().map_or(anchors.rows, |c| c.rows));
        if (m, k) != (self.mask.rows(), self.mask.cols()) {
            bail!(
                "fused loss: inputs give a {m} x {k} similarity, the mask is {} x {}",
                self.mask.rows(),
                self.mask.cols()
            );
        }
        let c_hat = candidates.as_ref().map_or(&anchors.hat, |c| &c.hat);
        let mut exps = vec![T::zero(); m * k];
        let scale = T::from(self.inv_temperature).unwrap_or_else(T::one);
        // S = Â Ĉᵀ / τ: Ĉ read transposed through its strides.
        gemm(
            &mut exps,
            (m, k, dim),
            false,
            Strided::new(&anchors.hat, (dim, 1)),
            Strided::new(c_hat, (1, dim)),
            scale,
            Threads::Pool,
        );
        let with_positives = self.denominator == Denominator::WithPositives;
        let rows: Vec<(T, T, usize)> = exps
            .par_chunks_mut(k)
            .enumerate()
            .map(|(i, row)| {
                let (pos_sum, n_pos) = match self.mask.row(i) {
                    RowMask::Structured { positive, excluded } => {
                        let p = row[positive];
                        if let Some(e) = excluded {
                            row[e] = T::neg_infinity();
                        }
                        if !with_positives {
                            row[positive] = T::neg_infinity();
                        }
                        (p, 1)
                    }
                    RowMask::Dense { positives, negatives } => {
                        let mut sum = T::zero();
                        let mut n = 0;
                        for ((v, &p), &neg) in row.iter_mut().zip(positives).zip(negatives) {
                            if p {
                                sum += *v;
                                n += 1;
                            }
                            if !(neg || (p && with_positives)) {
                                *v = T::neg_infinity();
                            }
                        }
                        (sum, n)
                    }
                };
                if n_pos == 0 {
                    row.iter_mut().for_each(|v| *v = T::zero());
                    return (T::zero(), T::one(), 0);
                }
                let max = row.iter().fold(T::neg_infinity(), |a, &b| Float::max(a, b));
                let sum = T::exp_shifted_sum(row, max);
                let lse = max + sum.ln();
                (lse - pos_sum / T::from(n_pos).unwrap_or_else(T::one), sum, n_pos)
            })
            .collect();
        let valid = rows.iter().filter(|r| r.2 > 0).count();
        if valid == 0 {
            bail!("fused loss: no anchor has a positive");
        }
        let weight = T::one() / T::from(valid).unwrap_or_else(T::one);
        // Summed in order, in f64, so the result does not depend on the thread count.
        let total: f64 = rows.iter().filter(|r| r.2 > 0).map(|r| WithDType::to_f64(r.0)).sum();
        let loss = <T as WithDType>::from_f64(total / valid as f64);
        let saved = Saved {
            anchors,
            candidates,
            exps,
            sums: rows.iter().map(|r| r.1).collect(),
            positives: rows.iter().map(|r| r.2).collect(),
            weights: rows.iter().map(|r| if r.2 > 0 { weight } else { T::zero() }).collect(),
        };
        Ok((loss, saved))
    }

    /// Takes what the forward pass saved, or recomputes it (a second backward through one graph).
    fn saved<T: KernelFloat>(&self, a: &Tensor, c: Option<&Tensor>) -> Result<Saved<T>> {
        let cached = self.saved.lock().ok().and_then(|mut s| s.take());
        if let Some(saved) = cached.and_then(|b| b.downcast::<Saved<T>>().ok()) {
            return Ok(*saved);
        }
        let dim = a.dims()[1];
        let a = a.flatten_all()?.to_vec1::<T>()?;
        let c = c.map(|c| c.flatten_all()?.to_vec1::<T>()).transpose()?;
        Ok(self.compute(&a, c.as_deref(), dim)?.1)
    }

    /// Gradients with respect to the raw anchors and (if distinct) candidates.
    fn backward<T: KernelFloat>(&self, saved: Saved<T>, grad: T) -> (Vec<T>, Option<Vec<T>>) {
        let Saved { anchors, candidates, mut exps, sums, positives, weights } = saved;
        let (m, dim) = (anchors.rows, anchors.hat.len() / anchors.rows.max(1));
        let k = candidates.as_ref().map_or(m, |c| c.rows);
        // G = dL/dS, in place over the kept exponentials.
        exps.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
            let c = grad * weights[i];
            if c == T::zero() {
                row.iter_mut().for_each(|v| *v = T::zero());
                return;
            }
            let s = c / sums[i];
            row.iter_mut().for_each(|v| *v *= s);
            let p = c / T::from(positives[i]).unwrap_or_else(T::one);
            match self.mask.row(i) {
                RowMask::Structured { positive, .. } => row[positive] -= p,
                RowMask::Dense { positives, .. } => {
                    for (v, _) in row.iter_mut().zip(positives).filter(|(_, &is)| is) {
                        *v -= p;
                    }
                }
            }
        });
        let scale = T::from(self.inv_temperature).unwrap_or_else(T::one);
        match candidates {
            None => {
                add_transpose_in_place(&mut exps, m);
                let mut d_hat = vec![T::zero(); m * dim];
                gemm(
                    &mut d_hat,
                    (m, dim, m),
                    false,
                    Strided::new(&exps, (m, 1)),
                    Strided::new(&anchors.hat, (dim, 1)),
                    scale,
                    Threads::Pool,
                );
                (normalize_backward(&anchors, d_hat, dim), None)
            }
            Some(cands) => {
                let mut da = vec![T::zero(); m * dim];
                gemm(
                    &mut da,
                    (m, dim, k),
                    false,
                    Strided::new(&exps, (k, 1)),
                    Strided::new(&cands.hat, (dim, 1)),
                    scale,
                    Threads::Pool,
                );
                let mut dc = vec![T::zero(); k * dim];
                // dĈ = Gᵀ Â: G (m, k) read transposed.
                gemm(
                    &mut dc,
                    (k, dim, m),
                    false,
                    Strided::new(&exps, (1, k)),
                    Strided::new(&anchors.hat, (dim, 1)),
                    scale,
                    Threads::Pool,
                );
                (normalize_backward(&anchors, da, dim), Some(normalize_backward(&cands, dc, dim)))
            }
        }
    }
}

fn normalize<T: KernelFloat>(x: &[T], dim: usize) -> Normalized<T> {
    let rows = x.len().checked_div(dim).unwrap_or(0);
    let eps = T::from(NORM_EPS).unwrap_or_else(T::epsilon);
    let mut hat = x.to_vec();
    let norms = hat
        .par_chunks_mut(dim.max(1))
        .map(|row| {
            let norm = row.iter().fold(T::zero(), |s, &v| s + v * v).sqrt();
            let d = Float::max(norm, eps);
            row.iter_mut().for_each(|v| *v /= d);
            norm
        })
        .collect();
    Normalized { rows, hat, norms }
}

fn normalize_backward<T: KernelFloat>(x: &Normalized<T>, mut d_hat: Vec<T>, dim: usize) -> Vec<T> {
    let eps = T::from(NORM_EPS).unwrap_or_else(T::epsilon);
    d_hat.par_chunks_mut(dim.max(1)).enumerate().for_each(|(i, d)| {
        let norm = x.norms[i];
        if norm > eps {
            let h = &x.hat[i * dim..(i + 1) * dim];
            let dot = h.iter().zip(d.iter()).fold(T::zero(), |s, (&a, &b)| s + a * b);
            d.iter_mut().zip(h).for_each(|(v, &hv)| *v = (*v - hv * dot) / norm);
        } else {
            d.iter_mut().for_each(|v| *v /= eps);
        }
    });
    d_hat
}

/// g (n, n) := g + gᵀ, tile by tile: the task of tile row `bi` owns the tiles (bi, bj) and their
/// mirrors (bj, bi) for bj >= bi, so no two tasks touch one element.
fn add_transpose_in_place<T: KernelFloat>(g: &mut [T], n: usize) {
    const TILE: usize = 64;
    struct Shared<T>(*mut T);
    // SAFETY: tasks write disjoint elements (see above); the pointer outlives the scope.
    unsafe impl<T> Sync for Shared<T> {}
    let ptr = Shared(g.as_mut_ptr());
    let tiles = n.div_ceil(TILE);
    (0..tiles).into_par_iter().for_each(|bi| {
        let p = &ptr;
        for bj in bi..tiles {
            for i in bi * TILE..((bi + 1) * TILE).min(n) {
                let j_start = if bi == bj { i } else { bj * TILE };
                for j in j_start..((bj + 1) * TILE).min(n) {
                    // SAFETY: i, j < n, and (i, j), (j, i) belong to this task only.
                    unsafe {
                        let a = p.0.add(i * n + j);
                        let b = p.0.add(j * n + i);
                        let s = *a + *b;
                        *a = s;
                        *b = s;
                    }
                }
            }
        }
    });
}

fn contiguous_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&s.as_slice::<T>()?[start..end]),
        None => bail!("fused loss: inputs must be contiguous"),
    }
}

fn dims2(l: &Layout) -> Result<(usize, usize)> {
    match l.dims() {
        [r, c] => Ok((*r, *c)),
        other => bail!("fused loss: inputs must be 2-D, got {other:?}"),
    }
}

fn scalar<T: WithDType>(v: T) -> (CpuStorage, Shape) {
    (T::to_cpu_storage_owned(vec![v]), Shape::from(()))
}

fn tensor_like<T: WithDType>(data: Vec<T>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(data, like.dims(), like.device())
}

impl CustomOp1 for FusedInfoNce {
    fn name(&self) -> &'static str {
        "fused-info-nce"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, dim) = dims2(l)?;
        with_kernel_float!(s.dtype(), "fused loss", |T| Ok(scalar(self.forward::<T>(
            contiguous_slice(s, l)?,
            None,
            dim
        )?)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = grad_res.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        let grad = with_kernel_float!(arg.dtype(), "fused loss", |T| {
            tensor_like(self.backward(self.saved::<T>(arg, None)?, <T as WithDType>::from_f64(g)).0, arg)?
        });
        Ok(Some(grad))
    }
}

impl CustomOp2 for FusedInfoNce {
    fn name(&self) -> &'static str {
        "fused-info-nce"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, dim) = dims2(l1)?;
        dims2(l2)?;
        if s1.dtype() != s2.dtype() {
            bail!("fused loss: embeddings of one dtype expected, got {:?} and {:?}", s1.dtype(), s2.dtype());
        }
        with_kernel_float!(s1.dtype(), "fused loss", |T| {
            Ok(scalar(self.forward::<T>(contiguous_slice(s1, l1)?, Some(contiguous_slice(s2, l2)?), dim)?))
        })
    }

    fn bwd(
        &self,
        a: &Tensor,
        c: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad_res.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        let (ga, gc) = with_kernel_float!(a.dtype(), "fused loss", |T| {
            let (ga, gc) = self.backward(self.saved::<T>(a, Some(c))?, <T as WithDType>::from_f64(g));
            (tensor_like(ga, a)?, gc.map(|gc| tensor_like(gc, c)).transpose()?)
        });
        Ok((Some(ga), gc))
    }
}
