//! How one sample becomes the views a method trains on: two views by one augmentation (SimCLR,
//! MoCo, SimCSE, GraphCL), or multi-crop (DINO, SwAV: a few large "global" views and several
//! small "local" ones, each set with its own augmentation).

use crate::augment::Augment;
use crate::error::{Error, Result};
use rand::RngCore;

/// Makes the views of one sample, drawing every random choice from `rng` (the sample's own
/// stream, so views do not depend on the thread that makes them).
pub trait Views<T>: Send + Sync {
    /// The views of one sample, as the collate function receives them.
    type Out: Send;
    /// The views of sample `index`.
    fn views(&self, index: usize, item: T, rng: &mut dyn RngCore) -> Result<Self::Out>;
}

/// Two augmented views of one sample, and the sample's index in the dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewPair<T> {
    /// Dataset index of the sample.
    pub index: usize,
    /// The first view.
    pub first: T,
    /// The second view.
    pub second: T,
}

/// Two views by the same augmentation, the first drawn before the second.
#[derive(Clone, Debug)]
pub struct TwoViews<A>(pub A);

impl<T: Clone + Send, A: Augment<T>> Views<T> for TwoViews<A> {
    type Out = ViewPair<T>;
    fn views(&self, index: usize, item: T, rng: &mut dyn RngCore) -> Result<ViewPair<T>> {
        let first = self.0.apply(item.clone(), rng)?;
        let second = self.0.apply(item, rng)?;
        Ok(ViewPair { index, first, second })
    }
}

/// The views of one sample under multi-crop.
#[derive(Clone, Debug, PartialEq)]
pub struct CropSet<T> {
    /// Dataset index of the sample.
    pub index: usize,
    /// The global views (the teacher's input in DINO).
    pub global: Vec<T>,
    /// The local views (seen by the student only).
    pub local: Vec<T>,
}

/// Multi-crop (Caron et al., SwAV 2020; DINO 2021): `globals` views by `global`, then `locals`
/// views by `local`, drawn in that order.
#[derive(Clone, Debug)]
pub struct MultiCrop<G, L> {
    /// The augmentation of a global view (a large crop).
    pub global: G,
    /// The augmentation of a local view (a small crop).
    pub local: L,
    /// Number of global views (DINO: 2).
    pub globals: usize,
    /// Number of local views (DINO: 6 to 10; 0 is two-view training).
    pub locals: usize,
}

impl<G, L> MultiCrop<G, L> {
    /// `globals` global and `locals` local views; at least one global view.
    pub fn new(global: G, local: L, globals: usize, locals: usize) -> Result<Self> {
        if globals == 0 {
            return Err(Error::config("multi_crop.globals", "must be at least 1"));
        }
        Ok(Self { global, local, globals, locals })
    }
}

impl<T: Clone + Send, G: Augment<T>, L: Augment<T>> Views<T> for MultiCrop<G, L> {
    type Out = CropSet<T>;
    fn views(&self, index: usize, item: T, rng: &mut dyn RngCore) -> Result<CropSet<T>> {
        let global = (0..self.globals).map(|_| self.global.apply(item.clone(), rng)).collect::<Result<_>>()?;
        let local = (0..self.locals).map(|_| self.local.apply(item.clone(), rng)).collect::<Result<_>>()?;
        Ok(CropSet { index, global, local })
    }
}
