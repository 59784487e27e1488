//! Which path the workspace's custom ops take: the fused CPU kernels, or the device-generic path
//! written with candle's tensor ops (which candle runs on CUDA and Metal too). The kernels run
//! only on CPU tensors of f32 or f64, and only while the generic path is not forced: by
//! `CONTRASTIVE_GENERIC_OPS=1` in the environment (read once), by [`set_generic_ops`] for the
//! whole process, or by [`with_generic_ops`] for one closure on the calling thread (what tests
//! comparing the two paths use, so that other tests running beside them are not switched).

use candle_core::{DType, Device, Result, Tensor, Var};
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

/// The path a custom op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpPath {
    /// The fused CPU kernels (CPU tensors of f32 or f64).
    Kernels,
    /// candle's tensor ops, on any device.
    Generic,
}

impl OpPath {
    /// `"kernels"` or `"generic"`, as the examples' JSON reports it.
    pub fn name(self) -> &'static str {
        match self {
            OpPath::Kernels => "kernels",
            OpPath::Generic => "generic",
        }
    }

    /// The path ops on `device` take now: generic off the CPU or while forced.
    pub fn on(device: &Device) -> Self {
        if matches!(device, Device::Cpu) && !generic_ops_forced() {
            OpPath::Kernels
        } else {
            OpPath::Generic
        }
    }
}

/// 0: not yet read from the environment; 1: kernels allowed; 2: generic forced.
static PROCESS: AtomicU8 = AtomicU8::new(0);

thread_local! {
    static SCOPED: Cell<Option<bool>> = const { Cell::new(None) };
}

/// The environment variable that forces the generic path when set to `1`.
pub const GENERIC_OPS_ENV: &str = "CONTRASTIVE_GENERIC_OPS";

/// Forces the generic path for the whole process (`true`), or allows the kernels again (`false`),
/// whatever the environment said.
pub fn set_generic_ops(generic: bool) {
    PROCESS.store(if generic { 2 } else { 1 }, Ordering::Relaxed);
}

/// Runs `f` with the generic path forced (`true`) or the kernels allowed (`false`) on this thread
/// only; the setting before is restored after, even if `f` panics. The decision is taken where an
/// op is called and where its backward runs, so run both inside `f`.
pub fn with_generic_ops<R>(generic: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<bool>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPED.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SCOPED.with(|s| s.replace(Some(generic))));
    f()
}

/// Whether the generic path is forced here: by [`with_generic_ops`] on this thread, else by
/// [`set_generic_ops`], else by `CONTRASTIVE_GENERIC_OPS=1`.
pub fn generic_ops_forced() -> bool {
    if let Some(scoped) = SCOPED.with(Cell::get) {
        return scoped;
    }
    match PROCESS.load(Ordering::Relaxed) {
        0 => {
            let forced = std::env::var(GENERIC_OPS_ENV).is_ok_and(|v| v == "1");
            // Another thread may have set it meanwhile: only the unread state is replaced.
            let _ = PROCESS.compare_exchange(0, if forced { 2 } else { 1 }, Ordering::Relaxed, Ordering::Relaxed);
            PROCESS.load(Ordering::Relaxed) == 2
        }
        state => state == 2,
    }
}

/// Whether a custom op runs its fused CPU kernel on `x` (and on the other operands, of the same
/// dtype): a CPU tensor of f32 or f64, the generic path not forced.
pub fn runs_kernel(x: &Tensor) -> bool {
    matches!(x.dtype(), DType::F32 | DType::F64) && OpPath::on(x.device()) == OpPath::Kernels
}

/// How far an op's two paths are apart: `f(generic)` runs once with the kernels and once with the
/// generic path forced on this thread (the flag lets `f` pick a separate copy of a stateful
/// layer); returns the largest absolute difference of the outputs and, for each of `vars`, of
/// the gradients of a weighted sum of the output (weights sin(0), sin(1), ..., so every entry
/// counts). For testing an op's generic path against its kernel.
pub fn path_differences(vars: &[&Var], f: impl Fn(bool) -> Result<Tensor>) -> Result<(f64, Vec<f64>)> {
    let run = |generic: bool| -> Result<(Tensor, Vec<Tensor>)> {
        with_generic_ops(generic, || {
            let y = f(generic)?;
            let weights = Tensor::arange(0.0, y.elem_count() as f64, y.device())?.sin()?.reshape(y.shape())?;
            let grads = (&y * weights.to_dtype(y.dtype())?)?.sum_all()?.backward()?;
            let g = vars
                .iter()
                .map(|v| {
                    grads
                        .get(v.as_tensor())
                        .cloned()
                        .ok_or_else(|| candle_core::Error::Msg("no gradient reached a variable".into()))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((y, g))
        })
    };
    let max_diff = |a: &Tensor, b: &Tensor| -> Result<f64> {
        (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()
    };
    let ((y1, g1), (y2, g2)) = (run(false)?, run(true)?);
    let grads = g1.iter().zip(&g2).map(|(a, b)| max_diff(a, b)).collect::<Result<Vec<_>>>()?;
    Ok((max_diff(&y1, &y2)?, grads))
}
