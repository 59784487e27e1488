//! Labelled images held in memory as f32 in [0, 1], channel-first.

use contrastive_core::data::Dataset;
use contrastive_core::{Error, Result};

/// One image: `channels` x `height` x `width` f32 values in [0, 1], channel-first.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `channels * height * width` values, channel-first.
    pub data: Vec<f32>,
}

impl Image {
    /// An image from channel-first data; the length must match the shape.
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != channels * height * width {
            return Err(Error::shape(
                "image data",
                format!("({}) for {channels} x {height} x {width}", channels * height * width),
                &[data.len()],
            ));
        }
        Ok(Self { channels, height, width, data })
    }
}

/// Same-sized labelled images in one buffer (the MNIST family, the UCI digits).
#[derive(Clone, Debug, PartialEq)]
pub struct InMemoryImages {
    /// Channels of every image.
    pub channels: usize,
    /// Height of every image.
    pub height: usize,
    /// Width of every image.
    pub width: usize,
    /// All images, `len * channels * height * width` values in [0, 1].
    pub pixels: Vec<f32>,
    /// One label per image.
    pub labels: Vec<u32>,
}

impl InMemoryImages {
    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Number of classes (largest label + 1).
    pub fn classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |&m| m as usize + 1)
    }

    /// The first `n` images (all of them when there are fewer), for short runs.
    pub fn head(&self, n: usize) -> Self {
        let n = n.min(self.labels.len());
        Self { pixels: self.pixels[..n * self.image_len()].to_vec(), labels: self.labels[..n].to_vec(), ..*self }
    }

    /// The images at `indices`, as a new set (a train/test split, a subset).
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        let len = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * len);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.labels.len() {
                return Err(Error::index("images", i, self.labels.len()));
            }
            pixels.extend_from_slice(&self.pixels[i * len..(i + 1) * len]);
            labels.push(self.labels[i]);
        }
        Ok(Self { pixels, labels, ..*self })
    }
}

impl Dataset for InMemoryImages {
    type Item = (Image, u32);

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn get(&self, index: usize) -> Result<(Image, u32)> {
        let len = self.image_len();
        let data = self
            .pixels
            .as_slice()
            .get(index * len..(index + 1) * len)
            .ok_or_else(|| Error::index("images", index, self.labels.len()))?;
        Ok((
            Image { channels: self.channels, height: self.height, width: self.width, data: data.to_vec() },
            self.labels[index],
        ))
    }
}
