//! A small ConvNet for 8x8 to 32x32 inputs: CPU-sized, and the encoder of the PyTorch reference
//! recipe (`bench/pytorch/simclr_fmnist_torch.py`).

use crate::conv::{conv2d, ConvGeometry};
use crate::conv_bn::{Activation, ConvBn};
use crate::global_pool::global_average_pool;
use candle_core::{bail, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;
use contrastive_core::nn::batch_norm;
use serde::{Deserialize, Serialize};

/// Shape of a [`ConvNet`]: `[Conv3x3 (no bias), BatchNorm, ReLU]` blocks, then global average
/// pooling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvNetConfig {
    /// Input channels (1 grayscale, 3 RGB).
    pub in_channels: usize,
    /// Output channels of each block.
    pub widths: Vec<usize>,
    /// Stride of each block (same length as `widths`).
    pub strides: Vec<usize>,
}

impl Default for ConvNetConfig {
    /// The reference recipe's encoder: 32, 64, 128, 256 channels at strides 1, 2, 2, 2 (about
    /// 0.39M parameters), grayscale input.
    fn default() -> Self {
        Self { in_channels: 1, widths: vec![32, 64, 128, 256], strides: vec![1, 2, 2, 2] }
    }
}

impl ConvNetConfig {
    /// Checks that there is at least one block and every width and stride is positive.
    pub fn validate(&self) -> contrastive_core::Result<()> {
        use contrastive_core::Error;
        if self.widths.is_empty() || self.widths.len() != self.strides.len() {
            return Err(Error::config(
                "convnet.widths",
                format!(
                    "needs one stride per width and at least one block, got {:?} and {:?}",
                    self.widths, self.strides
                ),
            ));
        }
        if self.in_channels == 0 || self.widths.contains(&0) || self.strides.contains(&0) {
            return Err(Error::config("convnet", "channels, widths and strides must be positive"));
        }
        Ok(())
    }
}

/// The ConvNet. Variables are named as in the PyTorch reference's `nn.Sequential`
/// (`net.{3i}.weight` for conv i, `net.{3i+1}.*` for its BatchNorm), so its weights load as saved.
#[derive(Clone, Debug)]
pub struct ConvNet {
    blocks: Vec<ConvBn>,
    dim: usize,
}

impl ConvNet {
    /// Builds the network under `vb`.
    pub fn new(config: &ConvNetConfig, vb: VarBuilder) -> contrastive_core::Result<Self> {
        config.validate()?;
        let mut blocks = Vec::new();
        let mut cin = config.in_channels;
        for (i, (&cout, &stride)) in config.widths.iter().zip(&config.strides).enumerate() {
            let geometry = ConvGeometry { in_channels: cin, out_channels: cout, kernel: 3, stride, padding: 1 };
            let conv = conv2d(geometry, false, vb.pp(format!("net.{}", 3 * i)))?;
            let bn = batch_norm(cout, vb.pp(format!("net.{}", 3 * i + 1)))?;
            blocks.push(ConvBn::new(conv, bn, Activation::Relu));
            cin = cout;
        }
        Ok(Self { blocks, dim: cin })
    }

    /// Width of the output features.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

impl ModuleT for ConvNet {
    /// (N, C, H, W) to (N, dim); BatchNorm on batch statistics when `train`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if x.rank() != 4 {
            bail!("ConvNet: expects images (N, C, H, W), got {:?}", x.dims());
        }
        // Channels-last throughout (the faster convolution), the input permuted once (a reshape
        // for grayscale).
        let mut h = x.permute((0, 2, 3, 1))?.contiguous()?;
        for block in &self.blocks {
            h = block.forward_t(&h, train)?;
        }
        global_average_pool(&h)
    }
}
