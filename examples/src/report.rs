//! What a run leaves behind: plots, exported embeddings, and the final JSON line.

use crate::flags::CommonFlags;
use candle_core::{DType, Tensor};
use contrastive_core::train::read_history;
use contrastive_core::{Error, Result};
use contrastive_eval::{
    spread_indices, write_projector, EmbeddingMap, Items, ProjectorEmbedding, RunReport, PROJECTOR_POINTS,
    REPORT_POINTS,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Rows per shard when `--save-embeddings` names a folder: 65,536 rows of 512 f32 are 128 MiB.
pub const ROWS_PER_SHARD: usize = 65_536;

/// Whether `--save-embeddings PATH` asks for a folder of shards (any path but a `.safetensors`
/// file), written as the embeddings are computed, rather than one file.
pub fn saves_shards(path: &Path) -> bool {
    path.extension().is_none_or(|e| e != "safetensors")
}

/// Writes `embeddings` (N, D) f32 and `labels` (N) i64 to a safetensors file or, if `path` is not
/// a `.safetensors` file, to a folder of shards ([`contrastive_eval::ShardWriter`]).
pub fn save_embeddings(path: &Path, embeddings: &Tensor, labels: &[u32]) -> Result<()> {
    if saves_shards(path) {
        let mut writer = contrastive_eval::ShardWriter::create(path, ROWS_PER_SHARD)?;
        writer.push(embeddings, Some(labels))?;
        writer.finish()?;
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let n = labels.len();
    let tensors = HashMap::from([
        ("embeddings".to_string(), embeddings.to_dtype(DType::F32)?.contiguous()?),
        ("labels".to_string(), Tensor::from_vec(labels, n, embeddings.device())?),
    ]);
    contrastive_core::atomic::save_safetensors(&tensors, path)
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

/// Embeddings of a run for people to look at: TensorBoard's projector and the report's map.
pub struct Shown<'a> {
    /// The tensor's name in the projector (letters, digits, `_`, `-`).
    pub name: &'a str,
    /// (N, D) embeddings, of which an evenly spread sample is shown.
    pub embeddings: &'a Tensor,
    /// What the rows at the given indices are (only the sampled rows are asked for: an image
    /// set's thumbnails are read for those alone).
    pub items: &'a dyn Fn(&[usize]) -> Result<Items>,
}

/// What a run leaves for people to look at, on rank 0: with `--save-embeddings`, TensorBoard's
/// projector files for at most [`PROJECTOR_POINTS`] rows of `shown` (in the run folder, beside
/// its event files, or without one in a folder `<PATH>-projector` beside the embeddings), and
/// in the run folder `report.html` with the history's curves, the final `figures`, the run's
/// flags and a map of at most [`REPORT_POINTS`] rows. Returns the files written.
pub fn write_views(flags: &CommonFlags, figures: &serde_json::Value, shown: Option<Shown>) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    if !crate::processes::is_leader() {
        return Ok(written);
    }
    let sample = |cap: usize| -> Result<Option<(Tensor, Items)>> {
        let Some(s) = &shown else { return Ok(None) };
        let rows = spread_indices(s.embeddings.dim(0)?, cap);
        let index =
            Tensor::from_vec(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), rows.len(), s.embeddings.device())?;
        Ok(Some((s.embeddings.contiguous()?.index_select(&index, 0)?, (s.items)(&rows)?)))
    };
    if let (Some(path), Some(s)) = (&flags.save_embeddings, &shown) {
        if let Some((embeddings, items)) = sample(PROJECTOR_POINTS)?.filter(|(e, _)| e.dim(0).is_ok_and(|n| n > 0)) {
            let dir = flags.run_dir().unwrap_or_else(|| projector_beside(path));
            written.extend(write_projector(
                &dir,
                &[ProjectorEmbedding { name: s.name, embeddings: &embeddings, items: &items }],
            )?);
        }
    }
    if let Some(dir) = flags.run_dir() {
        let history = dir.join("history.jsonl");
        let history = if history.exists() { read_history(&history)? } else { Vec::new() };
        let record = dir.join(crate::run_record::FILE);
        let config = match std::fs::read_to_string(&record) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|e| Error::Json { path: record.clone(), message: e.to_string() })?
            }
            Err(_) => serde_json::Value::Null,
        };
        let example = config.get("example").and_then(|e| e.as_str()).unwrap_or("contrastive").to_string();
        let map = match sample(REPORT_POINTS)? {
            Some((embeddings, items)) if embeddings.dim(0)? >= 2 => Some(EmbeddingMap::pca(&embeddings, items)?),
            _ => None,
        };
        let report = RunReport {
            title: format!("{example}: {}", dir.display()),
            config,
            figures: completed(figures),
            history: &history,
            map,
        };
        let path = dir.join("report.html");
        report.write(&path)?;
        written.push(path);
    }
    Ok(written)
}

