//! TensorBoard's embedding projector: `projector_config.pbtxt` in a run folder, naming a tensor
//! TSV, a metadata TSV and an image sprite kept in its `projector/` folder, so that
//! `tensorboard --logdir` on the folder shows the embeddings in 3-D (PCA, t-SNE, UMAP) with each
//! point's label, sentence, SMILES or picture.

use crate::check;
use crate::items::{Content, Items};
use candle_core::{DType, Tensor};
use contrastive_core::atomic::{write_atomically, write_bytes_atomically};
use contrastive_core::{Error, Result};
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The points a projector gets by default: TensorBoard computes t-SNE and UMAP on at most 10,000
/// of them in the browser, and a 10,000-row TSV of 512 columns is about 50 MB.
pub const PROJECTOR_POINTS: usize = 10_000;

/// The projector's config file name (TensorBoard looks for it in the log folder and each run's).
pub const PROJECTOR_CONFIG: &str = "projector_config.pbtxt";

/// One named set of embeddings for the projector.
pub struct ProjectorEmbedding<'a> {
    /// The tensor's name in TensorBoard: letters, digits, `_` and `-`.
    pub name: &'a str,
    /// (N, D) embeddings (write a sample: see [`PROJECTOR_POINTS`]).
    pub embeddings: &'a Tensor,
    /// What each row is.
    pub items: &'a Items,
}

/// Writes `dir/projector_config.pbtxt` (replacing one there) and, for each embedding, its
/// `projector/<name>.tsv`, `projector/<name>_metadata.tsv` (a header row, then the row's index,
/// label, class name and sentence or SMILES; tabs and line breaks in text become spaces) and,
/// for thumbnails, `projector/<name>_sprite.png`. Returns the files written.
pub fn write_projector(dir: &Path, embeddings: &[ProjectorEmbedding]) -> Result<Vec<PathBuf>> {
    let assets = dir.join("projector");
    std::fs::create_dir_all(&assets).map_err(|e| Error::io(&assets, e))?;
    let mut config = String::new();
    let mut written = Vec::new();
    for (k, e) in embeddings.iter().enumerate() {
        if e.name.is_empty() || !e.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(Error::config("projector: name", format!("`{}`: use letters, digits, _ and -", e.name)));
        }
        if embeddings[..k].iter().any(|o| o.name == e.name) {
            return Err(Error::config("projector: name", format!("`{}` is given twice", e.name)));
        }
        let (n, d) = check::embeddings("projector", e.embeddings)?;
        e.items.check(n)?;
        let tensor = assets.join(format!("{}.tsv", e.name));
        write_tensor_tsv(&tensor, e.embeddings)?;
        written.push(tensor);
        let metadata = assets.join(format!("{}_metadata.tsv", e.name));
        write_bytes_atomically(&metadata, metadata_tsv(e.items, n).as_bytes())?;
        written.push(metadata);
        let _ = writeln!(config, "embeddings {{");
        let _ = writeln!(config, "  tensor_name: \"{}\"", e.name);
        let _ = writeln!(config, "  tensor_shape: {n}\n  tensor_shape: {d}");
        let _ = writeln!(config, "  tensor_path: \"projector/{}.tsv\"", e.name);
        let _ = writeln!(config, "  metadata_path: \"projector/{}_metadata.tsv\"", e.name);
        if let Content::Thumbnails(t) = &e.items.content {
            let sprite = assets.join(format!("{}_sprite.png", e.name));
            write_bytes_atomically(&sprite, &t.sprite_png()?.0)?;
            written.push(sprite);
            let _ = writeln!(config, "  sprite {{");
            let _ = writeln!(config, "    image_path: \"projector/{}_sprite.png\"", e.name);
            // Width, then height, as TensorBoard reads them.
            let _ = writeln!(config, "    single_image_dim: {}\n    single_image_dim: {}", t.width, t.height);
            let _ = writeln!(config, "  }}");
        }
        let _ = writeln!(config, "}}");
    }
    let path = dir.join(PROJECTOR_CONFIG);
    write_bytes_atomically(&path, config.as_bytes())?;
    written.push(path);
    Ok(written)
}

/// One row per line, tab-separated, each value as the shortest decimal that reads back as the
/// same f32.
fn write_tensor_tsv(path: &Path, embeddings: &Tensor) -> Result<()> {
    let rows = embeddings.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    write_atomically(path, |tmp| {
        let file = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        let mut out = std::io::BufWriter::new(file);
        let mut line = String::new();
        for row in &rows {
            line.clear();
            for (j, v) in row.iter().enumerate() {
                if j > 0 {
                    line.push('\t');
                }
                let _ = write!(line, "{v}");
            }
            line.push('\n');
            out.write_all(line.as_bytes()).map_err(|e| Error::io(tmp, e))?;
        }
        out.flush().map_err(|e| Error::io(tmp, e))
    })
}

/// The metadata TSV: a header row (TensorBoard takes the first line as one when it has a tab, so
/// there are always two columns or more) and a line per item.
fn metadata_tsv(items: &Items, n: usize) -> String {
    let mut columns = vec!["index"];
    if items.labels.is_some() {
        columns.push("label");
        if !items.class_names.is_empty() {
            columns.push("class");
        }
    }
    let texts = items.content.texts();
    if let Some((column, _)) = texts {
        columns.push(column);
    }
    if columns.len() == 1 {
        // One column has no header row; a second keeps the format the same for every run.
        columns.push("label");
    }
    let mut out = columns.join("\t");
    out.push('\n');
    for i in 0..n {
        let mut cells = vec![i.to_string()];
        match &items.labels {
            Some(labels) => {
                cells.push(labels[i].to_string());
                if !items.class_names.is_empty() {
                    cells.push(items.label_name(i).unwrap_or_default());
                }
            }
            None if texts.is_none() => cells.push(String::new()),
            None => {}
        }
        if let Some((_, t)) = texts {
            cells.push(t[i].clone());
        }
        let line: Vec<String> = cells.iter().map(|c| one_cell(c)).collect();
        out.push_str(&line.join("\t"));
        out.push('\n');
    }
    out
}

/// A cell on one line: tabs and line breaks become spaces.
fn one_cell(text: &str) -> String {
    text.chars().map(|c| if matches!(c, '\t' | '\n' | '\r') { ' ' } else { c }).collect()
}
