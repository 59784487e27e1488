//! Trainable building blocks that candle-nn lacks or gets wrong for training: a LayerNorm with
//! gradients, a linear layer, an exact GELU, a softmax, multi-head attention and a residual `relu(a + b)` with fast fused backwards, seeded dropout and initialisation, the projection head, momentum updates and target networks, and a
//! gradient-flow check.

mod attention;
mod batch_norm;
pub mod batch_norm_kernel;
mod batch_norm_moments;
mod dropout;
pub(crate) mod gelu;
mod gradient_check;
mod layer_norm;
mod linear;
mod momentum;
mod params;
mod projection_head;
mod softmax;
mod target_network;

pub use attention::{multi_head_attention, multi_head_attention_with_position_bias};
pub use batch_norm::{batch_norm, batch_statistics, uses_running_statistics, with_running_statistics, BatchNorm};
pub use dropout::{in_global_batch, restore_stream_positions, stream_positions, SeededDropout};
pub use gelu::gelu_erf;
pub use gradient_check::check_gradients;
pub use layer_norm::{layer_norm, LayerNorm};
pub use linear::{linear, linear_no_bias, Linear};
pub use momentum::{copy_params, cosine_momentum, momentum_update};
pub use params::{check_finite, is_buffer, InitScheme, ParamStore};
pub use projection_head::{ProjectionHead, ProjectionHeadConfig};
pub use softmax::softmax_last_dim;
pub use target_network::{Momentum, TargetNetwork};
