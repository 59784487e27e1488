//! Dropout whose masks come from our own seeded stream (candle's CPU random numbers cannot be
//! seeded, so `candle_nn::ops::dropout` never repeats).

use crate::rng::{named_rng, Rng};
use candle_core::{bail, Result, Tensor};
use rand::RngCore as _;
use std::sync::Mutex;

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
        let mask: Vec<f32> = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..n).map(|_| if rng.next_u32() < threshold { scale } else { 0.0 }).collect()
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
