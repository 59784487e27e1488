//! # contrastive-vision
//!
//! Contrastive learning on images.
//!
//! - Readers: [`load_idx`], [`load_idx_folder`] (the MNIST family, raw or gzipped),
//!   [`load_pixel_csv`] (CSV rows of pixels and a label, such as the UCI digits), [`ImageFolder`]
//!   (one folder per class, PNG and JPEG decoded lazily, grayscale or RGB). Every reader yields
//!   channel-first f32 images in [0, 1] and implements `contrastive_core::data::Dataset`.
//! - [`augment`]: RandomResizedCrop, flip, ColorJitter, grayscale, Gaussian blur, solarize and
//!   normalise with torchvision's semantics, per sample from a seeded stream, and the SimCLR and
//!   MoCo v2 recipes as presets ([`augment::ViewAugmentation`]).
//! - Encoders: [`ConvNet`] (small, for 8x8 to 32x32 inputs) and [`ResNet`] (18/34/50, CIFAR or
//!   ImageNet stem, torchvision's names), built on a [`Conv2d`] (channels-first or channels-last)
//!   and core's [`BatchNorm`] (a fused CPU kernel in training), fused with the convolution as one [`ConvBn`] op per
//!   layer in training, and a [`MaxPool2d`] that trains with any stride. Both encoders take (N, C,
//!   H, W) images and run channels-last inside. Weights saved by torchvision or timm load with
//!   [`load_encoder_weights`].
//! - Methods: [`SimClr`] and [`MoCo`] (v2), objectives for the core `Trainer`, fed by the core
//!   loader through [`CollateViews`].

mod add_relu;
pub mod augment;
mod batch;
mod conv;
mod conv_bn;
mod convnet;
mod data;
mod embed;
mod encoder;
mod global_pool;
mod max_pool;
mod moco;
mod resnet;
mod simclr;
mod unfold;
mod vit;
mod weights;
mod winograd;

pub use add_relu::add_relu;
pub use batch::{stack_images, CollateViews, CropBatch, ViewBatch};
pub use contrastive_core::nn::{batch_norm, BatchNorm};
pub use conv::{conv2d, conv2d_forward, conv2d_forward_channels_last, Conv2d, ConvGeometry};
pub use conv_bn::{Activation, ConvBn};
pub use convnet::{ConvNet, ConvNetConfig};
pub use data::{
    load_idx, load_idx_folder, load_pixel_csv, parse_pixel_csv, read_idx_images, read_idx_labels, uci_digits,
    ColorMode, Image, ImageFolder, ImageSet, ImageSplit, InMemoryImages, Resized, Unreadable,
};
pub use embed::ImageEmbedder;
pub use encoder::{Encoder, EncoderConfig};
pub use max_pool::MaxPool2d;
pub use moco::{MoCo, MoCoConfig, MoCoSettings};
pub use resnet::{BlockKind, ResNet, ResNetConfig, Stem};
pub use simclr::{SimClr, SimClrConfig};
pub use vit::{antialiased_bicubic_weights, resample_position_embeddings, Vit, VitConfig};
pub use weights::{load_encoder_weights, LoadReport};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
