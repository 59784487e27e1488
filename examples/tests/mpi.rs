//! The examples under `mpirun -np 2` (loopback only): each trains on the global batch and reports
//! it once, and those whose steps can be compared take the steps of one process with the global
//! batch; a run resumes on another number of processes; a build without the feature `mpi` says
//! so instead of training N unrelated runs. Skipped without mpirun, unless
//! `CONTRASTIVE_REQUIRE_MPI=1` (CI).

use std::path::Path;
use std::time::Duration;

#[path = "../../core/tests/support/mpirun.rs"]
mod support;
use support::{have_mpirun, mpirun};

fn assets_env() -> Vec<(&'static str, String)> {
    std::env::var("CONTRASTIVE_ASSETS").map(|a| vec![("CONTRASTIVE_ASSETS", a)]).unwrap_or_default()
}

/// Whether the run stopped for want of Fashion-MNIST (a skip, unless CI requires the assets).
fn without_fashion_mnist(run: &support::MpiRun) -> bool {
    without_assets(run, "fashion-mnist")
}

/// Whether the run stopped for want of `assets` (a skip, unless CI requires the assets).
fn without_assets(run: &support::MpiRun, assets: &str) -> bool {
    let missing = !run.status.success() && run.stderr.contains("fetch-assets");
    if missing {
        assert!(std::env::var("CONTRASTIVE_REQUIRE_ASSETS").as_deref() != Ok("1"), "{}", run.stderr);
        eprintln!("{assets} not fetched (scripts/fetch-assets {assets}): skipped");
    }
    missing
}

fn run_two(bin: &str, args: &[&str]) -> Option<support::MpiRun> {
    if !have_mpirun() {
        return None;
    }
    let env = assets_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Some(mpirun(2, Path::new(bin), args, &env, Duration::from_secs(300)))
}

#[cfg(feature = "mpi")]
#[test]
fn simclr_trains_on_two_processes_and_reports_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_arg = out.display().to_string();
    let args = ["--quick", "--max-steps", "2", "--threads", "1", "--batch-size", "32", "--out", &out_arg];
    let Some(run) = run_two(env!("CARGO_BIN_EXE_simclr"), &args) else { return };
    if without_fashion_mnist(&run) {
        return;
    }
    assert!(run.status.success(), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(lines.len(), 1, "rank 0 alone prints the figures:\n{}", run.stdout);
    let figures: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(figures["world_size"], 2);
    assert_eq!(figures["batch_size"], 32);
    assert_eq!(figures["global_batch_size"], 64);
    assert_eq!(figures["steps"], 2);
    // NT-Xent over 64 pairs: about ln(127) = 4.84 at the start, not ln(63) = 4.14 of one
    // process's 32.
    let loss = figures["last_loss"].as_f64().unwrap();
    assert!(loss > 4.4 && loss < 5.2, "{loss}");
    let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    assert_eq!(history.lines().filter(|l| l.contains("\"loss\"")).count(), 2, "{history}");
}

/// Runs `bin` with `common` and `two` on 2 processes, then with `common` and `one` on one, and
/// returns both runs' figures (None when the assets are missing: a skip).
#[cfg(feature = "mpi")]
fn two_then_one(
    bin: &str,
    common: &[&str],
    two: &[&str],
    one: &[&str],
    assets: &str,
) -> Option<(serde_json::Value, serde_json::Value)> {
    let dir = tempfile::tempdir().unwrap();
    let two_out = dir.path().join("two").display().to_string();
    let args: Vec<&str> = common.iter().chain(two).copied().chain(["--out", &two_out]).collect();
    let two = run_two(bin, &args)?;
    if without_assets(&two, assets) {
        return None;
    }
    assert!(two.status.success(), "{}", two.stderr);
    let one_out = dir.path().join("one").display().to_string();
    let one = std::process::Command::new(bin).args(common).args(one).args(["--out", &one_out]).output().unwrap();
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let figures = |stdout: &str| -> serde_json::Value {
        let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
        assert_eq!(lines.len(), 1, "rank 0 alone prints the figures:\n{stdout}");
        serde_json::from_str(lines[0]).unwrap()
    };
    Some((figures(&String::from_utf8_lossy(&one.stdout)), figures(&two.stdout)))
}

/// The figure at `path` of both runs, within `tolerance`.
#[cfg(feature = "mpi")]
fn assert_close(one: &serde_json::Value, two: &serde_json::Value, path: &[&str], tolerance: f64) {
    let get = |v: &serde_json::Value| path.iter().fold(v.clone(), |v, f| v[f].clone()).as_f64().unwrap();
    let (x, y) = (get(one), get(two));
    assert!((x - y).abs() < tolerance, "{path:?}: {x} on one process, {y} on two");
}

