//! What a method needs of an encoder: any candle model with a train flag (`ModuleT`) that says
//! how wide its output is. Methods build it under their own `VarBuilder`, so its variables are
//! in the method's [`crate::nn::ParamStore`]: trained, checkpointed and resumed with the rest.
//!
//! ```
//! use candle_core::{ModuleT, Result, Tensor};
//! use contrastive_core::Backbone;
//!
//! /// A user's own encoder: one linear layer and a ReLU.
//! struct Mine(candle_nn::Linear);
//!
//! impl ModuleT for Mine {
//!     fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
//!         candle_core::Module::forward(&self.0, &x.flatten_from(1)?)?.relu()
//!     }
//! }
//!
//! impl Backbone for Mine {
//!     fn dim(&self) -> usize {
//!         self.0.weight().dims()[0]
//!     }
//! }
//! ```

use candle_core::ModuleT;

/// An encoder a method can train: inputs (N, ...) to representations (N, [`Backbone::dim`]).
pub trait Backbone: ModuleT {
    /// Width of the representation.
    fn dim(&self) -> usize;

    /// What the backbone is, saved beside every checkpoint and compared on resume (a resume with
    /// another architecture is refused, naming the field). Default: nothing to compare.
    fn describe(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
