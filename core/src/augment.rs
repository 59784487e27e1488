//! Random transformations of one sample, each drawing from an explicit seeded stream.

use crate::error::Result;
use rand::{Rng as _, RngCore};

/// A random transformation of a sample of type `T`.
pub trait Augment<T>: Send + Sync {
    /// Transforms `x`, drawing every random choice from `rng`.
    fn apply(&self, x: T, rng: &mut dyn RngCore) -> Result<T>;
}

impl<T, F> Augment<T> for F
where
    F: Fn(T, &mut dyn RngCore) -> Result<T> + Send + Sync,
{
    fn apply(&self, x: T, rng: &mut dyn RngCore) -> Result<T> {
        self(x, rng)
    }
}

/// Leaves the sample as it is: the views of a method whose randomness is in the model, as
/// SimCSE's two passes through dropout.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl<T> Augment<T> for Identity {
    fn apply(&self, x: T, _: &mut dyn RngCore) -> Result<T> {
        Ok(x)
    }
}

/// Applies each augmentation in turn.
pub struct Compose<T>(pub Vec<Box<dyn Augment<T>>>);

impl<T> Augment<T> for Compose<T> {
    fn apply(&self, mut x: T, rng: &mut dyn RngCore) -> Result<T> {
        for a in &self.0 {
            x = a.apply(x, rng)?;
        }
        Ok(x)
    }
}

/// Applies the inner augmentation with probability `p` (torchvision's RandomApply).
pub struct RandomApply<T> {
    /// Probability of applying it.
    pub p: f64,
    /// The augmentation.
    pub inner: Box<dyn Augment<T>>,
}

impl<T> Augment<T> for RandomApply<T> {
    fn apply(&self, x: T, rng: &mut dyn RngCore) -> Result<T> {
        // The draw happens whatever p is, so that p does not shift later draws.
        let u: f64 = rng.random();
        if u < self.p {
            self.inner.apply(x, rng)
        } else {
            Ok(x)
        }
    }
}

/// Applies one of the augmentations, chosen uniformly (GraphCL's random augmentation).
pub struct RandomChoice<T>(pub Vec<Box<dyn Augment<T>>>);

impl<T> Augment<T> for RandomChoice<T> {
    fn apply(&self, x: T, rng: &mut dyn RngCore) -> Result<T> {
        if self.0.is_empty() {
            return Ok(x);
        }
        let i = rng.random_range(0..self.0.len());
        self.0[i].apply(x, rng)
    }
}
