//! A labelled image set in its two parts, train and test, from any of the layouts people keep
//! them in.

use crate::data::{load_idx_folder, ColorMode, ImageFolder, InMemoryImages, Unreadable};
use contrastive_core::data::stratified_split;
use contrastive_core::{Error, Result};
use std::path::Path;

/// Training and test images, and where they came from.
#[derive(Clone, Debug)]
pub struct ImageSplit {
    /// Training images (a self-supervised method ignores their labels; evaluation uses them).
    pub train: InMemoryImages,
    /// Test images, resized to the training images' size.
    pub test: InMemoryImages,
    /// What was read, in words.
    pub source: String,
}

impl ImageSplit {
    /// Reads `dir` in the first layout it has:
    /// - IDX files (`train-images-idx3-ubyte[.gz]` and the other three): the standard split;
    /// - `train/` and `test/` folders of class folders;
    /// - one folder of class folders, split 4:1 with each class in proportion (seed 0).
    ///
    /// Folders of PNG or JPEG files are decoded as RGB, unreadable files left out with a warning,
    /// every image resized to the first one's size. The whole set is held in memory.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::in_file(
                dir,
                None,
                "not a folder: expected train-images-idx3-ubyte[.gz] and the other IDX files, \
                 train/ and test/ class folders, or a folder of class folders",
            ));
        }
        let has = |name: &str| dir.join(name).exists() || dir.join(format!("{name}.gz")).exists();
        if has("train-images-idx3-ubyte") {
            let (train, test) = load_idx_folder(dir)?;
            return Ok(Self { train, test, source: format!("IDX files in {}", dir.display()) });
        }
        let decode = |root: &Path, size| ImageFolder::open(root, ColorMode::Rgb, Unreadable::Skip)?.to_memory(size);
        if dir.join("train").is_dir() && dir.join("test").is_dir() {
            let train = decode(&dir.join("train"), None)?;
            let test = decode(&dir.join("test"), Some((train.height, train.width)))?;
            return Ok(Self { train, test, source: format!("image folders {0}/train and {0}/test", dir.display()) });
        }
        let all = decode(dir, None)?;
        let (train, test) = stratified_split(&all.labels, 5, 0);
        Ok(Self {
            train: all.select(&train)?,
            test: all.select(&test)?,
            source: format!("image folder {} split 4:1 by class", dir.display()),
        })
    }
}
