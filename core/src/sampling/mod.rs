//! Which pairs a loss pulls together and which it pushes apart.
//!
//! A [`PairMask`] marks every (anchor, candidate) pair as positive, negative or neither. The
//! samplers build one: in-batch ([`PairMask::cross_view`], [`PairMask::joint`]), supervised
//! ([`PairMask::supervised`]), extended by a [`MemoryQueue`]
//! ([`PairMask::with_extra_negatives`], [`PairMask::with_labeled_candidates`]) and narrowed by a
//! [`HardNegativeMiner`].

mod hard_negatives;
mod mask;
mod queue;

pub use hard_negatives::HardNegativeMiner;
pub(crate) use mask::RowMask;
pub use mask::{labels_to_vec, PairMask, SameLabel};
pub use queue::MemoryQueue;
