//! Images as CSV rows of pixel values followed by the label (the UCI optical digits as
//! scikit-learn ships them: 64 values in 0..16, then the digit), plain or gzipped.

use crate::data::InMemoryImages;
use contrastive_core::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Reads `height x width` grayscale images with values in `0..=max_value` (scaled to [0, 1]);
/// a malformed line is an error naming the file, the line and the field.
pub fn load_pixel_csv(path: &Path, height: usize, width: usize, max_value: f32) -> Result<InMemoryImages> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_string(&mut s)
            .map_err(|e| Error::in_file(path, None, format!("not a valid gzip text: {e}")))?;
        s
    } else {
        String::from_utf8(raw).map_err(|e| Error::in_file(path, None, format!("not UTF-8: {e}")))?
    };
    parse_pixel_csv(&text, &path.display().to_string(), height, width, max_value)
}

/// [`load_pixel_csv`] on text already in memory; `origin` names it in errors.
pub fn parse_pixel_csv(
    text: &str,
    origin: &str,
    height: usize,
    width: usize,
    max_value: f32,
) -> Result<InMemoryImages> {
    if !(max_value.is_finite() && max_value > 0.0) {
        return Err(Error::config("max_value", format!("must be finite and > 0, got {max_value} (reading {origin})")));
    }
    let Some(fields) = height.checked_mul(width).filter(|&p| p > 0 && p < 1 << 28).map(|p| p + 1) else {
        return Err(Error::config(
            "height, width",
            format!("images of {height} x {width} pixels: each side must be at least 1 and a line at most 2^28 fields (reading {origin})"),
        ));
    };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let values: Vec<&str> = line.split(',').map(str::trim).collect();
        if values.len() != fields {
            let message = format!("{} fields, expected {fields}", values.len());
            return Err(Error::in_file(origin, Some(line_no), message));
        }
        for (j, v) in values[..fields - 1].iter().enumerate() {
            let p: f32 = v
                .parse()
                .map_err(|_| Error::in_field(origin, line_no, (j + 1).to_string(), format!("`{v}` is not a number")))?;
            if !(0.0..=max_value).contains(&p) {
                return Err(Error::in_field(
                    origin,
                    line_no,
                    (j + 1).to_string(),
                    format!("{p} is outside 0..={max_value}"),
                ));
            }
            pixels.push(p / max_value);
        }
        let label = values[fields - 1];
        labels.push(label.parse::<u32>().map_err(|_| {
            Error::in_field(origin, line_no, format!("{fields} (label)"), format!("`{label}` is not a class index"))
        })?);
    }
    if labels.is_empty() {
        return Err(Error::in_file(origin, None, "no image"));
    }
    Ok(InMemoryImages { channels: 1, height, width, pixels, labels })
}

/// The UCI optical-recognition digits (1,797 images of 8x8, values 0-16 scaled to [0, 1], labels
/// 0-9), embedded in the crate from `data/digits.csv.gz` (scikit-learn's copy, BSD-3:
/// `data/digits.LICENSE`): a dataset that needs no download.
pub fn uci_digits() -> Result<InMemoryImages> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(&include_bytes!("../../data/digits.csv.gz")[..])
        .read_to_string(&mut text)
        .map_err(|e| Error::in_file("embedded digits.csv.gz", None, e.to_string()))?;
    parse_pixel_csv(&text, "embedded digits.csv.gz", 8, 8, 16.0)
}
