//! ResNet-18/34/50 (He et al. 2016, "Deep Residual Learning for Image Recognition",
//! arXiv:1512.03385), trainable, with torchvision's variable names so that torchvision and timm
//! weights load as saved. BatchNorm trains on batch statistics; the ImageNet stem's 3x3 stride-2
//! max pool has a backward (candle's own refuses kernel != stride). The classifier (`fc`) is left
//! out: this is an encoder, and its output is the pooled feature.
//!
//! It runs channels-last inside (the images are permuted once): every convolution with its
//! BatchNorm is one fused [`ConvBn`], and each block ends in one fused `relu(h + identity)`.

use crate::add_relu::add_relu;
use crate::conv::{conv2d, ConvGeometry};
use crate::conv_bn::{Activation, ConvBn};
use crate::global_pool::global_average_pool;
use crate::max_pool::MaxPool2d;
use candle_core::{bail, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;
use contrastive_core::nn::batch_norm;
use serde::{Deserialize, Serialize};

/// The residual block kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockKind {
    /// Two 3x3 convolutions (ResNet-18, -34).
    Basic,
    /// 1x1, 3x3, 1x1 with a 4x wider output (ResNet-50 and deeper); stride on the 3x3, as
    /// torchvision does (ResNet v1.5).
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// The first layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stem {
    /// 7x7 stride-2 convolution and 3x3 stride-2 max pool: for 224x224 images.
    ImageNet,
    /// 3x3 stride-1 convolution, no pooling: for 32x32 images (SimCLR's CIFAR variant).
    Cifar,
}

/// Shape of a [`ResNet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Block kind.
    pub block: BlockKind,
    /// Blocks in each of the four stages.
    pub layers: [usize; 4],
    /// Stem.
    pub stem: Stem,
    /// Input channels.
    pub in_channels: usize,
}

impl ResNetConfig {
    /// ResNet-18.
    pub fn resnet18(stem: Stem) -> Self {
        Self { block: BlockKind::Basic, layers: [2, 2, 2, 2], stem, in_channels: 3 }
    }
    /// ResNet-34.
    pub fn resnet34(stem: Stem) -> Self {
        Self { block: BlockKind::Basic, layers: [3, 4, 6, 3], stem, in_channels: 3 }
    }
    /// ResNet-50.
    pub fn resnet50(stem: Stem) -> Self {
        Self { block: BlockKind::Bottleneck, layers: [3, 4, 6, 3], stem, in_channels: 3 }
    }
    /// Width of the pooled output: 512 (Basic) or 2048 (Bottleneck).
    pub fn dim(&self) -> usize {
        512 * self.block.expansion()
    }
}

#[derive(Clone, Debug)]
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn new(kind: BlockKind, cin: usize, planes: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let g = |i, o, k, s| ConvGeometry { in_channels: i, out_channels: o, kernel: k, stride: s, padding: k / 2 };
        let out = planes * kind.expansion();
        let shapes = match kind {
            BlockKind::Basic => vec![g(cin, planes, 3, stride), g(planes, planes, 3, 1)],
            BlockKind::Bottleneck => vec![g(cin, planes, 1, 1), g(planes, planes, 3, stride), g(planes, out, 1, 1)],
        };
        let mut convs = Vec::new();
        let last = shapes.len() - 1;
        for (i, geometry) in shapes.into_iter().enumerate() {
            let conv = conv2d(geometry, false, vb.pp(format!("conv{}", i + 1)))?;
            let bn = batch_norm(geometry.out_channels, vb.pp(format!("bn{}", i + 1)))?;
            // The last BatchNorm's ReLU comes after the residual sum.
            convs.push(ConvBn::new(conv, bn, if i < last { Activation::Relu } else { Activation::Identity }));
        }
        let downsample = if stride != 1 || cin != out {
            let vb = vb.pp("downsample");
            let (conv, bn) = (conv2d(g(cin, out, 1, stride), false, vb.pp("0"))?, batch_norm(out, vb.pp("1"))?);
            Some(ConvBn::new(conv, bn, Activation::Identity))
        } else {
            None
        };
        Ok(Self { convs, downsample })
    }

    /// Channels-last (N, H, W, C) in and out.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.convs {
            h = layer.forward_t(&h, train)?;
        }
        let identity = match &self.downsample {
            Some(layer) => layer.forward_t(x, train)?,
            None => x.clone(),
        };
        add_relu(&h, &identity)
    }
}

/// A ResNet encoder: stem, four stages, global average pool.
#[derive(Clone, Debug)]
pub struct ResNet {
    stem: ConvBn,
    pool: Option<MaxPool2d>,
    blocks: Vec<Block>,
    dim: usize,
}

impl ResNet {
    /// Builds the network under `vb` with torchvision's names (`conv1`, `bn1`, `layer1.0.conv1`, ...).
    pub fn new(config: &ResNetConfig, vb: VarBuilder) -> contrastive_core::Result<Self> {
        if config.in_channels == 0 || config.layers.contains(&0) {
            return Err(contrastive_core::Error::config(
                "resnet",
                "channels and every stage's block count must be positive",
            ));
        }
        let (kernel, stride, pool) = match config.stem {
            Stem::ImageNet => (7, 2, Some(MaxPool2d { kernel: 3, stride: 2, padding: 1 })),
            Stem::Cifar => (3, 1, None),
        };
        let geometry =
            ConvGeometry { in_channels: config.in_channels, out_channels: 64, kernel, stride, padding: kernel / 2 };
        let stem =
            ConvBn::new(conv2d(geometry, false, vb.pp("conv1"))?, batch_norm(64, vb.pp("bn1"))?, Activation::Relu);
        let mut blocks = Vec::new();
        let mut cin = 64;
        for (stage, &count) in config.layers.iter().enumerate() {
            let planes = 64 << stage;
            for b in 0..count {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                blocks.push(Block::new(config.block, cin, planes, stride, vb.pp(format!("layer{}.{b}", stage + 1)))?);
                cin = planes * config.block.expansion();
            }
        }
        Ok(Self { stem, pool, blocks, dim: cin })
    }

    /// Width of the output features.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

impl ModuleT for ResNet {
    /// (N, C, H, W) to (N, dim).
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if x.rank() != 4 {
            bail!("ResNet: expects images (N, C, H, W), got {:?}", x.dims());
        }
        let mut h = self.stem.forward_t(&x.permute((0, 2, 3, 1))?.contiguous()?, train)?;
        if let Some(pool) = &self.pool {
            h = pool.forward_channels_last(&h)?;
        }
        for block in &self.blocks {
            h = block.forward_t(&h, train)?;
        }
        global_average_pool(&h)
    }
}