/// SimCSE's example on 2 processes of batch 8 trains as one process of batch 16: the same loss
/// after 2 steps and the same Lee-50 figure after training (dropout keyed by the sentence's place
/// in the global batch, padding to the global batch's longest).
#[cfg(feature = "mpi")]
#[test]
fn simcse_on_two_processes_trains_as_one_with_the_global_batch() {
    let common = ["--quick", "--max-steps", "2", "--threads", "1"];
    let bin = env!("CARGO_BIN_EXE_simcse");
    let Some((a, b)) = two_then_one(bin, &common, &["--batch-size", "8"], &["--batch-size", "16"], "minilm sotu")
    else {
        return;
    };
    assert_eq!((b["world_size"].as_u64(), b["global_batch_size"].as_u64()), (Some(2), Some(16)));
    assert_eq!(a["global_batch_size"], b["global_batch_size"]);
    for path in [&["last_loss"][..], &["lee50_after", "pearson"], &["lee50_after", "spearman"]] {
        assert_close(&a, &b, path, 1e-5);
    }
    // Training moved the model: the comparison is not of two untrained encoders.
    assert_ne!(b["lee50_after"]["pearson"], b["lee50_before"]["pearson"]);
}

/// MoCo's example on 2 processes of batch 32 with 2 BatchNorm groups each (shuffle-BN across
/// both) trains as one process of batch 64 with 4 groups: the same loss after 3 steps. (The kNN
/// figures may differ a little: each process keeps BatchNorm running statistics of its own groups.)
#[cfg(feature = "mpi")]
#[test]
fn moco_on_two_processes_trains_as_one_with_the_global_batch() {
    let common = ["--quick", "--max-steps", "3", "--threads", "1", "--symmetric", "--queue-size", "128"];
    let bin = env!("CARGO_BIN_EXE_moco");
    let two = ["--batch-size", "32", "--bn-groups", "2"];
    let Some((a, b)) = two_then_one(bin, &common, &two, &["--batch-size", "64", "--bn-groups", "4"], "fashion-mnist")
    else {
        return;
    };
    assert_eq!((b["world_size"].as_u64(), b["global_batch_size"].as_u64()), (Some(2), Some(64)));
    assert_eq!(b["steps"], 3);
    assert_close(&a, &b, &["last_loss"], 1e-4);
}

/// The methods without negatives on 2 processes of 32 with SyncBatchNorm take the first step of
/// one process of 64: VICReg's statistics over the gathered projections (Barlow Twins gathers
/// with the same code), DINO's multi-crop loss (per sample, averaged over the processes, as BYOL's
/// and SimSiam's). All five passed this on 2026-12-06; two keep CI short.
#[cfg(feature = "mpi")]
#[test]
fn the_methods_without_negatives_on_two_processes_take_the_step_of_one_with_the_global_batch() {
    let common = ["--quick", "--max-steps", "1", "--threads", "1", "--sync-batch-norm"];
    for bin in [env!("CARGO_BIN_EXE_vicreg"), env!("CARGO_BIN_EXE_dino")] {
        let Some((a, b)) =
            two_then_one(bin, &common, &["--batch-size", "32"], &["--batch-size", "64"], "fashion-mnist")
        else {
            return;
        };
        assert_eq!((b["world_size"].as_u64(), b["global_batch_size"].as_u64()), (Some(2), Some(64)), "{bin}");
        let (x, y) = (a["last_loss"].as_f64().unwrap(), b["last_loss"].as_f64().unwrap());
        assert!((x - y).abs() < 1e-4 * x.abs().max(1.0), "{bin}: {x} on one process, {y} on two");
    }
}

/// GraphCL's example on 2 processes of 32 with SyncBatchNorm takes the first step of one process
/// of 64 (the same loss: the global batch's augmentations, GIN's BatchNorm over both processes'
/// nodes, the loss over the gathered projections). Later steps part by float rounding, which
/// GIN's BatchNorm on BZR163 amplifies (graph/tests/data_parallel.rs).
#[cfg(feature = "mpi")]
#[test]
fn graphcl_on_two_processes_takes_the_step_of_one_with_the_global_batch() {
    let common = ["--quick", "--max-steps", "1", "--threads", "1", "--sync-batch-norm"];
    let bin = env!("CARGO_BIN_EXE_graphcl");
    let Some((a, b)) = two_then_one(bin, &common, &["--batch-size", "32"], &["--batch-size", "64"], "") else {
        return;
    };
    assert_eq!((b["world_size"].as_u64(), b["global_batch_size"].as_u64()), (Some(2), Some(64)));
    let loss = |v: &serde_json::Value| v["last_loss"][0].as_f64().unwrap();
    assert!((loss(&a) - loss(&b)).abs() < 1e-5, "{} on one process, {} on two", loss(&a), loss(&b));
}

