//! An ImageFolder: one sub-folder per class (sorted names give the class indices, as
//! torchvision's `ImageFolder`), PNG and JPEG files decoded lazily when a sample is read.

use crate::data::{Image, InMemoryImages};
use contrastive_core::data::Dataset;
use contrastive_core::{Error, Result};
use std::path::{Path, PathBuf};

/// Colour of the decoded images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMode {
    /// One channel.
    Grayscale,
    /// Three channels.
    Rgb,
}

/// What to do with a file that cannot be read as an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Fail, naming the file.
    Fail,
    /// Check every file when the folder is opened and leave out, with a warning, those that
    /// cannot be decoded.
    Skip,
}

/// Images under `root/<class>/<file>`.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    classes: Vec<String>,
    files: Vec<(PathBuf, u32)>,
    mode: ColorMode,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

impl ImageFolder {
    /// Lists the classes and files under `root`.
    pub fn open(root: &Path, mode: ColorMode, unreadable: Unreadable) -> Result<Self> {
        let read_dir = |p: &Path| -> Result<Vec<PathBuf>> {
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(p).map_err(|e| Error::io(p, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
            entries.sort();
            Ok(entries)
        };
        let class_dirs: Vec<PathBuf> = read_dir(root)?.into_iter().filter(|p| p.is_dir()).collect();
        if class_dirs.is_empty() {
            return Err(Error::in_file(root, None, "no class folders (expected root/<class>/<image>)"));
        }
        let mut classes = Vec::new();
        let mut files = Vec::new();
        for (c, dir) in class_dirs.iter().enumerate() {
            classes.push(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            for f in read_dir(dir)?.into_iter().filter(|p| p.is_file() && is_image(p)) {
                if unreadable == Unreadable::Skip {
                    if let Err(e) = image::ImageReader::open(&f)
                        .and_then(|r| r.with_guessed_format())
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.decode().map_err(|e| e.to_string()))
                    {
                        tracing::warn!(file = %f.display(), error = %e, "skipping unreadable image");
                        continue;
                    }
                }
                files.push((f, c as u32));
            }
        }
        if files.is_empty() {
            return Err(Error::in_file(root, None, "no PNG or JPEG images in the class folders"));
        }
        Ok(Self { classes, files, mode })
    }

    /// Class names, in index order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The image files and their labels.
    pub fn files(&self) -> &[(PathBuf, u32)] {
        &self.files
    }

    /// Every image decoded into memory, resized (the whole image, bilinear) to `size`, or to the
    /// first image's size when `None`, so that they batch together. For sets that fit in memory;
    /// the folder itself reads one image at a time.
    pub fn to_memory(&self, size: Option<(usize, usize)>) -> Result<InMemoryImages> {
        let mut pixels = Vec::new();
        let mut labels = Vec::with_capacity(self.files.len());
        let mut shape = size;
        let mut channels = None;
        for i in 0..self.files.len() {
            let (img, label) = self.get(i)?;
            let (h, w) = *shape.get_or_insert((img.height, img.width));
            channels.get_or_insert(img.channels);
            let img = if (img.height, img.width) == (h, w) {
                img
            } else {
                crate::augment::resized_crop(&img, (0, 0, img.height, img.width), (h, w))?
            };
            pixels.extend_from_slice(&img.data);
            labels.push(label);
        }
        let (Some((height, width)), Some(channels)) = (shape, channels) else {
            return Err(Error::Data("ImageFolder::to_memory: the folder has no image".into()));
        };
        Ok(InMemoryImages { channels, height, width, pixels, labels })
    }

    /// The label of every image, in order (what `eval` classifies against).
    pub fn labels(&self) -> Vec<u32> {
        self.files.iter().map(|(_, label)| *label).collect()
    }
}

impl Dataset for ImageFolder {
    type Item = (Image, u32);

    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, index: usize) -> Result<(Image, u32)> {
        let (path, label) =
            self.files.as_slice().get(index).ok_or_else(|| Error::index("image folder", index, self.files.len()))?;
        let decoded = image::ImageReader::open(path)
            .map_err(|e| Error::io(path, e))?
            .with_guessed_format()
            .map_err(|e| Error::io(path, e))?
            .decode()
            .map_err(|e| Error::in_file(path, None, format!("cannot decode: {e}")))?;
        let (w, h) = (decoded.width() as usize, decoded.height() as usize);
        let image = match self.mode {
            ColorMode::Grayscale => {
                Image::new(1, h, w, decoded.to_luma8().into_raw().into_iter().map(|p| f32::from(p) / 255.0).collect())?
            }
            ColorMode::Rgb => {
                let rgb = decoded.to_rgb8().into_raw();
                // Interleaved HWC bytes to channel-first floats.
                let mut data = vec![0.0f32; 3 * h * w];
                for (i, px) in rgb.chunks(3).enumerate() {
                    for c in 0..3 {
                        data[c * h * w + i] = f32::from(px[c]) / 255.0;
                    }
                }
                Image::new(3, h, w, data)?
            }
        };
        Ok((image, *label))
    }
}
