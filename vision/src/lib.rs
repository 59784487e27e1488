//! # contrastive-vision
//!
//! Contrastive learning on images. In this crate so far: the readers.
//!
//! - [`load_idx`], [`load_idx_folder`]: the IDX files of the MNIST family (raw or gzipped).
//! - [`load_pixel_csv`]: CSV rows of pixels and a label (the UCI digits).
//! - [`ImageFolder`]: one folder per class, PNG and JPEG decoded lazily, grayscale or RGB.
//!
//! Every reader yields images as channel-first f32 in [0, 1] and implements
//! `contrastive_core::data::Dataset`, so the core loader can augment and batch them.

mod idx;
mod image_folder;
mod images;
mod pixel_csv;

pub use idx::{load_idx, load_idx_folder, read_idx_images, read_idx_labels};
pub use image_folder::{ColorMode, ImageFolder, Unreadable};
pub use images::{Image, InMemoryImages};
pub use pixel_csv::{load_pixel_csv, parse_pixel_csv};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
