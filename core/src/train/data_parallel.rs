//! What the trainer exchanges between processes when it has a [`Collective`] of several: the
//! parameters from rank 0 at the start, and every step the gradients' average.

use crate::collective::Collective;
use crate::error::Result;
use crate::nn::ParamStore;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// Values per all-reduce call: gradients travel in buckets of at most this many (16 MB), so no
/// one buffer doubles the model's memory.
const BUCKET_VALUES: usize = 4 << 20;

/// Gives every process rank 0's values of every variable (parameters and buffers).
pub fn broadcast_params(params: &ParamStore, collective: &dyn Collective) -> Result<()> {
    for (_, var) in params.all() {
        let mut values = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        collective.broadcast(&mut values, 0)?;
        var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
    }
    Ok(())
}

/// Replaces each variable's gradient by its average over the processes (a variable no process
/// has a gradient for keeps none; one that only some have counts as zero elsewhere), and
/// `shared` (the loss, the stop request) by its sum, in the same exchange.
pub fn average_gradients(
    grads: &mut GradStore,
    vars: &[Var],
    shared: &mut [f32],
    collective: &dyn Collective,
) -> Result<()> {
    let world = collective.world_size() as f32;
    // One flag per variable (whether this process has its gradient), then `shared`, then the
    // gradients in variable order; the buffer is cut into buckets along the way.
    let mut head: Vec<f32> = vars.iter().map(|v| f32::from(grads.get(v.as_tensor()).is_some())).collect();
    head.extend_from_slice(shared);
    collective.all_reduce_sum(&mut head)?;
    shared.copy_from_slice(&head[vars.len()..]);
    let mut bucket: Vec<f32> = Vec::with_capacity(BUCKET_VALUES);
    let mut pending: Vec<&Var> = vec![];
    let flush = |bucket: &mut Vec<f32>, pending: &mut Vec<&Var>, grads: &mut GradStore| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        collective.all_reduce_sum(bucket)?;
        let mut at = 0;
        for var in pending.drain(..) {
            let n = var.elem_count();
            let mean: Vec<f32> = bucket[at..at + n].iter().map(|g| g / world).collect();
            grads.insert(var.as_tensor(), Tensor::from_vec(mean, var.shape(), var.device())?);
            at += n;
        }
        bucket.clear();
        Ok(())
    };
    for (var, &present) in vars.iter().zip(&head) {
        if present == 0.0 {
            continue;
        }
        if !bucket.is_empty() && bucket.len() + var.elem_count() > BUCKET_VALUES {
            flush(&mut bucket, &mut pending, grads)?;
        }
        match grads.get(var.as_tensor()) {
            Some(g) => bucket.extend(g.flatten_all()?.to_vec1::<f32>()?),
            None => bucket.extend(std::iter::repeat_n(0.0, var.elem_count())),
        }
        pending.push(var);
    }
    flush(&mut bucket, &mut pending, grads)
}
