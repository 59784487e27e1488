//! Multi-head scaled dot-product attention with a key-padding bias, optionally a per-head position
//! bias (MPNet's), and seeded dropout on the probabilities (BERT's self-attention after its three
//! projections), fused on the CPU.
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
    let (_, l, _) = checked_shapes(q, k, v, key_bias, heads)?;
    let same_dtype = [k, v, key_bias].iter().all(|t| t.dtype() == q.dtype());
    let drops = train && dropout.p() > 0.0;
    // An empty batch has an empty context (candle's reductions refuse empty tensors).
    if q.elem_count() == 0 {
        return Tensor::zeros(q.dims(), q.dtype(), q.device());
    }
    if !(crate::kernel::runs_kernel(q) && same_dtype) {
        return attention_tensor_ops(q, k, v, key_bias, None, heads, dropout, drops);
    }
    let op = Attention::new(key_bias, heads, l, dropout, drops)?;
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// [`multi_head_attention`] with a per-head position bias (heads, L, L) added to every row's
/// scores (MPNet's relative position bias, shared by the batch), which receives its gradient (the
/// scores' gradient summed over the batch in row order, so the same on any thread count). Fused on
/// the CPU as [`multi_head_attention`] is (keys and values joined side by side for the kernel, so
/// that the bias can be its third operand); candle's tensor ops elsewhere, drawing the same masks.
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
    let drops = train && dropout.p() > 0.0;
    let same_dtype = [k, v, key_bias, position_bias].iter().all(|t| t.dtype() == q.dtype());
    if !(crate::kernel::runs_kernel(q) && same_dtype) {
        return attention_tensor_ops(q, k, v, key_bias, Some(position_bias), heads, dropout, drops);
    }
    let op = Attention::new(key_bias, heads, l, dropout, drops)?;
    let kv = Tensor::cat(&[k, v], 2)?;
    q.contiguous()?.apply_op3(&kv, &position_bias.contiguous()?, PositionBiasedAttention(op))
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

/// The fused kernel's settings, shared by its two ops.
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

/// The op of [`multi_head_attention`]: queries, keys and values, (B, L, H) each.
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
        let dims = l1.dims();
        if [l2, l3].iter().any(|l| l.dims() != dims) {
            bail!("attention: queries {:?}, keys {:?} and values {:?} must have one shape", dims, l2.dims(), l3.dims());
        }
        let width = self.check_queries(dims)?;
        let out = with_kernel_float!(s1.dtype(), "attention", |T| {
            let q = contiguous_slice::<T>(s1, l1, "attention")?;
            let (k, v) = (contiguous_slice::<T>(s2, l2, "attention")?, contiguous_slice::<T>(s3, l3, "attention")?);
            T::to_cpu_storage_owned(self.forward(&Operands { q, k, v, kv_stride: width, position: None }, width))
        });
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
        let (b, l, width) = q.dims3()?;
        let (dq, dkv) = with_kernel_float!(q.dtype(), "attention", |T| {
            let grads = with_cpu_slice(q, "attention", |q: &[T]| {
                with_cpu_slice(k, "attention", |k: &[T]| {
                    with_cpu_slice(v, "attention", |v: &[T]| {
                        with_cpu_slice(&grad, "attention", |g: &[T]| {
                            self.backward(&Operands { q, k, v, kv_stride: width, position: None }, g, width)
                        })
                    })
                })
            })????;
            let [dq, dkv, _] = grads;
            (Tensor::from_vec(dq, q.dims(), q.device())?, Tensor::from_vec(dkv, (b, l, 2 * width), q.device())?)
        });
        // Views of one buffer: candle's backward adds them into each operand's own gradient.
        Ok((Some(dq), Some(dkv.narrow(2, 0, width)?), Some(dkv.narrow(2, width, width)?)))
    }
}

/// The op of [`multi_head_attention_with_position_bias`]: queries (B, L, H), keys and values side
/// by side (B, L, 2H), the position bias (heads, L, L).
struct PositionBiasedAttention(Attention);

