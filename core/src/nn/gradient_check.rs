//! A check that training actually reaches every parameter: a custom op without a backward, or a
//! fused op such as candle-nn's LayerNorm, silently cuts the graph.

use super::params::ParamStore;
use candle_core::backprop::GradStore;
use candle_core::{bail, DType, Result};

/// Fails, naming the variables, unless every trainable variable of `store` received a finite
/// gradient with at least one non-zero entry.
pub fn check_gradients(store: &ParamStore, grads: &GradStore) -> Result<()> {
    let mut missing = Vec::new();
    let mut non_finite = Vec::new();
    let mut zero = Vec::new();
    for (name, var) in store.trainable() {
        let Some(g) = grads.get(var.as_tensor()) else {
            missing.push(name);
            continue;
        };
        let values = g.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        if values.iter().any(|v| !v.is_finite()) {
            non_finite.push(name);
        } else if values.iter().all(|&v| v == 0.0) {
            zero.push(name);
        }
    }
    if missing.is_empty() && non_finite.is_empty() && zero.is_empty() {
        return Ok(());
    }
    bail!("gradient check failed: no gradient for {missing:?}; non-finite for {non_finite:?}; all zero for {zero:?}")
}
