//! Dropout whose masks come from our own seeded stream (candle's CPU random numbers cannot be
//! seeded, so `candle_nn::ops::dropout` never repeats).

use crate::collective::GlobalRows;
use crate::kernel::{contiguous_slice, with_cpu_slice, KernelFloat};
use crate::rng::{named_rng, Rng};
use crate::with_kernel_float;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use rand::RngCore as _;
use rayon::prelude::*;
use std::cell::Cell;
use std::sync::Mutex;

thread_local! {
    /// Where this process's rows sit in the global batch, inside [`in_global_batch`].
    static GLOBAL_ROWS: Cell<Option<GlobalRows>> = const { Cell::new(None) };
}

/// Runs `f` with every [`SeededDropout`] on this thread drawing as one process holding the whole
/// global batch would: a layer draws the masks of rows `rows.first..rows.first + rows.rows` of a
/// `rows.total`-row batch and then moves its stream past all of them. So under data parallelism
/// each sample's mask depends on its place in the global batch, not on the process that holds
/// it, and every process's stream stays where a single process's would be (checkpoints agree).
/// Tensors must be batch-major with `rows.rows` rows. Outside it, a layer draws for its own
/// batch only.
pub fn in_global_batch<T>(rows: GlobalRows, f: impl FnOnce() -> T) -> T {
    let before = GLOBAL_ROWS.with(|g| g.replace(Some(rows)));
    let out = f();
    GLOBAL_ROWS.with(|g| g.set(before));
    out
}

/// Zeroes each element with probability `p` in training and scales the rest by 1/(1 - p);
/// the identity in evaluation. Each layer draws from its own stream, keyed by the seed and the
/// layer's name, which advances with every training forward pass; its position can be saved and
/// restored so that a resumed run draws the same masks.
#[derive(Debug)]
pub struct SeededDropout {
    p: f64,
    rng: Mutex<Rng>,
}

impl SeededDropout {
    /// A dropout layer with drop probability `p` in [0, 1).
    pub fn new(p: f64, seed: u64, name: &str) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            bail!("SeededDropout `{name}`: p must be in [0, 1), got {p}");
        }
        Ok(Self { p, rng: Mutex::new(named_rng(seed, name)) })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Applies dropout when `train` is true: on the CPU (f32, f64) one fused pass whose backward
    /// reads the mask it kept (a byte an element, where the tensor product kept an f32 mask and
    /// the gradient candle computes for it), elsewhere the product with a mask tensor. Both paths
    /// draw the same mask and give the same bits.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        let keep = self.draw(x.elem_count())?;
        let scale = self.scale();
        if crate::kernel::runs_kernel(x) {
            return x.contiguous()?.apply_op1(Masked { keep, scale });
        }
        let mask: Vec<f32> = keep.iter().map(|&k| if k { scale } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x * mask
    }

    /// What a kept element is multiplied by: 1 / (1 - p), rounded to f32 on every path.
    pub(crate) fn scale(&self) -> f32 {
        (1.0 / (1.0 - self.p)) as f32
    }

    /// The keep mask of the next `n` elements (row-major) of this layer's stream, inside
    /// [`in_global_batch`] those of this process's rows of the global batch: kept when a uniform
    /// 32-bit word falls below (1 - p) * 2^32, one word per element.
    pub(crate) fn draw(&self, n: usize) -> Result<Vec<bool>> {
        let threshold = ((1.0 - self.p) * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
        let rows = GLOBAL_ROWS.with(|g| g.get());
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let start = rng.get_word_pos();
        // One word per element, row-major: this process's rows start `first` rows in.
        let (skip, advance) = match rows {
            Some(g) if g.rows == 0 || n % g.rows != 0 || g.first + g.rows > g.total => {
                bail!("dropout over a global batch: {} elements are not {} rows of {:?}", n, g.rows, g)
            }
            Some(g) => ((g.first * (n / g.rows)) as u128, (g.total * (n / g.rows)) as u128),
            None => (0, n as u128),
        };
        // Blocks of the mask drawn in parallel, each by a copy of the stream moved to its first
        // word: the same words, in the same places, as one sequential draw.
        let first = start + skip;
        let mut keep = vec![false; n];
        keep.par_chunks_mut(DRAW_BLOCK).enumerate().for_each(|(b, block)| {
            let mut stream = rng.clone();
            stream.set_word_pos(first + (b * DRAW_BLOCK) as u128);
            for k in block {
                *k = stream.next_u32() < threshold;
            }
        });
        rng.set_word_pos(start + advance);
        Ok(keep)
    }

    /// The stream's position (in 32-bit words), to save in a checkpoint.
    pub fn position(&self) -> u128 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).get_word_pos()
    }

    /// Moves the stream to a saved position.
    pub fn set_position(&self, position: u128) {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).set_word_pos(position);
    }
}

/// The positions of `streams` as JSON (`{"dropout_positions": ["123", ...]}`: decimal strings,
/// as a u128 does not fit a JSON number) for a checkpoint's extra state: a resumed run then draws
/// the masks an uninterrupted one would have.
pub fn stream_positions(streams: &[&SeededDropout]) -> serde_json::Value {
    let positions: Vec<String> = streams.iter().map(|d| d.position().to_string()).collect();
    serde_json::json!({ "dropout_positions": positions })
}

/// Restores what [`stream_positions`] returned; a count that differs from `streams` is an error.
pub fn restore_stream_positions(streams: &[&SeededDropout], state: &serde_json::Value) -> crate::Result<()> {
    use crate::Error;
    let positions = state.get("dropout_positions").and_then(|v| v.as_array()).cloned().unwrap_or_default();
    if positions.len() != streams.len() {
        return Err(Error::checkpoint(
            "extra.json",
            format!("{} dropout positions, the model has {} dropout layers", positions.len(), streams.len()),
        ));
    }
    for (d, p) in streams.iter().zip(positions) {
        let p: u128 = p
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::checkpoint("extra.json", format!("dropout position {p} is not a decimal integer")))?;
        d.set_position(p);
    }
    Ok(())
}

/// `x ⊙ m` with m = `scale` where kept and 0 elsewhere (a product, so a NaN input stays NaN as
/// on the tensor path); its backward is `dy ⊙ m`.
struct Masked {
    keep: Vec<bool>,
    scale: f32,
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// Mask elements drawn per parallel task.
const DRAW_BLOCK: usize = 1 << 16;

impl Masked {
    fn apply<T: KernelFloat>(&self, x: &[T]) -> Vec<T> {
        let (scale, zero) = (T::from(self.scale).unwrap_or_else(T::one), T::zero());
        let mut y = vec![zero; x.len()];
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).zip(self.keep.par_chunks(CHUNK)).for_each(|((ys, xs), ks)| {
            for ((y, &x), &k) in ys.iter_mut().zip(xs).zip(ks) {
                *y = x * if k { scale } else { zero };
            }
        });
        y
    }
}

impl CustomOp1 for Masked {
    fn name(&self) -> &'static str {
        "seeded-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        if l.shape().elem_count() != self.keep.len() {
            bail!("dropout: a mask of {} for {:?}", self.keep.len(), l.dims());
        }
        let y = with_kernel_float!(s.dtype(), "dropout", |T| <T as WithDType>::to_cpu_storage_owned(
            self.apply(contiguous_slice::<T>(s, l, "dropout")?)
        ));
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let dx = with_kernel_float!(y.dtype(), "dropout", |T| Tensor::from_vec(
            with_cpu_slice(&grad, "dropout", |g: &[T]| self.apply(g))?,
            y.dims(),
            y.device(),
        )?);
        Ok(Some(dx))
    }
}
