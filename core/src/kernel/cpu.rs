//! Reading CPU tensors in place, for the custom ops that need their elements as slices.

use candle_core::{bail, CpuStorage, Layout, Result, Tensor, WithDType};

/// The elements of a contiguous CPU storage under `layout`; `op` names the caller in the error.
pub fn contiguous_slice<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&storage.as_slice::<T>()?[a..b]),
        None => bail!("{op}: inputs must be contiguous"),
    }
}

/// Runs `f` on the elements of a contiguous CPU tensor without copying them.
pub fn with_cpu_slice<T: WithDType, R>(t: &Tensor, op: &str, f: impl FnOnce(&[T]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => Ok(f(contiguous_slice(cpu, layout, op)?)),
        _ => bail!("{op}: runs on the CPU only"),
    }
}
