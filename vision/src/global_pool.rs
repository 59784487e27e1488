//! Global average pooling, the last layer of every image encoder here.

use candle_core::{Result, Tensor};

/// The mean over positions of channels-last features (N, H, W, C), giving (N, C): as a batched
/// (1 x H·W)·(H·W x C) product, since candle's mean over the two middle dimensions is a strided
/// single-threaded reduction (it was 3% of a ConvNet training step).
pub(crate) fn global_average_pool(h: &Tensor) -> Result<Tensor> {
    let (n, height, width, c) = h.dims4()?;
    let p = height * width;
    let weights = (Tensor::ones((n, 1, p), h.dtype(), h.device())? / p as f64)?;
    weights.matmul(&h.reshape((n, p, c))?)?.reshape((n, c))
}
