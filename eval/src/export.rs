//! Writing embeddings where other tools read them: NumPy's `.npy` (format 1.0), so that
//! `numpy.load` and scikit-learn give the same numbers from the same file.

use crate::check;
use candle_core::{DType, Tensor};
use contrastive_core::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

fn npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    let shape = match shape {
        [n] => format!("({n},)"),
        dims => format!("({})", dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let len = u16::try_from(header.len())
        .map_err(|_| Error::in_file(path, None, "the npy header is longer than 65535 bytes"))?;
    contrastive_core::atomic::write_atomically(path, |tmp| {
        let mut file = std::io::BufWriter::new(std::fs::File::create(tmp).map_err(|e| Error::io(path, e))?);
        let mut write = |bytes: &[u8]| file.write_all(bytes).map_err(|e| Error::io(path, e));
        write(b"\x93NUMPY\x01\x00")?;
        write(&len.to_le_bytes())?;
        write(header.as_bytes())?;
        write(data)?;
        file.flush().map_err(|e| Error::io(path, e))
    })
}

/// Writes `embeddings` (N, D) as float32 to `{stem}.npy` and, if given, `labels` as int64 to
/// `{stem}.labels.npy`; returns the paths written.
///
/// ```python
/// import numpy as np
/// x, y = np.load("stem.npy"), np.load("stem.labels.npy")
/// ```
pub fn save_embeddings(embeddings: &Tensor, labels: Option<&[u32]>, stem: &Path) -> Result<Vec<PathBuf>> {
    let (n, d) = check::embeddings("save_embeddings", embeddings)?;
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let values = embeddings.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let x_path = stem.with_extension("npy");
    npy(&x_path, "<f4", &[n, d], &bytes)?;
    let mut written = vec![x_path];
    if let Some(labels) = labels {
        check::labels("save_embeddings", labels, n)?;
        let bytes: Vec<u8> = labels.iter().flat_map(|&l| i64::from(l).to_le_bytes()).collect();
        let y_path = stem.with_extension("labels.npy");
        npy(&y_path, "<i8", &[n], &bytes)?;
        written.push(y_path);
    }
    Ok(written)
}