/// `<PATH>-projector` beside PATH (its `.safetensors` extension dropped).
fn projector_beside(path: &Path) -> PathBuf {
    let stem = if saves_shards(path) { path.to_path_buf() } else { path.with_extension("") };
    let mut name = stem.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push("-projector");
    stem.with_file_name(name)
}

/// The final figures as printed: `figures` with `device` (`--device`: where the model and
/// batches were), `ops` (the path the custom ops took there: `"kernels"` on the CPU, `"generic"`
/// elsewhere or under `CONTRASTIVE_GENERIC_OPS=1`), `world_size` and `global_batch_size`.
pub fn completed(figures: &serde_json::Value) -> serde_json::Value {
    let mut figures = figures.clone();
    if let Some(map) = figures.as_object_mut() {
        let (spec, device) = crate::flags::opened_device();
        map.entry("device").or_insert_with(|| spec.to_string().into());
        map.entry("ops").or_insert_with(|| contrastive_core::kernel::OpPath::on(&device).name().into());
        let (world_size, _) = crate::processes::world();
        map.entry("world_size").or_insert_with(|| world_size.into());
        if let Some(batch) = map.get("batch_size").and_then(|b| b.as_u64()) {
            map.entry("global_batch_size").or_insert_with(|| (batch * world_size as u64).into());
        }
    }
    figures
}

/// Prints the run's figures ([`completed`]) as one JSON object: the last line on stdout.
pub fn print_final(figures: &serde_json::Value) {
    if !crate::processes::is_leader() {
        return;
    }
    let figures = completed(figures);
    println!("{}", serde_json::to_string(&figures).unwrap_or_else(|_| "{}".to_string()));
}

/// Ends an example: its figures as the last line on stdout, or the error on stderr and exit
/// status 1 (130 after Ctrl-C, with the command that resumes the run).
pub fn finish(result: contrastive_core::Result<serde_json::Value>) {
    match result {
        Ok(figures) => {
            print_final(&figures);
            crate::processes::end();
        }
        Err(e @ Error::Interrupted { .. }) => {
            eprintln!("{e}");
            if let Some(command) = resume_command(std::env::args()) {
                eprintln!("resume with: {command}");
            }
            std::process::exit(130);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// The command line that continues this run: `--out DIR` becomes `--resume DIR` (a command that
/// already resumes stays as it is); none when the run has no folder.
pub fn resume_command(args: impl IntoIterator<Item = String>) -> Option<String> {
    let mut out = Vec::new();
    let mut has_folder = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--out" || arg == "--resume" {
            out.push("--resume".to_string());
            out.extend(args.next());
            has_folder = true;
        } else if let Some(dir) = arg.strip_prefix("--out=").or_else(|| arg.strip_prefix("--resume=")) {
            out.push(format!("--resume={dir}"));
            has_folder = true;
        } else {
            out.push(arg);
        }
    }
    has_folder.then(|| out.iter().map(|a| shell_quoted(a)).collect::<Vec<_>>().join(" "))
}

/// `arg` as a POSIX shell reads it back.
fn shell_quoted(arg: &str) -> String {
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@".contains(&b)) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::resume_command;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_resume_command_swaps_out_for_resume_and_quotes() {
        let cmd = resume_command(args(&["target/release/simclr", "--quick", "--out", "my runs/a", "--epochs", "3"]));
        assert_eq!(cmd.as_deref(), Some("target/release/simclr --quick --resume 'my runs/a' --epochs 3"));
        let cmd = resume_command(args(&["simcse", "--out=runs/s", "--data", "it's.txt"]));
        assert_eq!(cmd.as_deref(), Some("simcse --resume=runs/s --data 'it'\\''s.txt'"));
        assert_eq!(resume_command(args(&["moco", "--resume", "r"])).as_deref(), Some("moco --resume r"));
        assert_eq!(resume_command(args(&["moco", "--quick"])), None);
    }
}
