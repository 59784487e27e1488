//! An image set in its two parts, train and test, from any of the layouts people keep them in:
//! decoded into memory (IDX files) or read from disk one image at a time (folders, list files).

use crate::data::{load_idx_folder, ColorMode, Image, ImageFolder, InMemoryImages, Unreadable};
use contrastive_core::data::{stratified_split, Dataset};
use contrastive_core::{Error, Result};
use std::path::{Path, PathBuf};

/// Labelled images held in memory or read from files as they are needed.
#[derive(Clone, Debug)]
pub enum ImageSet {
    /// One buffer of same-sized images.
    Memory(InMemoryImages),
    /// Files decoded one at a time, of any sizes.
    Files(ImageFolder),
}

impl ImageSet {
    /// The label of every image (all 0 for a set without labels).
    pub fn labels(&self) -> Vec<u32> {
        match self {
            ImageSet::Memory(m) => m.labels.clone(),
            ImageSet::Files(f) => f.labels(),
        }
    }

    /// Whether the images have labels to evaluate against.
    pub fn labelled(&self) -> bool {
        match self {
            ImageSet::Memory(_) => true,
            ImageSet::Files(f) => f.labelled(),
        }
    }

    /// Channels of every image.
    pub fn channels(&self) -> usize {
        match self {
            ImageSet::Memory(m) => m.channels,
            ImageSet::Files(f) => f.mode().channels(),
        }
    }

    /// The (height, width) every image has, or `None` when files of any size are read.
    pub fn size(&self) -> Option<(usize, usize)> {
        match self {
            ImageSet::Memory(m) => Some((m.height, m.width)),
            ImageSet::Files(_) => None,
        }
    }

    /// The first `n` images.
    pub fn head(&self, n: usize) -> Self {
        match self {
            ImageSet::Memory(m) => ImageSet::Memory(m.head(n)),
            ImageSet::Files(f) => ImageSet::Files(f.head(n)),
        }
    }

    /// The images at `indices`.
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        Ok(match self {
            ImageSet::Memory(m) => ImageSet::Memory(m.select(indices)?),
            ImageSet::Files(f) => ImageSet::Files(f.select(indices)?),
        })
    }

    /// The images decoded into one buffer at `size` (the whole image resized, bilinear), or at
    /// their own size when `None` (files: the first one's).
    pub fn to_memory(&self, size: Option<(usize, usize)>) -> Result<InMemoryImages> {
        match (self, size) {
            (ImageSet::Memory(m), None) => Ok(m.clone()),
            (ImageSet::Memory(m), Some(s)) if (m.height, m.width) == s => Ok(m.clone()),
            (ImageSet::Memory(m), Some(s)) => {
                let mut pixels = Vec::with_capacity(m.labels.len() * m.channels * s.0 * s.1);
                for i in 0..m.labels.len() {
                    let (img, _) = m.get(i)?;
                    pixels.extend(crate::augment::resized_crop(&img, (0, 0, img.height, img.width), s)?.data);
                }
                Ok(InMemoryImages { height: s.0, width: s.1, pixels, ..m.clone() })
            }
            (ImageSet::Files(f), size) => f.to_memory(size),
        }
    }

    /// Files left out as unreadable so far (none for images in memory).
    pub fn skipped(&self) -> Vec<PathBuf> {
        match self {
            ImageSet::Memory(_) => Vec::new(),
            ImageSet::Files(f) => f.skipped(),
        }
    }
}

impl Dataset for ImageSet {
    type Item = (Image, u32);

    fn len(&self) -> usize {
        match self {
            ImageSet::Memory(m) => m.len(),
            ImageSet::Files(f) => f.len(),
        }
    }

    fn get(&self, index: usize) -> Result<(Image, u32)> {
        match self {
            ImageSet::Memory(m) => m.get(index),
            ImageSet::Files(f) => f.get(index),
        }
    }
}

/// Training and test images, and where they came from.
#[derive(Clone, Debug)]
pub struct ImageSplit {
    /// Training images (a self-supervised method ignores their labels; evaluation uses them).
    pub train: ImageSet,
    /// Test images; empty when the images have no labels (nothing to evaluate against).
    pub test: ImageSet,
    /// What was read, in words.
    pub source: String,
}

impl ImageSplit {
    /// Reads `path` in the first layout it has:
    /// - IDX files (`train-images-idx3-ubyte[.gz]` and the other three), decoded into memory: the
    ///   standard split;
    /// - `train/` and `test/` folders of class folders;
    /// - one folder of class folders, split 4:1 with each class in proportion (seed 0);
    /// - a flat folder of images, or a list file of paths ([`ImageFolder::from_list`]): with
    ///   labels, split 4:1 by class; without, all for training and no test set.
    ///
    /// Files are read one at a time as RGB, of any size, an unreadable one handled by
    /// `unreadable`.
    pub fn open(path: &Path, unreadable: Unreadable) -> Result<Self> {
        if path.is_file() {
            let list = ImageFolder::from_list(path, ColorMode::Rgb, unreadable)?;
            return Self::split(list, format!("image list {}", path.display()));
        }
        if !path.is_dir() {
            return Err(Error::in_file(
                path,
                None,
                "no such folder or list file: expected train-images-idx3-ubyte[.gz] and the other IDX \
                 files, train/ and test/ class folders, a folder of class folders or of images, or a \
                 list file of image paths",
            ));
        }
        let has = |name: &str| path.join(name).exists() || path.join(format!("{name}.gz")).exists();
        if has("train-images-idx3-ubyte") {
            let (train, test) = load_idx_folder(path)?;
            return Ok(Self {
                train: ImageSet::Memory(train),
                test: ImageSet::Memory(test),
                source: format!("IDX files in {}", path.display()),
            });
        }
        let open = |root: &Path| ImageFolder::open(root, ColorMode::Rgb, unreadable);
        if path.join("train").is_dir() && path.join("test").is_dir() {
            return Ok(Self {
                train: ImageSet::Files(open(&path.join("train"))?),
                test: ImageSet::Files(open(&path.join("test"))?),
                source: format!("image folders {0}/train and {0}/test", path.display()),
            });
        }
        let all = open(path)?;
        Self::split(all, format!("image folder {}", path.display()))
    }

    fn split(all: ImageFolder, source: String) -> Result<Self> {
        if !all.labelled() {
            return Ok(Self {
                test: ImageSet::Files(all.select(&[])?),
                train: ImageSet::Files(all),
                source: format!("{source} (no labels: training only)"),
            });
        }
        let (train, test) = stratified_split(&all.labels(), 5, 0);
        Ok(Self {
            train: ImageSet::Files(all.select(&train)?),
            test: ImageSet::Files(all.select(&test)?),
            source: format!("{source} split 4:1 by class"),
        })
    }
}
