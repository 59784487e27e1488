//! The IDX format of the MNIST family (LeCun et al.; Fashion-MNIST uses it too), raw or gzipped:
//! a big-endian header (magic 0x00000803 for images with three sizes, 0x00000801 for labels with
//! one), then unsigned bytes.

use crate::data::InMemoryImages;
use contrastive_core::{Error, Result};
use std::io::Read;
use std::path::Path;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The file as a byte stream, gunzipped when it starts with gzip's magic bytes.
fn open(path: &Path) -> Result<Box<dyn Read>> {
    let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?);
    let gzipped = std::io::BufRead::fill_buf(&mut file).map_err(|e| Error::io(path, e))?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzipped { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) })
}

/// Reads up to `limit` bytes; a broken gzip stream is named as such.
fn read_up_to(reader: &mut dyn Read, limit: u64, path: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.take(limit).read_to_end(&mut out).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
            Error::in_file(path, None, format!("not a valid gzip stream: {e}"))
        }
        _ => Error::io(path, e),
    })?;
    Ok(out)
}

fn header(reader: &mut dyn Read, path: &Path, fields: &[&str]) -> Result<Vec<u32>> {
    let need = 4 * fields.len();
    let bytes = read_up_to(reader, need as u64, path)?;
    if bytes.len() < need {
        let message = format!("{} bytes, too short for the IDX header ({need} bytes)", bytes.len());
        return Err(Error::in_file(path, None, message));
    }
    Ok(bytes.chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// The body after the header, which must be exactly `expected` bytes long. Nothing is allocated
/// beyond what the file holds, whatever the header declares.
fn body(reader: &mut dyn Read, path: &Path, expected: usize, declared: impl Fn(usize) -> String) -> Result<Vec<u8>> {
    let bytes = read_up_to(reader, expected as u64 + 1, path)?;
    if bytes.len() != expected {
        let holds = if bytes.len() > expected { "more".to_string() } else { bytes.len().to_string() };
        return Err(Error::in_file(path, None, format!("{}, the file holds {holds}", declared(expected))));
    }
    Ok(bytes)
}

fn check_magic(path: &Path, got: u32, want: u32) -> Result<()> {
    if got != want {
        let message = format!("{got:#010x}, expected {want:#010x}");
        return Err(Error::File { path: path.into(), line: None, field: Some("magic".into()), message });
    }
    Ok(())
}

/// Reads an IDX image file: (count, rows, cols, pixels as bytes).
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    let mut reader = open(path)?;
    let h = header(&mut reader, path, &["magic", "count", "rows", "cols"])?;
    check_magic(path, h[0], IMAGES_MAGIC)?;
    let (n, rows, cols) = (h[1] as usize, h[2] as usize, h[3] as usize);
    if n == 0 || rows == 0 || cols == 0 {
        let message = format!("fields count x rows x cols = {n} x {rows} x {cols}: no pixels to read");
        return Err(Error::in_file(path, None, message));
    }
    let Some(pixels) = n.checked_mul(rows).and_then(|p| p.checked_mul(cols)) else {
        let message = format!("fields count x rows x cols = {n} x {rows} x {cols} overflow the address space");
        return Err(Error::in_file(path, None, message));
    };
    let body = body(&mut reader, path, pixels, |p| {
        format!("fields count x rows x cols = {n} x {rows} x {cols} = {p} pixels")
    })?;
    Ok((n, rows, cols, body))
}

/// Reads an IDX label file.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let mut reader = open(path)?;
    let h = header(&mut reader, path, &["magic", "count"])?;
    check_magic(path, h[0], LABELS_MAGIC)?;
    body(&mut reader, path, h[1] as usize, |n| format!("field count is {n} labels"))
}

/// Reads an image file and its label file into grayscale images scaled to [0, 1].
pub fn load_idx(images: &Path, labels: &Path) -> Result<InMemoryImages> {
    let (n, rows, cols, pixels) = read_idx_images(images)?;
    let labels_bytes = read_idx_labels(labels)?;
    if labels_bytes.len() != n {
        return Err(Error::in_file(
            labels,
            None,
            format!("{} labels, but {} holds {n} images", labels_bytes.len(), images.display()),
        ));
    }
    Ok(InMemoryImages {
        channels: 1,
        height: rows,
        width: cols,
        pixels: pixels.into_iter().map(|p| f32::from(p) / 255.0).collect(),
        labels: labels_bytes.into_iter().map(u32::from).collect(),
    })
}

/// The standard split in a folder of IDX files (`train-images-idx3-ubyte[.gz]`,
/// `train-labels-idx1-ubyte[.gz]`, `t10k-...`): (train, test).
pub fn load_idx_folder(dir: &Path) -> Result<(InMemoryImages, InMemoryImages)> {
    let find = |stem: &str| -> Result<std::path::PathBuf> {
        [format!("{stem}.gz"), stem.to_string()]
            .into_iter()
            .map(|name| dir.join(name))
            .find(|p| p.exists())
            .ok_or_else(|| Error::in_file(dir, None, format!("no {stem} or {stem}.gz in this folder")))
    };
    let train = load_idx(&find("train-images-idx3-ubyte")?, &find("train-labels-idx1-ubyte")?)?;
    let test = load_idx(&find("t10k-images-idx3-ubyte")?, &find("t10k-labels-idx1-ubyte")?)?;
    Ok((train, test))
}
