//! What a run leaves behind: plots, exported embeddings, and the final JSON line.

use candle_core::{DType, Tensor};
use contrastive_core::train::read_history;
use contrastive_core::{Error, Result};
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

/// Prints the run's figures as one JSON object: the last line on stdout. An object gains
/// `device` (`--device`: where the model and batches were) and `ops`, the path the custom ops
/// took there (`"kernels"` on the CPU, `"generic"` elsewhere or under
/// `CONTRASTIVE_GENERIC_OPS=1`).
pub fn print_final(figures: &serde_json::Value) {
    if !crate::processes::is_leader() {
        return;
    }
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
