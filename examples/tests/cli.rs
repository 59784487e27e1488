//! The examples as a user runs them: the built binaries, their exit status, their stderr and the
//! final JSON line. `--max-steps` stops training after that many optimizer steps and the JSON
//! says so; a missing asset stops the run with one line that names the fetch command.

use std::path::Path;
use std::process::{Command, Output};

fn run(binary: &str, args: &[&str], assets: &Path) -> Output {
    Command::new(binary)
        .args(args)
        .env("CONTRASTIVE_ASSETS", assets)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("{binary}: {e}"))
}

/// The last stdout line as JSON, after checking the run succeeded.
fn final_json(out: &Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| panic!("no stdout\n{stderr}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

#[test]
fn max_steps_stops_training_and_the_json_reports_steps_and_last_loss() {
    let assets = tempfile::tempdir().unwrap();
    let out = run(env!("CARGO_BIN_EXE_quickstart"), &["--quick", "--max-steps", "3"], assets.path());
    let json = final_json(&out);
    // --quick alone trains 5 epochs of 5 steps; --max-steps 3 ends the run early.
    assert_eq!(json["steps"], 3, "{json}");
    assert!(json["last_loss"].as_f64().is_some_and(f64::is_finite), "{json}");

    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/molecule_clip/data/WEHI1200");
    let out = run(
        env!("CARGO_BIN_EXE_molecule_clip"),
        &["--quick", "--data", data, "--holdout", "100", "--batch-size", "64", "--max-steps", "2"],
        assets.path(),
    );
    let json = final_json(&out);
    assert_eq!(json["steps"], 2, "{json}");
    assert!(json["last_loss"].as_f64().is_some_and(f64::is_finite), "{json}");
}

#[test]
fn max_steps_must_be_at_least_one() {
    let assets = tempfile::tempdir().unwrap();
    let out = run(env!("CARGO_BIN_EXE_quickstart"), &["--max-steps", "0"], assets.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-steps") && stderr.contains("1.."), "{stderr}");
}

#[test]
fn a_missing_asset_names_the_fetch_command() {
    let assets = tempfile::tempdir().unwrap();
    for (binary, fetch) in [
        (env!("CARGO_BIN_EXE_simclr"), "scripts/fetch-assets fashion-mnist"),
        (env!("CARGO_BIN_EXE_moco"), "scripts/fetch-assets fashion-mnist"),
        (env!("CARGO_BIN_EXE_simcse"), "scripts/fetch-assets minilm"),
        (env!("CARGO_BIN_EXE_molecule_clip"), "scripts/fetch-assets wehi10k"),
    ] {
        let out = run(binary, &["--quick"], assets.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{binary}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{binary}: {stderr}");
        assert!(errors[0].contains(fetch), "{binary}: {stderr}");
        assert!(errors[0].contains(&assets.path().display().to_string()), "{binary}: {stderr}");
    }
    // With the model present, simcse's next missing asset is the corpus.
    let model = assets.path().join("all-MiniLM-L6-v2");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("model.safetensors"), b"").unwrap();
    let out = run(env!("CARGO_BIN_EXE_simcse"), &["--quick"], assets.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("scripts/fetch-assets sotu"), "{stderr}");
}

#[test]
fn flags_out_of_range_are_refused_before_any_work() {
    let assets = tempfile::tempdir().unwrap();
    for (binary, args, flag) in [
        (env!("CARGO_BIN_EXE_graphcl"), &["--batch-size", "0"][..], "--batch-size"),
        (env!("CARGO_BIN_EXE_molecule_clip"), &["--dim", "0"][..], "--dim"),
        (env!("CARGO_BIN_EXE_quickstart"), &["--epochs", "0"][..], "--epochs"),
        (env!("CARGO_BIN_EXE_simclr"), &["--batch-size=-3"][..], "--batch-size"),
        (env!("CARGO_BIN_EXE_augment_preview"), &["--zoom", "100000"][..], "--zoom"),
    ] {
        let out = run(binary, args, assets.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.status.code().is_some(), "{binary} {args:?}: {stderr}");
        assert!(stderr.contains(flag), "{binary} {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{binary} {args:?}: {stderr}");
    }
}

#[test]
fn resume_without_a_checkpoint_fails_at_once() {
    let assets = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    for binary in [env!("CARGO_BIN_EXE_graphcl"), env!("CARGO_BIN_EXE_quickstart")] {
        let started = std::time::Instant::now();
        let out = run(binary, &["--quick", "--resume", dir], assets.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{binary}: {stderr}");
        assert!(stderr.contains("no checkpoint") && stderr.contains(dir), "{binary}: {stderr}");
        eprintln!("{binary}: failed after {:.1} s", started.elapsed().as_secs_f64());
    }
}

#[test]
fn more_threads_than_cores_are_cut_with_a_warning() {
    let assets = tempfile::tempdir().unwrap();
    let out =
        run(env!("CARGO_BIN_EXE_quickstart"), &["--quick", "--max-steps", "1", "--threads", "1000"], assets.path());
    let json = final_json(&out);
    assert_eq!(json["steps"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--threads 1000 is more than the"), "{stderr}");
}

#[test]
fn simclr_evaluates_an_image_folder_smaller_than_knn_k() {
    // Two classes of 20 random 12x12 PNGs: 32 training and 8 evaluation images, far below k = 200.
    let assets = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut state = 7u32;
    for class in ["a", "b"] {
        let dir = data.path().join(class);
        std::fs::create_dir(&dir).unwrap();
        for i in 0..20 {
            let img = image::RgbImage::from_fn(12, 12, |_, _| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                image::Rgb([(state >> 16) as u8, (state >> 8) as u8, state as u8])
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
    let args = ["--data", data.path().to_str().unwrap(), "--batch-size", "8", "--max-steps", "2", "--quick"];
    let json = final_json(&run(env!("CARGO_BIN_EXE_simclr"), &args, assets.path()));
    assert_eq!((json["train_images"].as_u64(), json["test_images"].as_u64()), (Some(32), Some(8)), "{json}");
    assert_eq!(json["steps"], 2, "{json}");
    assert!(json["trained"]["knn"].as_f64().is_some_and(|a| (0.0..=100.0).contains(&a)), "{json}");
}

#[test]
fn save_embeddings_into_a_folder_fails_before_any_work() {
    let assets = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    for binary in [env!("CARGO_BIN_EXE_quickstart"), env!("CARGO_BIN_EXE_graphcl"), env!("CARGO_BIN_EXE_simclr")] {
        let out = run(binary, &["--quick", "--save-embeddings", folder.path().to_str().unwrap()], assets.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{binary}: {stderr}");
        assert!(stderr.contains("--save-embeddings") && stderr.contains("is a folder"), "{binary}: {stderr}");
        // Found before the data: simclr has no Fashion-MNIST here and must not get that far.
        assert!(!stderr.contains("fetch-assets"), "{binary}: {stderr}");
    }
}
