//! What a run leaves behind: plots, exported embeddings, and the final JSON line.

use candle_core::{DType, Tensor};
use contrastive_core::train::read_history;
use contrastive_core::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Writes `embeddings` (N, D) f32 and `labels` (N) i64 to a safetensors file.
pub fn save_embeddings(path: &Path, embeddings: &Tensor, labels: &[u32]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let n = labels.len();
    let tensors = HashMap::from([
        ("embeddings".to_string(), embeddings.to_dtype(DType::F32)?.contiguous()?),
        ("labels".to_string(), Tensor::from_vec(labels, n, embeddings.device())?),
    ]);
    candle_core::safetensors::save(&tensors, path).map_err(|e| Error::checkpoint(path, e.to_string()))
}

/// Plots `history.jsonl` of a run folder (loss, learning rate and evaluations against steps) and,
/// if given, a PCA scatter of embeddings; returns the files written.
pub fn plot_run(run_dir: &Path, embeddings: Option<(&Tensor, &[u32], &str)>) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let history = run_dir.join("history.jsonl");
    if history.exists() {
        written.extend(contrastive_eval::plot_history(&read_history(&history)?, &run_dir.join("history"))?);
    }
    if let Some((x, labels, title)) = embeddings {
        written.extend(contrastive_eval::plot_embeddings(x, labels, title, &run_dir.join("embeddings"))?);
    }
    Ok(written)
}

/// Prints the run's figures as one JSON object: the last line on stdout.
pub fn print_final(figures: &serde_json::Value) {
    println!("{}", serde_json::to_string(figures).unwrap_or_else(|_| "{}".to_string()));
}

/// Ends an example: its figures as the last line on stdout, or the error on stderr and exit
/// status 1.
pub fn finish(result: contrastive_core::Result<serde_json::Value>) {
    match result {
        Ok(figures) => print_final(&figures),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
