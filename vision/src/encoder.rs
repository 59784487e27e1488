//! The image encoders as one closed set, so that methods and examples can take either.

use crate::convnet::{ConvNet, ConvNetConfig};
use crate::resnet::{ResNet, ResNetConfig};
use crate::vit::{Vit, VitConfig};
use candle_core::{ModuleT, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// Which encoder, and its shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EncoderConfig {
    /// The small ConvNet (8x8 to 32x32 inputs).
    ConvNet(ConvNetConfig),
    /// A ResNet.
    ResNet(ResNetConfig),
    /// A Vision Transformer.
    Vit(VitConfig),
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig::ConvNet(ConvNetConfig::default())
    }
}

impl EncoderConfig {
    /// Width of the features the encoder will output.
    pub fn dim(&self) -> usize {
        match self {
            EncoderConfig::ConvNet(c) => c.widths.last().copied().unwrap_or(0),
            EncoderConfig::ResNet(c) => c.dim(),
            EncoderConfig::Vit(c) => c.dim,
        }
    }
}

/// An image encoder: images (N, C, H, W) to features (N, dim).
#[derive(Clone, Debug)]
pub enum Encoder {
    /// See [`ConvNet`].
    ConvNet(ConvNet),
    /// See [`ResNet`].
    ResNet(ResNet),
    /// See [`Vit`].
    Vit(Vit),
}

impl Encoder {
    /// Builds the encoder under `vb`.
    pub fn new(config: &EncoderConfig, vb: VarBuilder) -> contrastive_core::Result<Self> {
        Ok(match config {
            EncoderConfig::ConvNet(c) => Encoder::ConvNet(ConvNet::new(c, vb)?),
            EncoderConfig::ResNet(c) => Encoder::ResNet(ResNet::new(c, vb)?),
            EncoderConfig::Vit(c) => Encoder::Vit(Vit::new(c, vb, c.seed)?),
        })
    }

    /// Width of the features.
    pub fn dim(&self) -> usize {
        match self {
            Encoder::ConvNet(e) => e.dim(),
            Encoder::ResNet(e) => e.dim(),
            Encoder::Vit(e) => e.dim(),
        }
    }
}

impl contrastive_core::Backbone for Encoder {
    type Input = Tensor;
    fn encode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_t(x, train)
    }
    fn dim(&self) -> usize {
        Encoder::dim(self)
    }

    /// A ViT's drop path streams' positions (none for the convolutional encoders).
    fn extra_state(&self) -> contrastive_core::Result<contrastive_core::train::ExtraState> {
        Ok(match self {
            Encoder::Vit(v) => contrastive_core::train::ExtraState {
                json: contrastive_core::nn::stream_positions(&v.drop_paths()),
                ..Default::default()
            },
            _ => Default::default(),
        })
    }

    fn load_extra_state(&mut self, state: contrastive_core::train::ExtraState) -> contrastive_core::Result<()> {
        match self {
            Encoder::Vit(v) if !state.json.is_null() => {
                contrastive_core::nn::restore_stream_positions(&v.drop_paths(), &state.json)
            }
            _ => Ok(()),
        }
    }
}

impl ModuleT for Encoder {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Encoder::ConvNet(e) => e.forward_t(x, train),
            Encoder::ResNet(e) => e.forward_t(x, train),
            Encoder::Vit(e) => e.forward_t(x, train),
        }
    }
}
