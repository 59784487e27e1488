//! Trainable building blocks that candle-nn lacks or gets wrong for training: a LayerNorm with
//! gradients, seeded dropout and initialisation, the projection head, momentum updates, and a
//! gradient-flow check.

pub mod cpu;
mod dropout;
mod gradient_check;
mod layer_norm;
mod momentum;
mod params;
mod projection_head;

pub use dropout::SeededDropout;
pub use gradient_check::check_gradients;
pub use layer_norm::{layer_norm, LayerNorm};
pub use momentum::{copy_params, cosine_momentum, momentum_update};
pub use params::{is_buffer, InitScheme, ParamStore};
pub use projection_head::{ProjectionHead, ProjectionHeadConfig};
