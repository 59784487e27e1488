//! Multi-head scaled dot-product attention with a key-padding bias and seeded dropout on the
//! probabilities (BERT's self-attention after its three projections), fused on the CPU.
//!
//! The tensor-op form keeps, for every layer of a training pass, the heads split into contiguous
//! copies, the scores, the scaled scores, the biased scores, the probabilities, the dropout mask
//! and the dropped probabilities, the context and its transposed copy, and candle's backward adds
//! a gradient for each (and one for the mask). The fused op reads the heads in place from the
//! (B, L, H) projections, writes the context in (B, L, H), keeps nothing but the dropout mask (a
//! byte a probability) and recomputes each head's probabilities in the backward pass, as
//! FlashAttention does: an L x L x d product that costs little beside the projections.

use super::dropout::SeededDropout;
use crate::kernel::{contiguous_slice, gemm, with_cpu_slice, KernelFloat, Strided, Threads};
use crate::with_kernel_float;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// `softmax(q_h k_hᵀ / √d + bias) v_h` for each head h of `heads`, with `dropout` on the
/// probabilities when `train`: `q`, `k` and `v` are (B, L, H) with H = heads x d, `key_bias` is
/// (B, L), added to every query's score of that key (BERT's 0 for tokens and -10,000 for
/// padding). Returns the context (B, L, H), heads side by side. The dropout mask is drawn in
/// (B, heads, L, L) order on every path, so the fused kernel (CPU, f32 and f64) and the tensor
/// ops (any device, or the generic path forced) draw the same masks.
pub fn multi_head_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: &Tensor,
    heads: usize,
    dropout: &SeededDropout,
    train: bool,
) -> Result<Tensor> {
    let (b, l, h) = checked_shapes(q, k, v, key_bias, heads)?;
    let same_dtype = [k, v, key_bias].iter().all(|t| t.dtype() == q.dtype());
    let drops = train && dropout.p() > 0.0;
    // An empty batch has an empty context (candle's reductions refuse empty tensors).
    if q.elem_count() == 0 {
        return Tensor::zeros((b, l, h), q.dtype(), q.device());
    }
    if !(crate::kernel::runs_kernel(q) && same_dtype) {
        return attention_tensor_ops(q, k, v, key_bias, None, heads, dropout, drops);
    }
    let keep = if drops { Some(dropout.draw(b * heads * l * l)?) } else { None };
    let bias = key_bias.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let op = Attention { heads, len: l, bias, keep, scale: dropout.scale() };
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// [`multi_head_attention`] with a per-head position bias (heads, L, L) added to every row's
/// scores (MPNet's relative position bias, shared by the batch), which receives its gradient.
/// It runs as candle's tensor ops on every device: the fused kernel takes no per-head bias.
#[allow(clippy::too_many_arguments)]
pub fn multi_head_attention_with_position_bias(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: &Tensor,
    position_bias: &Tensor,
    heads: usize,
    dropout: &SeededDropout,
    train: bool,
) -> Result<Tensor> {
    let (b, l, h) = checked_shapes(q, k, v, key_bias, heads)?;
    if position_bias.dims() != [heads, l, l] {
        bail!(
            "attention: a position bias of {:?} for {heads} heads of {l} tokens (expected [{heads}, {l}, {l}])",
            position_bias.dims()
        );
    }
    if q.elem_count() == 0 {
        return Tensor::zeros((b, l, h), q.dtype(), q.device());
    }
    attention_tensor_ops(q, k, v, key_bias, Some(position_bias), heads, dropout, train && dropout.p() > 0.0)
}

/// (B, L, H) of queries, keys and values of one shape, a (B, L) key bias and H split into `heads`.
fn checked_shapes(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: &Tensor,
    heads: usize,
) -> Result<(usize, usize, usize)> {
    let (b, l, h) = q.dims3()?;
    if k.dims() != q.dims() || v.dims() != q.dims() {
        bail!("attention: queries {:?}, keys {:?} and values {:?} must have one shape", q.dims(), k.dims(), v.dims());
    }
    if key_bias.dims() != [b, l] {
        bail!("attention: a key bias of {:?} for {b} rows of {l} tokens (expected [{b}, {l}])", key_bias.dims());
    }
    if heads == 0 || h % heads != 0 {
        bail!("attention: a width of {h} does not split into {heads} heads");
    }
    Ok((b, l, h))
}

/// The attention as candle's tensor ops (any device; gradients by candle's backward).
#[allow(clippy::too_many_arguments)]
fn attention_tensor_ops(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: &Tensor,
    position_bias: Option<&Tensor>,
    heads: usize,
    dropout: &SeededDropout,
    drops: bool,
) -> Result<Tensor> {
    let (b, l, h) = q.dims3()?;
    let d = h / heads;
    let split = |t: &Tensor| t.reshape((b, l, heads, d))?.transpose(1, 2)?.contiguous();
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    let mut scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(&key_bias.reshape((b, 1, 1, l))?)?;
    if let Some(p) = position_bias {
        scores = scores.broadcast_add(&p.unsqueeze(0)?)?;
    }
    let probs = dropout.forward_t(&super::softmax_last_dim(&scores)?, drops)?;
    probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, h))
}