/// molecule_clip on 2 processes of 32 takes the first step of one process of 64: both towers'
/// embeddings gathered, the SMILES BERT padded to the global batch's longest with the dropout
/// masks of the global batch, GIN's BatchNorm synchronised.
#[cfg(feature = "mpi")]
#[test]
fn molecule_clip_on_two_processes_takes_the_step_of_one_with_the_global_batch() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/molecule_clip/data/WEHI1200");
    let common = ["--quick", "--data", data, "--max-steps", "1", "--threads", "1", "--sync-batch-norm"];
    let bin = env!("CARGO_BIN_EXE_molecule_clip");
    let Some((a, b)) = two_then_one(bin, &common, &["--batch-size", "32"], &["--batch-size", "64"], "") else {
        return;
    };
    assert_eq!((b["world_size"].as_u64(), b["global_batch_size"].as_u64()), (Some(2), Some(64)));
    assert_close(&a, &b, &["last_loss"], 2e-5);
}

/// A program that does not train (augment_preview) runs once under mpirun: the first process
/// writes the files and reports, the others end at once.
#[test]
fn a_program_that_does_not_train_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("preview").display().to_string();
    let Some(run) = run_two(env!("CARGO_BIN_EXE_augment_preview"), &["--out", &out]) else { return };
    if without_fashion_mnist(&run) {
        return;
    }
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.stdout.lines().filter(|l| l.starts_with('{')).count(), 1, "{}", run.stdout);
    assert!(std::fs::read_dir(dir.path().join("preview")).unwrap().count() > 0);
}

/// A run of 2 processes of 32 resumes on one process of 64 (the same global batch); one of 32
/// is refused, naming the global batch.
#[cfg(feature = "mpi")]
#[test]
fn a_run_resumes_on_another_number_of_processes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run").display().to_string();
    let bin = env!("CARGO_BIN_EXE_simclr");
    let args = ["--quick", "--max-steps", "2", "--threads", "1", "--batch-size", "32", "--out", &out];
    let Some(run) = run_two(bin, &args) else { return };
    if without_fashion_mnist(&run) {
        return;
    }
    assert!(run.status.success(), "{}", run.stderr);
    let resume = |batch: &str| {
        std::process::Command::new(bin)
            .args(["--quick", "--max-steps", "3", "--threads", "1", "--batch-size", batch, "--resume", &out])
            .output()
            .unwrap()
    };
    let refused = resume("32");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("must stay 64"), "{stderr}");
    let resumed = resume("64");
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    let figures: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    // The session took the one step left of 3.
    assert_eq!((figures["steps"].as_u64(), figures["world_size"].as_u64()), (Some(1), Some(1)));
    assert_eq!(figures["global_batch_size"], 64);
}

/// The quickstart on 2 processes of 64: one report, the global batch's NT-Xent (128 pairs: about
/// ln(255) = 5.5 at the start, not ln(127) = 4.8 of one process's 64).
#[cfg(feature = "mpi")]
#[test]
fn the_quickstart_trains_on_two_processes() {
    let args = ["--quick", "--max-steps", "1", "--threads", "1", "--batch-size", "64"];
    let Some(run) = run_two(env!("CARGO_BIN_EXE_quickstart"), &args) else { return };
    assert!(run.status.success(), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(lines.len(), 1, "rank 0 alone prints the figures:\n{}", run.stdout);
    let figures: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!((figures["world_size"].as_u64(), figures["global_batch_size"].as_u64()), (Some(2), Some(128)));
    let loss = figures["last_loss"].as_f64().unwrap();
    assert!(loss > 5.1 && loss < 5.8, "{loss}");
}

#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_run_under_mpirun() {
    let Some(run) = run_two(env!("CARGO_BIN_EXE_simclr"), &["--quick", "--max-steps", "1", "--threads", "1"]) else {
        return;
    };
    if without_fashion_mnist(&run) {
        return;
    }
    assert!(!run.status.success());
    assert!(run.stderr.contains("build with --features mpi"), "{}", run.stderr);
}