impl CustomOp3 for PositionBiasedAttention {
    fn name(&self) -> &'static str {
        "multi-head-attention-with-position-bias"
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
        let width = self.check(l1, l2, l3)?;
        let out = with_kernel_float!(s1.dtype(), "attention", |T| {
            let q = contiguous_slice::<T>(s1, l1, "attention")?;
            let kv = contiguous_slice::<T>(s2, l2, "attention")?;
            let position = Some(contiguous_slice::<T>(s3, l3, "attention")?);
            let operands = Operands { q, k: kv, v: &kv[width..], kv_stride: 2 * width, position };
            T::to_cpu_storage_owned(self.0.forward(&operands, width))
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        kv: &Tensor,
        position: &Tensor,
        _context: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let width = q.dim(2)?;
        let [dq, dkv, dposition] = with_kernel_float!(q.dtype(), "attention", |T| {
            let grads = with_cpu_slice(q, "attention", |q: &[T]| {
                with_cpu_slice(kv, "attention", |kv: &[T]| {
                    with_cpu_slice(position, "attention", |p: &[T]| {
                        with_cpu_slice(&grad, "attention", |g: &[T]| {
                            let operands =
                                Operands { q, k: kv, v: &kv[width..], kv_stride: 2 * width, position: Some(p) };
                            self.0.backward(&operands, g, width)
                        })
                    })
                })
            })????;
            let [dq, dkv, dp] = grads;
            [(dq, q.dims()), (dkv, kv.dims()), (dp, position.dims())]
                .map(|(g, dims)| Tensor::from_vec(g, dims, q.device()))
        });
        Ok((Some(dq?), Some(dkv?), Some(dposition?)))
    }
}

impl PositionBiasedAttention {
    /// The width H of (B, L, H) queries beside (B, L, 2H) keys and values and a (heads, L, L) bias.
    fn check(&self, q: &Layout, kv: &Layout, position: &Layout) -> Result<usize> {
        let width = self.0.check_queries(q.dims())?;
        let (b, l, heads) = (q.dims()[0], self.0.len, self.0.heads);
        if kv.dims() != [b, l, 2 * width] || position.dims() != [heads, l, l] {
            bail!(
                "attention: queries {:?}, keys and values {:?}, position bias {:?} for {heads} heads",
                q.dims(),
                kv.dims(),
                position.dims()
            );
        }
        Ok(width)
    }
}

/// Queries, keys and values as the kernel reads them: rows of tokens, queries `width` apart, keys
/// and values `kv_stride` apart (the width for separate tensors, twice it side by side); and the
/// position bias (heads, L, L) where there is one.
struct Operands<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    kv_stride: usize,
    position: Option<&'a [T]>,
}

/// One head of one row of the batch: its operands in place and its biases.
struct Head<'a, T> {
    q: Strided<'a, T>,
    k: Strided<'a, T>,
    v: Strided<'a, T>,
    bias: &'a [f64],
    position: Option<&'a [T]>,
    keep: Option<&'a [bool]>,
}

impl Attention {
    fn new(key_bias: &Tensor, heads: usize, len: usize, dropout: &SeededDropout, drops: bool) -> Result<Self> {
        let b = key_bias.dim(0)?;
        let keep = if drops { Some(dropout.draw(b * heads * len * len)?) } else { None };
        let bias = key_bias.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        Ok(Self { heads, len, bias, keep, scale: dropout.scale() })
    }

    /// The width of (B, L, H) queries, checked against the op's length and key bias.
    fn check_queries(&self, dims: &[usize]) -> Result<usize> {
        if dims.len() != 3 || dims[1] != self.len {
            bail!("attention: queries {dims:?} for rows of {} tokens", self.len);
        }
        if self.bias.len() != dims[0] * dims[1] {
            bail!("attention: a key bias of {} for {:?}", self.bias.len(), dims);
        }
        Ok(dims[2])
    }

    /// The operands of head `head` of row `row`.
    fn head<'a, T>(&'a self, ops: &Operands<'a, T>, row: usize, head: usize, width: usize) -> Head<'a, T> {
        let (l, d) = (self.len, width / self.heads);
        let (at, kv_at) = (row * l * width + head * d, row * l * ops.kv_stride + head * d);
        let n = l * l;
        let mask_at = (row * self.heads + head) * n;
        Head {
            q: Strided::new(&ops.q[at..], (width, 1)),
            k: Strided::new(&ops.k[kv_at..], (ops.kv_stride, 1)),
            v: Strided::new(&ops.v[kv_at..], (ops.kv_stride, 1)),
            bias: &self.bias[row * l..(row + 1) * l],
            position: ops.position.map(|p| &p[head * n..(head + 1) * n]),
            keep: self.keep.as_ref().map(|m| &m[mask_at..mask_at + n]),
        }
    }

