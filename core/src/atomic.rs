//! Writing a file so that it is either the old one or the whole new one, never half of it: the
//! content goes to a temporary file in the same folder, which is then renamed over the target
//! (a rename within one file system is atomic). A process killed mid-write leaves at most a
//! `.partial-*` file beside the target, never a truncated target.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Runs `write` on a temporary path beside `path` and renames the result to `path`. The temporary
/// name ends with `path`'s file name, so writers that go by the extension (a `.png` plot) work.
/// On an error the temporary file is removed and `path` is left as it was.
pub fn write_atomically<T>(path: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let tmp = partial_path(path)?;
    let result = write(&tmp).and_then(|value| {
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        Ok(value)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomically`] for bytes already in memory.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |tmp| std::fs::write(tmp, bytes).map_err(|e| Error::io(tmp, e)))
}

/// Saves tensors as a safetensors file, atomically.
pub fn save_safetensors(tensors: &std::collections::HashMap<String, candle_core::Tensor>, path: &Path) -> Result<()> {
    write_atomically(path, |tmp| {
        candle_core::safetensors::save(tensors, tmp).map_err(|e| Error::checkpoint(path, e.to_string()))
    })
}

/// `dir/.partial-{pid}-{name}`: hidden, unique per process, same folder and same extension.
fn partial_path(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name")))?;
    let mut partial = std::ffi::OsString::from(format!(".partial-{}-", std::process::id()));
    partial.push(name);
    Ok(path.with_file_name(partial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, b"old").unwrap();
        let err = write_atomically(&path, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err::<(), _>(Error::Data("disk full".into()))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the partial file is removed");
        write_bytes_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_partial_file_keeps_the_extension() {
        let p = partial_path(Path::new("/runs/history.png")).unwrap();
        assert_eq!(p.parent(), Some(Path::new("/runs")));
        assert!(p.to_str().unwrap().ends_with("-history.png"));
        assert!(partial_path(Path::new("/")).is_err());
    }
}
