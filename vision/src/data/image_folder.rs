//! Image files read one at a time, from the layouts people keep them in: one sub-folder per class
//! (sorted names give the class indices, as torchvision's `ImageFolder`), a flat folder without
//! labels, or a list file of paths with optional labels. Only the file names are held; each image
//! is decoded (JPEG, PNG or WebP, any size and colour mode) when a sample is read.

use crate::data::{Image, InMemoryImages};
use contrastive_core::data::Dataset;
use contrastive_core::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Colour of the decoded images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMode {
    /// One channel.
    Grayscale,
    /// Three channels.
    Rgb,
}

impl ColorMode {
    /// Channels of an image in this mode.
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Grayscale => 1,
            ColorMode::Rgb => 3,
        }
    }
}

/// What to do with a file that cannot be read as an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Fail, naming the file (a training run stops with its last checkpoint kept).
    Fail,
    /// Leave it out with a warning naming it: empty and missing files when the set is opened,
    /// undecodable ones when they are first read, whose place in the batch the next readable
    /// file of the set takes (so batches stay full and the same for a seed).
    /// [`ImageFolder::skipped`] lists them all, for the count at the end of a run.
    Skip,
}

/// Image files and their labels, decoded lazily.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    source: PathBuf,
    classes: Vec<String>,
    files: Vec<(PathBuf, u32)>,
    mode: ColorMode,
    unreadable: Unreadable,
    /// Files left out so far, shared by the clones and subsets of one opened set.
    skipped: Arc<Mutex<BTreeSet<PathBuf>>>,
}

/// The extensions a folder is searched for.
fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg" | "webp"))
}

/// The entries of `dir`, sorted: (path, is a folder).
fn entries(dir: &Path) -> Result<Vec<(PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        // A symbolic link counts as what it points to.
        let is_dir = entry.path().is_dir();
        out.push((entry.path(), is_dir));
    }
    out.sort();
    Ok(out)
}

/// Every image file under `dir`, at any depth, in sorted order.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for (path, is_dir) in entries(dir)? {
        if is_dir {
            walk(&path, out)?;
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether `bytes` are a JPEG cut short: the decoder fills a missing end with gray rather than
/// failing (PIL refuses such files), so the end-of-image marker is looked for after the start of
/// the last scan (entropy-coded data cannot hold a marker, and an embedded thumbnail's end comes
/// before the main image's scans).
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    match bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]) {
        Some(scan) => !bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9]),
        // No scan at all: the decoder reports what is missing.
        None => false,
    }
}

/// Decodes one file into channel-first f32 in [0, 1].
pub(crate) fn decode(path: &Path, mode: ColorMode) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::in_file(path, None, "empty file (0 bytes)"));
    }
    if jpeg_is_truncated(&bytes) {
        return Err(Error::in_file(path, None, "truncated JPEG (no end-of-image marker after the last scan)"));
    }
    let decoded = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(|e| Error::in_file(path, None, format!("cannot decode: {e}")))?;
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    match mode {
        ColorMode::Grayscale => {
            Image::new(1, h, w, decoded.to_luma8().into_raw().into_iter().map(|p| f32::from(p) / 255.0).collect())
        }
        ColorMode::Rgb => {
            let rgb = decoded.to_rgb8().into_raw();
            // Interleaved HWC bytes to channel-first floats.
            let plane = h * w;
            let mut data = vec![0.0f32; 3 * plane];
            let (r, rest) = data.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                r[i] = f32::from(px[0]) / 255.0;
                g[i] = f32::from(px[1]) / 255.0;
                b[i] = f32::from(px[2]) / 255.0;
            }
            Image::new(3, h, w, data)
        }
    }
}