    /// The probabilities of a head (L x L, before dropout) into `p`.
    fn probabilities<T: KernelFloat>(&self, head: &Head<'_, T>, d: usize, p: &mut [T]) {
        let l = self.len;
        let scale = T::one() / T::from(d).unwrap_or_else(T::one).sqrt();
        let kt = Strided::new(head.k.data, (1, head.k.row_stride));
        gemm(p, (l, l, d), false, head.q, kt, scale, Threads::One);
        if let Some(position) = head.position {
            p.iter_mut().zip(position).for_each(|(s, &b)| *s += b);
        }
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

    fn forward<T: KernelFloat>(&self, ops: &Operands<'_, T>, width: usize) -> Vec<T> {
        let (l, d) = (self.len, width / self.heads);
        let mut out = vec![T::zero(); ops.q.len()];
        out.par_chunks_mut(l * width).enumerate().for_each(|(row, out)| {
            let (mut p, mut context) = (vec![T::zero(); l * l], vec![T::zero(); l * d]);
            for h in 0..self.heads {
                let head = self.head(ops, row, h, width);
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

    /// dq (B, L, H), dk and dv side by side (B, L, 2H), and the position bias's gradient (empty
    /// without one), head by head: with P the probabilities and Pd = P ⊙ m, dv = Pdᵀ g,
    /// dPd = g vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)) for dP = dPd ⊙ m, dq = dS k / √d,
    /// dk = dSᵀ q / √d, and the position bias's gradient the sum of dS over the batch.
    fn backward<T: KernelFloat>(&self, ops: &Operands<'_, T>, g: &[T], width: usize) -> [Vec<T>; 3] {
        let (l, d, n) = (self.len, width / self.heads, self.len * self.len);
        let scale = T::one() / T::from(d).unwrap_or_else(T::one).sqrt();
        let (mut dq, mut dkv) = (vec![T::zero(); ops.q.len()], vec![T::zero(); 2 * ops.q.len()]);
        // One row of the batch: its dq (L, H) and [dk dv] (L, 2H), and each head's dS into `ds`
        // (heads, L, L) where the position bias needs it.
        let row_backward = |row: usize, dq: &mut [T], dkv: &mut [T], mut ds: Option<&mut [T]>| {
            let (mut p, mut pd, mut dp) = (vec![T::zero(); n], vec![T::zero(); n], vec![T::zero(); n]);
            let mut part = vec![T::zero(); l * d];
            let put = |dst: &mut [T], stride: usize, at: usize, part: &[T]| {
                for (i, c) in part.chunks(d).enumerate() {
                    dst[i * stride + at..i * stride + at + d].copy_from_slice(c);
                }
            };
            for h in 0..self.heads {
                let head = self.head(ops, row, h, width);
                let gh = Strided::new(&g[row * l * width + h * d..], (width, 1));
                self.probabilities(&head, d, &mut p);
                pd.copy_from_slice(&p);
                self.drop(head.keep, &mut pd);
                gemm(&mut part, (l, d, l), false, Strided::new(&pd, (1, l)), gh, T::one(), Threads::One);
                put(dkv, 2 * width, width + h * d, &part);
                let vt = Strided::new(head.v.data, (1, head.v.row_stride));
                gemm(&mut dp, (l, l, d), false, gh, vt, T::one(), Threads::One);
                self.drop(head.keep, &mut dp);
                for (dr, pr) in dp.chunks_mut(l).zip(p.chunks(l)) {
                    let dot = dr.iter().zip(pr).fold(T::zero(), |s, (&a, &b)| s + a * b);
                    dr.iter_mut().zip(pr).for_each(|(x, &p)| *x = p * (*x - dot));
                }
                if let Some(ds) = ds.as_deref_mut() {
                    ds[h * n..(h + 1) * n].copy_from_slice(&dp);
                }
                gemm(&mut part, (l, d, l), false, Strided::new(&dp, (l, 1)), head.k, scale, Threads::One);
                put(dq, width, h * d, &part);
                gemm(&mut part, (l, d, l), false, Strided::new(&dp, (1, l)), head.q, scale, Threads::One);
                put(dkv, 2 * width, h * d, &part);
            }
        };
        let (q_row, kv_row) = (l * width, 2 * l * width);
        let mut dposition = Vec::new();
        if ops.position.is_none() {
            dq.par_chunks_mut(q_row)
                .zip(dkv.par_chunks_mut(kv_row))
                .enumerate()
                .for_each(|(row, (dq, dkv))| row_backward(row, dq, dkv, None));
        } else {
            // A block of rows at a time (one a thread), each row's dS kept, then added in row
            // order: the sum does not depend on how many threads ran the block.
            let block = rayon::current_num_threads().max(1);
            let mut ds = vec![T::zero(); block * self.heads * n];
            dposition = vec![T::zero(); self.heads * n];
            for (i, (dq, dkv)) in dq.chunks_mut(block * q_row).zip(dkv.chunks_mut(block * kv_row)).enumerate() {
                let rows = dq.len() / q_row;
                let ds = &mut ds[..rows * self.heads * n];
                dq.par_chunks_mut(q_row)
                    .zip(dkv.par_chunks_mut(kv_row))
                    .zip(ds.par_chunks_mut(self.heads * n))
                    .enumerate()
                    .for_each(|(r, ((dq, dkv), ds))| row_backward(i * block + r, dq, dkv, Some(ds)));
                for row in ds.chunks(self.heads * n) {
                    dposition.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
                }
            }
        }
        [dq, dkv, dposition]
    }
}
