//! What a method needs of an encoder, for every modality: what it reads (`Input`: an image
//! tensor, a graph batch, token ids), a forward pass with a train flag, and how wide its output
//! is. Methods build it under their own `VarBuilder`, so its variables are in the method's
//! [`crate::nn::ParamStore`]: trained, checkpointed and resumed with the rest. SimCLR, MoCo,
//! SimCSE, GraphCL and both towers of CLIP are generic over it.
//!
//! ```
//! use candle_core::{Module, Result, Tensor};
//! use contrastive_core::Backbone;
//!
//! /// A user's own encoder: one linear layer and a ReLU over flattened inputs.
//! struct Mine(candle_nn::Linear);
//!
//! impl Backbone for Mine {
//!     type Input = Tensor;
//!     fn encode(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
//!         self.0.forward(&x.flatten_from(1)?)?.relu()
//!     }
//!     fn dim(&self) -> usize {
//!         self.0.weight().dims()[0]
//!     }
//! }
//! ```

use crate::error::Result;
use crate::train::ExtraState;
use candle_core::Tensor;

/// An encoder a method can train: a batch of `Input` to representations (N, [`Backbone::dim`]).
pub trait Backbone {
    /// What it reads: (N, C, H, W) images as a tensor, a batch of graphs, token ids and masks.
    type Input;

    /// Representations (N, dim); dropout, batch statistics and the like on when `train`.
    fn encode(&self, input: &Self::Input, train: bool) -> candle_core::Result<Tensor>;

    /// [`Backbone::encode`]'s representations, the same values (the same dropout masks), cut
    /// from the graph of their computation: gradient caching's first pass. A backbone that can
    /// free its activations as it goes (cutting each layer's output) overrides it; the default
    /// cuts the result, once the whole graph was built.
    fn encode_without_graph(&self, input: &Self::Input, train: bool) -> candle_core::Result<Tensor> {
        Ok(self.encode(input, train)?.detach())
    }

    /// Width of the representation.
    fn dim(&self) -> usize;

    /// What the backbone is, saved beside every checkpoint and compared on resume (a resume with
    /// another architecture is refused, naming the field). Default: nothing to compare.
    fn describe(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// State beyond the parameters that an exact resume needs (a dropout stream's position).
    fn extra_state(&self) -> Result<ExtraState> {
        Ok(ExtraState::default())
    }

    /// Restores what [`Backbone::extra_state`] returned.
    fn load_extra_state(&mut self, _state: ExtraState) -> Result<()> {
        Ok(())
    }
}