impl ImageFolder {
    /// The images under `root`: `root/<class>/...` (every image at any depth under a class
    /// folder has that class) when `root` has sub-folders, or the images directly in `root`,
    /// without labels, when it has none. Files ending in .png, .jpg, .jpeg or .webp (any case)
    /// are listed; an empty one fails or is left out by `unreadable`.
    pub fn open(root: &Path, mode: ColorMode, unreadable: Unreadable) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::in_file(root, None, "not a folder of images"));
        }
        let listing = entries(root)?;
        let class_dirs: Vec<&PathBuf> = listing.iter().filter(|(_, d)| *d).map(|(p, _)| p).collect();
        let mut classes = Vec::new();
        let mut files = Vec::new();
        if class_dirs.is_empty() {
            files.extend(listing.iter().filter(|(p, _)| is_image(p)).map(|(p, _)| (p.clone(), 0)));
        } else {
            for (c, dir) in class_dirs.iter().enumerate() {
                classes.push(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
                let mut found = Vec::new();
                walk(dir, &mut found)?;
                files.extend(found.into_iter().map(|p| (p, c as u32)));
            }
        }
        if files.is_empty() {
            let layout = if class_dirs.is_empty() { "in the folder" } else { "in its class folders" };
            return Err(Error::in_file(
                root,
                None,
                format!("no .png, .jpg, .jpeg or .webp file {layout} (expected root/<class>/<image> or root/<image>)"),
            ));
        }
        Self::checked(root, classes, files, mode, unreadable)
    }

    /// The images a list file names, one a line: a path (relative to the list file's folder
    /// unless absolute), then optionally a tab or space and a label, a class index or name (class
    /// names are numbered in sorted order). A path with spaces in it needs the tab. Either every
    /// line has a label or none has; blank lines and lines starting with `#` are skipped. A
    /// missing or empty file fails naming the list's line, or is left out by `unreadable`.
    pub fn from_list(list: &Path, mode: ColorMode, unreadable: Unreadable) -> Result<Self> {
        let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
        let base = list.parent().unwrap_or(Path::new("."));
        let mut rows: Vec<(PathBuf, Option<String>, usize)> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, label) = match line.rsplit_once('\t').or_else(|| line.trim().rsplit_once(' ')) {
                Some((p, l)) if !l.trim().is_empty() => (p.trim(), Some(l.trim().to_string())),
                _ => (line.trim(), None),
            };
            let path = Path::new(path);
            let path = if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
            if let Some(first) = rows.first() {
                if first.1.is_some() != label.is_some() {
                    return Err(Error::in_file(
                        list,
                        Some(n + 1),
                        format!(
                            "{} a label but line {} {}: every line needs one, or none",
                            if label.is_some() { "has" } else { "lacks" },
                            first.2,
                            if first.1.is_some() { "has one" } else { "has none" }
                        ),
                    ));
                }
            }
            rows.push((path, label, n + 1));
        }
        if rows.is_empty() {
            return Err(Error::in_file(list, None, "the list names no image"));
        }
        let mut classes = Vec::new();
        let mut files = Vec::with_capacity(rows.len());
        let labelled = rows[0].1.is_some();
        if labelled {
            let numeric: Option<Vec<u32>> = rows.iter().map(|r| r.1.as_deref().and_then(|l| l.parse().ok())).collect();
            let labels = match numeric {
                Some(ids) => {
                    let top = ids.iter().copied().max().unwrap_or(0);
                    classes = (0..=top).map(|i| i.to_string()).collect();
                    ids
                }
                None => {
                    let names: BTreeSet<&str> = rows.iter().filter_map(|r| r.1.as_deref()).collect();
                    let index: BTreeMap<&str, u32> = names.iter().enumerate().map(|(i, &n)| (n, i as u32)).collect();
                    classes = names.iter().map(|n| n.to_string()).collect();
                    rows.iter().map(|r| index[r.1.as_deref().unwrap_or_default()]).collect()
                }
            };
            files.extend(rows.iter().zip(labels).map(|(r, l)| (r.0.clone(), l)));
        } else {
            files.extend(rows.iter().map(|r| (r.0.clone(), 0)));
        }
        // Missing files are named with the list's line.
        let mut kept = Vec::with_capacity(files.len());
        for ((path, label), (_, _, line)) in files.into_iter().zip(&rows) {
            if path.is_file() {
                kept.push((path, label));
            } else if unreadable == Unreadable::Fail {
                return Err(Error::in_file(list, Some(*line), format!("{}: no such file", path.display())));
            } else {
                tracing::warn!(list = %list.display(), line, file = %path.display(), "skipping a listed image that does not exist");
            }
        }
        Self::checked(list, classes, kept, mode, unreadable)
    }

    /// Leaves out (or refuses) empty files, which a stat finds without reading them.
    fn checked(
        source: &Path,
        classes: Vec<String>,
        files: Vec<(PathBuf, u32)>,
        mode: ColorMode,
        unreadable: Unreadable,
    ) -> Result<Self> {
        let mut skipped = BTreeSet::new();
        let mut kept = Vec::with_capacity(files.len());
        for (path, label) in files {
            let len = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
            if len > 0 {
                kept.push((path, label));
            } else if unreadable == Unreadable::Fail {
                return Err(Error::in_file(&path, None, "empty file (0 bytes)"));
            } else {
                tracing::warn!(file = %path.display(), "skipping an empty image file (0 bytes)");
                skipped.insert(path);
            }
        }
        if kept.is_empty() {
            return Err(Error::in_file(source, None, "every image file is empty or missing"));
        }
        Ok(Self {
            source: source.to_path_buf(),
            classes,
            files: kept,
            mode,
            unreadable,
            skipped: Arc::new(Mutex::new(skipped)),
        })
    }

    /// Class names, in index order (empty for a set without labels).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Whether the images have labels (class folders, or a list with labels). Without labels
    /// every item's label is 0.
    pub fn labelled(&self) -> bool {
        !self.classes.is_empty()
    }

    /// The folder or list file the set was opened from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// How images are decoded.
    pub fn mode(&self) -> ColorMode {
        self.mode
    }

    /// The image files and their labels.
    pub fn files(&self) -> &[(PathBuf, u32)] {
        &self.files
    }

    /// The label of every image, in order (what `eval` classifies against).
    pub fn labels(&self) -> Vec<u32> {
        self.files.iter().map(|(_, label)| *label).collect()
    }

    /// The files left out so far by [`Unreadable::Skip`], in order of their paths.
    pub fn skipped(&self) -> Vec<PathBuf> {
        self.skipped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().cloned().collect()
    }

    /// The images at `indices`, as a set of their own (a split, a subset); it shares the record
    /// of skipped files.
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        let files = indices
            .iter()
            .map(|&i| {
                self.files.as_slice().get(i).cloned().ok_or_else(|| Error::index("image files", i, self.files.len()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { files, ..self.clone() })
    }

    /// The first `n` images (all of them when there are fewer), for short runs.
    pub fn head(&self, n: usize) -> Self {
        Self { files: self.files[..n.min(self.files.len())].to_vec(), ..self.clone() }
    }

    /// Every image decoded into memory, resized (the whole image, bilinear) to `size`, or to the
    /// first image's size when `None`, so that they batch together. For sets that fit in memory;
    /// the folder itself reads one image at a time.
    pub fn to_memory(&self, size: Option<(usize, usize)>) -> Result<InMemoryImages> {
        let mut pixels = Vec::new();
        let mut labels = Vec::with_capacity(self.files.len());
        let mut shape = size;
        for i in 0..self.files.len() {
            let (img, label) = self.get(i)?;
            let (h, w) = *shape.get_or_insert((img.height, img.width));
            let img = if (img.height, img.width) == (h, w) {
                img
            } else {
                crate::augment::resized_crop(&img, (0, 0, img.height, img.width), (h, w))?
            };
            pixels.extend_from_slice(&img.data);
            labels.push(label);
        }
        let (height, width) = shape.unwrap_or((0, 0));
        Ok(InMemoryImages { channels: self.mode.channels(), height, width, pixels, labels })
    }
}

impl Dataset for ImageFolder {
    type Item = (Image, u32);

    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, index: usize) -> Result<(Image, u32)> {
        let n = self.files.len();
        if index >= n {
            return Err(Error::index("image files", index, n));
        }
        // Under Skip an undecodable file gives its place to the next readable one.
        for i in (index..n).chain(0..index) {
            let (path, label) = &self.files[i];
            match decode(path, self.mode) {
                Ok(image) => return Ok((image, *label)),
                Err(e) if self.unreadable == Unreadable::Skip => {
                    let mut skipped = self.skipped.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if skipped.insert(path.clone()) {
                        tracing::warn!(error = %e, "skipping an unreadable image");
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::in_file(&self.source, None, "no file of the set can be decoded"))
    }
}
