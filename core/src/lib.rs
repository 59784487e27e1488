//! # contrastive-core
//!
//! The mathematics and machinery shared by every method of the `contrastive` workspace:
//!
//! - [`similarity`]: cosine and dot similarity matrices, whole or block by block, and top-k.
//! - [`sampling`]: which pairs are positives and negatives ([`sampling::PairMask`]), in-batch and
//!   supervised layouts, hard-negative mining, MoCo's memory queue.
//! - [`loss`]: the InfoNCE family written once as a masked InfoNCE, with a fused CPU kernel.
//! - [`cross_modal`]: CLIP-style training of any two encoders ([`Backbone`]s) to agree.
//! - [`grad_cache`]: in-batch losses over batches larger than memory (gradient caching).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use contrastive_core::loss::{nt_xent, info_nce};
//! use contrastive_core::sampling::MemoryQueue;
//!
//! let dev = Device::Cpu;
//! // Two views of 4 samples, 8-dimensional (in practice: encoder outputs).
//! let z1 = Tensor::new(&[[1f32, 0., 0., 0., 0., 0., 0., 0.], [0., 1., 0., 0., 0., 0., 0., 0.],
//!                        [0., 0., 1., 0., 0., 0., 0., 0.], [0., 0., 0., 1., 0., 0., 0., 0.]], &dev)?;
//! let z2 = (&z1 + 0.1)?;
//! let simclr = nt_xent(&z1, &z2, 0.5)?;
//!
//! // MoCo: queries against their keys plus a queue of earlier keys.
//! let mut queue = MemoryQueue::new(16, 8)?;
//! queue.enqueue(&z2)?;
//! let moco = info_nce(&z1, &z2, queue.keys(), 0.2)?;
//! assert!(simclr.to_scalar::<f32>()? < (7f32).ln() && moco.to_scalar::<f32>()? > 0.0);
//! # Ok::<(), candle_core::Error>(())
//! ```

#[cfg(feature = "mimalloc")]
pub mod alloc;
pub mod atomic;
pub mod augment;
mod backbone;
pub mod candle_pool;
pub mod collapse;
pub mod collective;
pub mod cross_modal;
pub mod data;
pub mod device;
pub mod embed;
pub mod error;
pub mod grad_cache;
#[cfg(feature = "hub")]
pub mod hub;
mod json_file;
pub mod kernel;
pub mod loss;
pub mod methods;
pub mod nn;
pub mod optim;
pub mod rng;
pub mod sampling;
pub mod similarity;
pub mod train;

pub use backbone::Backbone;
pub use embed::{embed, embed_each, Embed};
pub use error::{Error, Result};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