struct Attention {
    heads: usize,
    len: usize,
    /// The key bias, (B, L).
    bias: Vec<f64>,
    /// Which probabilities dropout keeps, (B, heads, L, L); none without dropout.
    keep: Option<Vec<bool>>,
    /// What a kept probability is multiplied by.
    scale: f32,
}

/// One head of one row of the batch: its operands in the (B, L, H) tensors (row stride H) and
/// scratch matrices.
struct Head<'a, T> {
    q: Strided<'a, T>,
    k: Strided<'a, T>,
    v: Strided<'a, T>,
    bias: &'a [f64],
    keep: Option<&'a [bool]>,
}

impl Attention {
    /// The operands of head `head` of row `row`.
    fn head<'a, T>(
        &'a self,
        (q, k, v): (&'a [T], &'a [T], &'a [T]),
        row: usize,
        head: usize,
        width: usize,
    ) -> Head<'a, T> {
        let (l, d) = (self.len, width / self.heads);
        let at = row * l * width + head * d;
        let n = l * l;
        let mask_at = (row * self.heads + head) * n;
        Head {
            q: Strided::new(&q[at..], (width, 1)),
            k: Strided::new(&k[at..], (width, 1)),
            v: Strided::new(&v[at..], (width, 1)),
            bias: &self.bias[row * l..(row + 1) * l],
            keep: self.keep.as_ref().map(|m| &m[mask_at..mask_at + n]),
        }
    }

    /// The probabilities of a head (L x L, before dropout) into `p`.
    fn probabilities<T: KernelFloat>(&self, head: &Head<'_, T>, d: usize, p: &mut [T]) {
        let l = self.len;
        let scale = T::one() / T::from(d).unwrap_or_else(T::one).sqrt();
        let kt = Strided::new(head.k.data, (1, head.k.row_stride));
        gemm(p, (l, l, d), false, head.q, kt, scale, Threads::One);
        for row in p.chunks_mut(l) {
            let mut max = T::neg_infinity();
            for (s, &b) in row.iter_mut().zip(head.bias) {
                *s += T::from(b).unwrap_or_else(T::zero);
                max = if *s > max { *s } else { max };
            }
            let inv = T::one() / T::exp_shifted_sum(row, max);
            row.iter_mut().for_each(|s| *s *= inv);
        }
    }

    /// `p ⊙ m`, m the dropout's multiplier (scale where kept, 0 elsewhere), in place.
    fn drop<T: KernelFloat>(&self, keep: Option<&[bool]>, p: &mut [T]) {
        if let Some(keep) = keep {
            let (scale, zero) = (T::from(self.scale).unwrap_or_else(T::one), T::zero());
            p.iter_mut().zip(keep).for_each(|(p, &k)| *p *= if k { scale } else { zero });
        }
    }

    fn forward<T: KernelFloat>(&self, q: &[T], k: &[T], v: &[T], width: usize) -> Vec<T> {
        let (l, d) = (self.len, width / self.heads);
        let mut out = vec![T::zero(); q.len()];
        out.par_chunks_mut(l * width).enumerate().for_each(|(row, out)| {
            let (mut p, mut context) = (vec![T::zero(); l * l], vec![T::zero(); l * d]);
            for h in 0..self.heads {
                let head = self.head((q, k, v), row, h, width);
                self.probabilities(&head, d, &mut p);
                self.drop(head.keep, &mut p);
                gemm(&mut context, (l, d, l), false, Strided::new(&p, (l, 1)), head.v, T::one(), Threads::One);
                for (i, c) in context.chunks(d).enumerate() {
                    out[i * width + h * d..i * width + (h + 1) * d].copy_from_slice(c);
                }
            }
        });
        out
    }

    /// dq, dk, dv of the context's gradient `g`, head by head: with P the probabilities and
    /// Pd = P ⊙ m, dv = Pdᵀ g, dPd = g vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)) for dP = dPd ⊙ m,
    /// dq = dS k / √d, dk = dSᵀ q / √d.
    fn backward<T: KernelFloat>(&self, q: &[T], k: &[T], v: &[T], g: &[T], width: usize) -> [Vec<T>; 3] {
        let (l, d) = (self.len, width / self.heads);
        let scale = T::one() / T::from(d).unwrap_or_else(T::one).sqrt();
        let mut grads = [vec![T::zero(); q.len()], vec![T::zero(); q.len()], vec![T::zero(); q.len()]];
        let [dq, dk, dv] = &mut grads;
        dq.par_chunks_mut(l * width)
            .zip(dk.par_chunks_mut(l * width))
            .zip(dv.par_chunks_mut(l * width))
            .enumerate()
            .for_each(|(row, ((dq, dk), dv))| {
                let (mut p, mut pd, mut dp) = (vec![T::zero(); l * l], vec![T::zero(); l * l], vec![T::zero(); l * l]);
                let mut part = vec![T::zero(); l * d];
                let put = |dst: &mut [T], part: &[T], h: usize| {
                    for (i, c) in part.chunks(d).enumerate() {
                        dst[i * width + h * d..i * width + (h + 1) * d].copy_from_slice(c);
                    }
                };
                for h in 0..self.heads {
                    let head = self.head((q, k, v), row, h, width);
                    let gh = Strided::new(&g[row * l * width + h * d..], (width, 1));
                    self.probabilities(&head, d, &mut p);
                    pd.copy_from_slice(&p);
                    self.drop(head.keep, &mut pd);
                    gemm(&mut part, (l, d, l), false, Strided::new(&pd, (1, l)), gh, T::one(), Threads::One);
                    put(dv, &part, h);
                    let vt = Strided::new(head.v.data, (1, width));
                    gemm(&mut dp, (l, l, d), false, gh, vt, T::one(), Threads::One);
                    self.drop(head.keep, &mut dp);
                    for (dr, pr) in dp.chunks_mut(l).zip(p.chunks(l)) {
                        let dot = dr.iter().zip(pr).fold(T::zero(), |s, (&a, &b)| s + a * b);
                        dr.iter_mut().zip(pr).for_each(|(x, &p)| *x = p * (*x - dot));
                    }
                    gemm(&mut part, (l, d, l), false, Strided::new(&dp, (l, 1)), head.k, scale, Threads::One);
                    put(dq, &part, h);
                    gemm(&mut part, (l, d, l), false, Strided::new(&dp, (1, l)), head.q, scale, Threads::One);
                    put(dk, &part, h);
                }
            });
        grads
    }

    fn check(&self, layouts: [&Layout; 3]) -> Result<usize> {
        let dims = layouts[0].dims();
        if layouts.iter().any(|l| l.dims() != dims) || dims.len() != 3 || dims[1] != self.len {
            bail!("attention: operands {:?} for rows of {} tokens", layouts.map(|l| l.dims().to_vec()), self.len);
        }
        if self.bias.len() != dims[0] * dims[1] {
            bail!("attention: a key bias of {} for {:?}", self.bias.len(), dims);
        }
        Ok(dims[2])
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "multi-head-attention"
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
        let width = self.check([l1, l2, l3])?;
        let out =
            with_kernel_float!(s1.dtype(), "attention", |T| <T as WithDType>::to_cpu_storage_owned(self.forward::<T>(
                contiguous_slice(s1, l1, "attention")?,
                contiguous_slice(s2, l2, "attention")?,
                contiguous_slice(s3, l3, "attention")?,
                width,
            )));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _context: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let width = q.dim(2)?;
        let [dq, dk, dv] = with_kernel_float!(q.dtype(), "attention", |T| {
            let grads = with_cpu_slice(q, "attention", |qs: &[T]| {
                with_cpu_slice(k, "attention", |ks: &[T]| {
                    with_cpu_slice(v, "attention", |vs: &[T]| {
                        with_cpu_slice(&grad, "attention", |gs: &[T]| self.backward(qs, ks, vs, gs, width))
                    })
                })
            })????;
            grads.map(|g| Tensor::from_vec(g, q.dims(), q.device()))
        });
        Ok((Some(dq?), Some(dk?), Some(dv?)))
    }
}
