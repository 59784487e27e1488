//! Dropout whose masks come from our own seeded stream (candle's CPU random numbers cannot be
//! seeded, so `candle_nn::ops::dropout` never repeats).

use crate::collective::GlobalRows;
use crate::rng::{named_rng, Rng};
use candle_core::{bail, Result, Tensor};
use rand::RngCore as _;
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

    /// Applies dropout when `train` is true.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.p;
        let n = x.elem_count();
        // Kept when a uniform 32-bit word falls below keep * 2^32: one word per element.
        let threshold = (keep * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
        let scale = (1.0 / keep) as f32;
        let rows = GLOBAL_ROWS.with(|g| g.get());
        let mask: Vec<f32> = {
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
            rng.set_word_pos(start + skip);
            let mask = (0..n).map(|_| if rng.next_u32() < threshold { scale } else { 0.0 }).collect();
            rng.set_word_pos(start + advance);
            mask
        };
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x * mask
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
