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

/// The data `report.html` in `run_dir` shows (its embedded JSON).
fn report_data(run_dir: &Path) -> serde_json::Value {
    let page = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    let start = "<script type=\"application/json\" id=\"report-data\">";
    let json = &page[page.find(start).unwrap() + start.len()..];
    serde_json::from_str(&json[..json.find("</script>").unwrap()]).unwrap()
}

/// The metadata lines of projector tensor `name` in `dir`, after checking its config and tensor
/// (`rows` lines).
fn projector_metadata(dir: &Path, name: &str, rows: usize) -> Vec<String> {
    let config = std::fs::read_to_string(dir.join("projector_config.pbtxt")).unwrap();
    assert!(config.contains(&format!("tensor_name: \"{name}\"")), "{config}");
    let tensor = std::fs::read_to_string(dir.join(format!("projector/{name}.tsv"))).unwrap();
    assert_eq!(tensor.lines().count(), rows);
    let metadata = std::fs::read_to_string(dir.join(format!("projector/{name}_metadata.tsv"))).unwrap();
    metadata.lines().map(str::to_string).collect()
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
        (env!("CARGO_BIN_EXE_simclr"), &["--temperature", "0"][..], "--temperature"),
        (env!("CARGO_BIN_EXE_simcse"), &["--lr", "NaN"][..], "--lr"),
        (env!("CARGO_BIN_EXE_moco"), &["--momentum", "1.5"][..], "--momentum"),
        (env!("CARGO_BIN_EXE_graphcl"), &["--aug-ratio", "1"][..], "--aug-ratio"),
        (env!("CARGO_BIN_EXE_graphcl"), &["--seeds", "0"][..], "--seeds"),
        (env!("CARGO_BIN_EXE_moco"), &["--queue-size", "18446744073709551616"][..], "--queue-size"),
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

/// Two classes of 20 random 12x12 PNGs (32 training and 8 evaluation images) in `dir`.
fn random_image_folder(dir: &Path) {
    let mut state = 7u32;
    for class in ["a", "b"] {
        let dir = dir.join(class);
        std::fs::create_dir(&dir).unwrap();
        for i in 0..20 {
            let img = image::RgbImage::from_fn(12, 12, |_, _| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                image::Rgb([(state >> 16) as u8, (state >> 8) as u8, state as u8])
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
}

#[test]
fn simclr_evaluates_an_image_folder_smaller_than_knn_k() {
    // 32 training and 8 evaluation images, far below k = 200.
    let assets = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    random_image_folder(data.path());
    let args = ["--data", data.path().to_str().unwrap(), "--batch-size", "8", "--max-steps", "2", "--quick"];
    let json = final_json(&run(env!("CARGO_BIN_EXE_simclr"), &args, assets.path()));
    assert_eq!((json["train_images"].as_u64(), json["test_images"].as_u64()), (Some(32), Some(8)), "{json}");
    assert_eq!(json["steps"], 2, "{json}");
    assert!(json["trained"]["knn"].as_f64().is_some_and(|a| (0.0..=100.0).contains(&a)), "{json}");
}

#[test]
fn save_embeddings_where_it_cannot_write_fails_before_any_work() {
    let assets = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    // A folder of someone's files (shards never go among them), and a folder named like a file.
    std::fs::write(folder.path().join("thesis.tex"), b"mine").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let named_like_a_file = elsewhere.path().join("embeddings.safetensors");
    std::fs::create_dir(&named_like_a_file).unwrap();
    for binary in [env!("CARGO_BIN_EXE_quickstart"), env!("CARGO_BIN_EXE_graphcl"), env!("CARGO_BIN_EXE_simclr")] {
        for (target, says) in [(folder.path(), "thesis.tex"), (named_like_a_file.as_path(), "is a folder")] {
            let out = run(binary, &["--quick", "--save-embeddings", target.to_str().unwrap()], assets.path());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{binary}: {stderr}");
            assert!(stderr.contains(says), "{binary}: {stderr}");
            // Found before the data: simclr has no Fashion-MNIST here and must not get that far.
            assert!(!stderr.contains("fetch-assets"), "{binary}: {stderr}");
        }
    }
    assert_eq!(std::fs::read(folder.path().join("thesis.tex")).unwrap(), b"mine");
}

#[test]
fn a_run_folder_takes_one_run_and_a_resume_keeps_its_flags() {
    let assets = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out_s = out_dir.to_str().unwrap();
    let quickstart = env!("CARGO_BIN_EXE_quickstart");
    final_json(&run(quickstart, &["--quick", "--max-steps", "2", "--out", out_s], assets.path()));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["example"], "quickstart");
    assert_eq!(record["flags"]["max_steps"], 2);
    // The same --out again would mix two runs' checkpoints: refused, pointing at --resume.
    let again = run(quickstart, &["--quick", "--out", out_s], assets.path());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && stderr.contains("already holds a run") && stderr.contains("--resume"),
        "{stderr}"
    );
    // Another seed would be another run; another example cannot read it.
    let other = run(quickstart, &["--quick", "--seed", "3", "--resume", out_s], assets.path());
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success() && stderr.contains("--seed 0") && stderr.contains("--seed 3"), "{stderr}");
    let moco = run(env!("CARGO_BIN_EXE_graphcl"), &["--quick", "--resume", out_s], assets.path());
    let stderr = String::from_utf8_lossy(&moco.stderr);
    assert!(!moco.status.success() && stderr.contains("`quickstart` example, not `graphcl`"), "{stderr}");
    // More steps are the same run.
    let json = final_json(&run(quickstart, &["--quick", "--max-steps", "4", "--resume", out_s], assets.path()));
    assert_eq!(json["steps"], 4, "the run's steps in all, two of them after the resume: {json}");
}

#[test]
fn ctrl_c_saves_and_prints_the_command_that_resumes() {
    let assets = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    // Enough epochs that the run is still training when the signal comes.
    let child = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .args(["--quick", "--epochs", "100000", "--out", out_dir.to_str().unwrap()])
        .env("CONTRASTIVE_ASSETS", assets.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The handler is installed before the first step; a history line means training is under way.
    let history = out_dir.join("history.jsonl");
    let started = std::time::Instant::now();
    while std::fs::metadata(&history).map_or(true, |m| m.len() == 0) {
        assert!(started.elapsed().as_secs() < 120, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted after step") && stderr.contains("checkpoint-"), "{stderr}");
    let resume = stderr.lines().find_map(|l| l.strip_prefix("resume with: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(resume.contains(&format!("--resume {}", out_dir.display())) && !resume.contains("--out"), "{resume}");
    let checkpoints = contrastive_core::train::list_checkpoints(&out_dir).unwrap();
    let last = checkpoints.last().unwrap_or_else(|| panic!("no checkpoint\n{stderr}"));
    assert!(stderr.contains(&last.display().to_string()), "{stderr}");
    assert!(!stdout_has_json(&out), "an interrupted run prints no final figures");
}

fn stdout_has_json(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with('{'))
}

#[test]
fn simclr_trains_from_image_files_of_any_size_and_counts_the_unreadable_ones() {
    let assets = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("images");
    let made = run(
        env!("CARGO_BIN_EXE_synth_data"),
        &[
            "images",
            "--out",
            data.to_str().unwrap(),
            "--images",
            "90",
            "--classes",
            "3",
            "--min-side",
            "16",
            "--max-side",
            "70",
        ],
        assets.path(),
    );
    assert_eq!(final_json(&made)["images"], 90);
    // A truncated JPEG and an empty file among them.
    let good = std::fs::read(data.join("class0/00000000.jpg")).unwrap();
    std::fs::write(data.join("class1/truncated.jpg"), &good[..good.len() / 2]).unwrap();
    std::fs::write(data.join("class2/empty.png"), b"").unwrap();
    let common = ["--quick", "--max-steps", "2", "--batch-size", "16", "--image-size", "24", "--threads", "2"];
    let folder = [&["--data", data.to_str().unwrap()][..], &common[..]].concat();
    let out = run(env!("CARGO_BIN_EXE_simclr"), &folder, assets.path());
    let json = final_json(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((json["steps"].as_u64(), json["image_size"].clone()), (Some(2), serde_json::json!([24, 24])));
    // 92 files, the empty one left out at once: 91 listed, split 4:1 by class.
    assert_eq!(json["train_images"].as_u64().unwrap() + json["test_images"].as_u64().unwrap(), 91);
    assert!(json["trained"]["knn"].as_f64().is_some(), "{json}");
    // The truncated file is found when read (every image is read by the evaluations).
    assert_eq!(json["skipped_files"], 2, "{stderr}");
    assert!(stderr.contains("2 unreadable image files were skipped"), "{stderr}");
    assert!(stderr.contains("truncated.jpg") && stderr.contains("empty.png"), "{stderr}");

    // Asked to stop, the run ends at the first bad file, naming it.
    let out = run(env!("CARGO_BIN_EXE_simclr"), &[&folder[..], &["--stop-on-unreadable"]].concat(), assets.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("empty.png") && stderr.contains("0 bytes"), "{stderr}");

    // A list of paths without labels trains without evaluating; --save-embeddings DIR writes
    // every training image's embedding in shards as they are computed.
    let list = dir.path().join("list.txt");
    let paths: Vec<String> = (0..40).map(|i| format!("images/class{}/{i:08}.jpg", i % 3)).collect();
    std::fs::write(&list, paths.join("\n")).unwrap();
    let shards = dir.path().join("embeddings");
    let listed =
        [&["--data", list.to_str().unwrap(), "--save-embeddings", shards.to_str().unwrap()][..], &common[..]].concat();
    let out = run(env!("CARGO_BIN_EXE_simclr"), &listed, assets.path());
    let json = final_json(&out);
    assert_eq!((json["train_images"].as_u64(), json["steps"].as_u64()), (Some(40), Some(2)));
    assert!(json["trained"].is_null() && json["untrained"].is_null(), "{json}");
    let set = contrastive_eval::EmbeddingShards::open(&shards).unwrap();
    assert_eq!((set.len(), set.labelled()), (40, false));
    // Without --out the projector files go beside the shards: the spread sample of the 40
    // unlabelled training images, without labels.
    let metadata = projector_metadata(&dir.path().join("embeddings-projector"), "training_images", 40);
    assert_eq!((metadata[0].as_str(), metadata[1].as_str()), ("index\tlabel", "0\t"));
    let x = set.to_tensor().unwrap().to_vec2::<f32>().unwrap();
    assert!(x.iter().flatten().all(|v| v.is_finite()) && x[0] != x[1]);
    // A folder holding other files is refused before any training.
    std::fs::write(shards.join("notes.txt"), b"mine").unwrap();
    let out = run(env!("CARGO_BIN_EXE_simclr"), &listed, assets.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() != Some(0) && stderr.contains("notes.txt"), "{stderr}");
}

#[test]
fn the_generic_op_path_trains_the_quickstart_to_the_same_figures() {
    let assets = tempfile::tempdir().unwrap();
    let quickstart = |generic: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quickstart"));
        command.args(["--quick"]).env("CONTRASTIVE_ASSETS", assets.path()).env("RUST_LOG", "warn");
        if generic {
            command.env("CONTRASTIVE_GENERIC_OPS", "1");
        } else {
            command.env_remove("CONTRASTIVE_GENERIC_OPS");
        }
        final_json(&command.output().unwrap())
    };
    let (kernels, generic) = (quickstart(false), quickstart(true));
    assert_eq!((kernels["ops"].as_str(), kernels["device"].as_str()), (Some("kernels"), Some("cpu")), "{kernels}");
    assert_eq!(generic["ops"], "generic", "{generic}");
    // The two paths agree per op to 1e-10 (the crates' tests), but Adam's first steps move each
    // weight by about the learning rate whatever the sign of a near-zero gradient, so runs part
    // by rounding: 25 steps on 360 test digits differed by 1.39 points (5 digits) when measured.
    // The full quickstart (300 steps) agrees within 1 point (the README).
    for figure in ["knn", "linear"] {
        let (a, b) = (kernels["trained"][figure].as_f64().unwrap(), generic["trained"][figure].as_f64().unwrap());
        assert!((a - b).abs() <= 3.0, "{figure}: kernels {a}, generic {b}");
    }
}

#[test]
fn a_device_this_build_cannot_drive_is_named_with_its_feature() {
    let assets = tempfile::tempdir().unwrap();
    let out = run(env!("CARGO_BIN_EXE_quickstart"), &["--quick", "--device", "cuda:1"], assets.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cuda:1") && stderr.contains("--features cuda"), "{stderr}");
    let out = run(env!("CARGO_BIN_EXE_simclr"), &["--quick", "--device", "tpu"], assets.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("cpu, cuda, cuda:N, metal or metal:N"), "{stderr}");
}

/// `simcse --grad-cache-chunk 5` takes the steps of the plain run (batch 16 in chunks of 5, the
/// last of 1): the same loss after 2 steps and the same Lee-50 figure after training.
#[test]
fn simcse_with_gradient_caching_takes_the_plain_steps() {
    let run = |extra: &[&str]| {
        let common = ["--quick", "--max-steps", "2", "--threads", "2", "--batch-size", "16"];
        Command::new(env!("CARGO_BIN_EXE_simcse")).args(common).args(extra).output().unwrap()
    };
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("run");
    let cached = run(&["--grad-cache-chunk", "5"]);
    if !cached.status.success() && String::from_utf8_lossy(&cached.stderr).contains("fetch-assets") {
        assert!(
            std::env::var("CONTRASTIVE_REQUIRE_ASSETS").as_deref() != Ok("1"),
            "{}",
            String::from_utf8_lossy(&cached.stderr)
        );
        eprintln!("MiniLM or the corpus is not fetched (scripts/fetch-assets minilm sotu): skipped");
        return;
    }
    let (a, b) = (final_json(&run(&["--out", run_dir.to_str().unwrap()])), final_json(&cached));
    assert_eq!(b["grad_cache_chunk"], 5);
    // A whole epoch (evaluations run at epochs' ends; --quick's 256 sentences in 4 batches): the
    // collapse statistics of Lee-50's documents in the history.
    let epoch_dir = out.path().join("epoch");
    let args =
        ["--quick", "--epochs", "1", "--threads", "2", "--batch-size", "64", "--out", epoch_dir.to_str().unwrap()];
    final_json(&Command::new(env!("CARGO_BIN_EXE_simcse")).args(args).output().unwrap());
    let history = std::fs::read_to_string(epoch_dir.join("history.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(history.lines().next().unwrap()).unwrap();
    assert_eq!(first["method"]["temperature"], 0.05, "the fixed temperature with each step: {first}");
    let last: serde_json::Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    assert!(last["eval"]["uniformity"].as_f64().is_some_and(|u| (-8.0..=0.0).contains(&u)), "{last}");
    assert!(last["eval"]["effective_rank"].as_f64().is_some_and(|r| r >= 1.0), "{last}");
    // The report maps Lee-50's documents, each shown with its text.
    let report = report_data(&run_dir);
    let texts = report["map"]["texts"].as_array().unwrap();
    assert_eq!((texts.len(), report["map"]["text_kind"].as_str()), (50, Some("sentence")));
    assert!(texts.iter().all(|t| t.as_str().is_some_and(|t| t.len() > 100)));
    let get = |v: &serde_json::Value, path: &[&str]| path.iter().fold(v.clone(), |v, f| v[f].clone()).as_f64().unwrap();
    for path in [&["last_loss"][..], &["lee50_after", "pearson"]] {
        let (x, y) = (get(&a, path), get(&b, path));
        assert!((x - y).abs() < 1e-5, "{path:?}: {x} plain, {y} with gradient caching");
    }
}

/// `graphcl --grad-cache-chunk`: one chunk of the whole batch is the plain run (loss and
/// accuracy; smaller chunks normalise apart, graph/tests/grad_cache.rs).
#[test]
fn graphcl_with_gradient_caching() {
    let run = |extra: &[&str]| {
        let common = ["--quick", "--max-steps", "2", "--threads", "2", "--batch-size", "64"];
        final_json(&Command::new(env!("CARGO_BIN_EXE_graphcl")).args(common).args(extra).output().unwrap())
    };
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("run");
    let (plain, whole) = (run(&[]), run(&["--grad-cache-chunk", "64"]));
    assert_eq!(whole["grad_cache_chunk"], 64);
    // A whole epoch (evaluations run at epochs' ends): the collapse statistics of the evaluation
    // graphs in the history, and the report's map of the graph embeddings with their labels.
    let args = ["--quick", "--epochs", "1", "--threads", "2", "--batch-size", "64", "--out", run_dir.to_str().unwrap()];
    final_json(&Command::new(env!("CARGO_BIN_EXE_graphcl")).args(args).output().unwrap());
    let history = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    assert!(last["eval"]["uniformity"].as_f64().is_some_and(|u| (-8.0..=0.0).contains(&u)), "{last}");
    let report = report_data(&run_dir);
    assert_eq!(report["map"]["labels"].as_array().unwrap().len(), report["map"]["x"].as_array().unwrap().len());
    assert_eq!(whole["grad_cache_batch_norm"], "chunk");
    assert_eq!(plain["grad_cache_batch_norm"], serde_json::Value::Null);
    assert_eq!(plain["last_loss"], whole["last_loss"]);
    assert_eq!(plain["graphcl"]["mean"], whole["graphcl"]["mean"]);
    // Frozen BatchNorm makes every chunk size the full batch's step: chunks of 16 and of 64 end
    // at the same loss, where each chunk's own statistics (16) would not.
    let frozen = |chunk: &str| run(&["--grad-cache-chunk", chunk, "--grad-cache-batch-norm", "running"]);
    let (a, b) = (frozen("16"), frozen("64"));
    assert_eq!(a["grad_cache_batch_norm"], "running");
    let loss = |v: &serde_json::Value| v["last_loss"][0].as_f64().unwrap();
    assert!((loss(&a) - loss(&b)).abs() < 1e-5 * loss(&b).abs(), "{} {}", loss(&a), loss(&b));
    let chunked = run(&["--grad-cache-chunk", "16"]);
    assert!((loss(&chunked) - loss(&b)).abs() > 1e-4 * loss(&b).abs(), "{} {}", loss(&chunked), loss(&b));
    // The choice needs caching, and is one of two words.
    for bad in
        [&["--grad-cache-batch-norm", "running"][..], &["--grad-cache-chunk", "8", "--grad-cache-batch-norm", "frozen"]]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_graphcl")).args(bad).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--grad-cache"), "{stderr}");
    }
}

/// `molecule_clip --grad-cache-chunk`: one chunk of the whole batch is the plain run; chunks of
/// 16 train (each chunk's own BatchNorm statistics, the whole batch's dropout masks).
#[test]
fn molecule_clip_with_gradient_caching() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/molecule_clip/data/WEHI1200");
    let run = |extra: &[&str]| {
        let common = ["--quick", "--data", data, "--max-steps", "3", "--threads", "2", "--batch-size", "64"];
        final_json(&Command::new(env!("CARGO_BIN_EXE_molecule_clip")).args(common).args(extra).output().unwrap())
    };
    let out = tempfile::tempdir().unwrap();
    let (run_dir, embeddings) = (out.path().join("run"), out.path().join("e.safetensors"));
    let plain = run(&["--out", run_dir.to_str().unwrap(), "--save-embeddings", embeddings.to_str().unwrap()]);
    let (whole, chunks) = (run(&["--grad-cache-chunk", "64"]), run(&["--grad-cache-chunk", "16"]));
    assert_eq!(plain["last_loss"], whole["last_loss"]);
    // The learnt temperature with every step; the projector and the report show each held-out
    // molecule twice (graph and SMILES tower) with its SMILES.
    let history = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
    let last: serde_json::Value = history
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|r| r["loss"].is_number())
        .unwrap();
    assert!((last["method"]["temperature"].as_f64().unwrap() - plain["temperature"].as_f64().unwrap()).abs() < 1e-9);
    // A whole epoch (evaluations run at epochs' ends): alignment of the held-out pairs, the graph
    // tower's collapse statistics and uniformity.
    let epoch_dir = out.path().join("epoch");
    let args = [
        "--quick",
        "--data",
        data,
        "--epochs",
        "1",
        "--threads",
        "2",
        "--batch-size",
        "64",
        "--out",
        epoch_dir.to_str().unwrap(),
    ];
    final_json(&Command::new(env!("CARGO_BIN_EXE_molecule_clip")).args(args).output().unwrap());
    let epoch = std::fs::read_to_string(epoch_dir.join("history.jsonl")).unwrap();
    let e = &serde_json::from_str::<serde_json::Value>(epoch.lines().last().unwrap()).unwrap()["eval"];
    assert!(e["alignment"].as_f64().is_some_and(|a| (0.0..=4.0).contains(&a)), "{e}");
    assert!(e["uniformity"].as_f64().is_some_and(|u| (-8.0..=0.0).contains(&u)), "{e}");
    assert!(e["effective_rank"].as_f64().is_some_and(|r| r >= 1.0), "{e}");
    let n = plain["holdout_molecules"].as_u64().unwrap() as usize;
    let metadata = projector_metadata(&run_dir, "molecules", 2 * n);
    assert_eq!(metadata[0], "index\tlabel\tclass\tsmiles");
    assert!(metadata[1].starts_with("0\t0\tgraph\t") && metadata[n + 1].starts_with(&format!("{n}\t1\tSMILES\t")));
    assert_eq!(metadata[1].split('\t').nth(3), metadata[n + 1].split('\t').nth(3), "one molecule, one SMILES");
    let report = report_data(&run_dir);
    assert_eq!(report["map"]["texts"].as_array().unwrap().len(), (2 * n).min(2000));
    assert_eq!(report["map"]["text_kind"], "smiles");
    assert_eq!(chunks["grad_cache_chunk"], 16);
    assert!(chunks["last_loss"].as_f64().is_some_and(f64::is_finite), "{chunks}");
}

/// `moco --grad-cache-chunk`: one chunk of the whole batch is the plain run (loss and kNN
/// accuracy: the keys are the whole batch's either way); with frozen BatchNorm
/// (`--grad-cache-batch-norm running`) chunks of 8 and of 32 are the same run.
#[test]
fn moco_with_gradient_caching() {
    let run = |extra: &[&str]| {
        let common = ["--quick", "--max-steps", "2", "--threads", "2", "--batch-size", "32", "--bn-groups", "2"];
        Command::new(env!("CARGO_BIN_EXE_moco")).args(common).args(extra).output().unwrap()
    };
    let plain = run(&[]);
    if !plain.status.success() && String::from_utf8_lossy(&plain.stderr).contains("fetch-assets") {
        assert!(
            std::env::var("CONTRASTIVE_REQUIRE_ASSETS").as_deref() != Ok("1"),
            "{}",
            String::from_utf8_lossy(&plain.stderr)
        );
        eprintln!("Fashion-MNIST is not fetched (scripts/fetch-assets fashion-mnist): skipped");
        return;
    }
    let (plain, whole) = (final_json(&plain), final_json(&run(&["--grad-cache-chunk", "32"])));
    let loss = |v: &serde_json::Value| v["last_loss"].as_f64().unwrap();
    assert!((loss(&plain) - loss(&whole)).abs() < 1e-5, "{} plain, {} in one chunk", loss(&plain), loss(&whole));
    // The features differ by rounding at most: a kNN vote may flip for an image or two.
    let knn = |v: &serde_json::Value| v["trained"]["knn"].as_f64().unwrap();
    assert!((knn(&plain) - knn(&whole)).abs() <= 0.2, "kNN {} plain, {} in one chunk", knn(&plain), knn(&whole));
    let frozen = |chunk: &str| final_json(&run(&["--grad-cache-chunk", chunk, "--grad-cache-batch-norm", "running"]));
    let (a, b) = (frozen("8"), frozen("32"));
    assert!((loss(&a) - loss(&b)).abs() < 1e-5, "frozen: {} in chunks of 8, {} of 32", loss(&a), loss(&b));
}

/// Each method without negatives trains from an image folder, records the collapse monitor's
/// figures in its history every epoch, saves its embeddings, and refuses a bad flag by name.
#[test]
fn byol_simsiam_barlow_twins_vicreg_and_dino_train_and_record_collapse() {
    let assets = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    random_image_folder(data.path());
    let binaries = [
        env!("CARGO_BIN_EXE_byol"),
        env!("CARGO_BIN_EXE_simsiam"),
        env!("CARGO_BIN_EXE_barlow_twins"),
        env!("CARGO_BIN_EXE_vicreg"),
        env!("CARGO_BIN_EXE_dino"),
    ];
    for binary in binaries {
        let out = tempfile::tempdir().unwrap();
        let run_dir = out.path().join("run");
        let embeddings = out.path().join("e.safetensors");
        let args = [
            "--data",
            data.path().to_str().unwrap(),
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--quick",
            "--out",
            run_dir.to_str().unwrap(),
            "--save-embeddings",
            embeddings.to_str().unwrap(),
        ];
        let json = final_json(&run(binary, &args, assets.path()));
        assert_eq!(json["steps"], 8, "{binary}: 2 epochs of 4 batches: {json}");
        assert!(json["last_loss"].as_f64().is_some_and(f64::is_finite), "{binary}: {json}");
        let history = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
        let monitors: Vec<serde_json::Value> = history
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r.get("eval").is_some())
            .collect();
        assert_eq!(monitors.len(), 2, "{binary}: one evaluation line per epoch\n{history}");
        for m in &monitors {
            let (std, rank) = (m["eval"]["embedding_std"].as_f64(), m["eval"]["effective_rank"].as_f64());
            assert!(std.is_some_and(|s| s >= 0.0) && rank.is_some_and(|r| r >= 1.0), "{binary}: {m}");
            // Uniformity (t = 2) lies in [-8, 0]; alignment (alpha 2) of unit vectors in [0, 4].
            let (uniformity, alignment) = (m["eval"]["uniformity"].as_f64(), m["eval"]["alignment"].as_f64());
            assert!(uniformity.is_some_and(|u| (-8.0..=0.0).contains(&u)), "{binary}: {m}");
            assert!(alignment.is_some_and(|a| (0.0..=4.0).contains(&a)), "{binary}: {m}");
        }
        let saved = candle_core::safetensors::load(&embeddings, &candle_core::Device::Cpu).unwrap();
        assert_eq!(saved["embeddings"].dims(), [8, 256], "{binary}");
        // Step time in the history; DINO's teacher temperature with each step.
        let first: serde_json::Value = serde_json::from_str(history.lines().next().unwrap()).unwrap();
        assert!(first["step_s"].as_f64().is_some_and(|s| s > 0.0), "{binary}: {first}");
        if binary.ends_with("dino") {
            assert!(first["method"]["teacher_temperature"].as_f64().is_some(), "{first}");
        }
        // The projector beside the event files, and the report: the 8 evaluation images with
        // their class folders' names and thumbnails.
        let metadata = projector_metadata(&run_dir, "evaluation_images", 8);
        assert_eq!(metadata[0], "index\tlabel\tclass", "{binary}");
        for line in &metadata[1..] {
            let cells: Vec<&str> = line.split('\t').collect();
            assert_eq!(cells[2], ["a", "b"][cells[1].parse::<usize>().unwrap()], "{binary}: {metadata:?}");
        }
        assert!(run_dir.join("projector/evaluation_images_sprite.png").exists());
        let report = report_data(&run_dir);
        assert_eq!(report["map"]["x"].as_array().unwrap().len(), 8, "{binary}");
        assert!(report["map"]["sprite"].as_str().unwrap().starts_with("data:image/png;base64,"));
        assert_eq!(report["figures"]["steps"], 8);
        assert_eq!(report["series"]["train/loss"].as_array().unwrap().len(), 8);
        assert_eq!(report["series"]["eval/effective_rank"].as_array().unwrap().len(), 2);
    }
    let bad = run(env!("CARGO_BIN_EXE_dino"), &["--quick", "--prototypes", "0"], assets.path());
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--prototypes"));
}

/// `simcse --init` on a RoBERTa, an XLM-RoBERTa and an MPNet folder (the text crate's tiny random
/// ones, with their byte-level BPE, Unigram and WordPiece tokenizers) trains, evaluates and
/// exports a folder that declares its family and loads back; a --max-length past the model's
/// positions is refused by name. Needs no asset. With `SAVE_EXPORTS_TO=DIR` the exports stay in
/// DIR/<fixture> with `ours.json`, our vectors of `tests/golden/family_roundtrip.py`'s sentences,
/// which that script compares with sentence-transformers' for the same folder.
#[test]
fn simcse_trains_and_exports_a_roberta_an_xlm_roberta_and_an_mpnet_folder() {
    // (fixture, model_type, architecture, the longest --max-length its positions allow)
    for (fixture, family, architecture, longest) in [
        ("tiny_roberta", "roberta", "RobertaModel", 38),
        ("tiny_xlmr", "xlm-roberta", "XLMRobertaModel", 38),
        ("tiny_mpnet", "mpnet", "MPNetModel", 158),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("../text/tests/fixtures").join(fixture);
        let data = dir.path().join("lines.txt");
        let line = |i: usize| format!("The river and the stone of the north number {i} met the southern light again.");
        std::fs::write(&data, (0..64).map(line).collect::<Vec<_>>().join("\n")).unwrap();
        let export = dir.path().join("encoder");
        let args = |extra: &[&str]| {
            let mut a: Vec<String> = ["--quick", "--max-steps", "2", "--format", "lines", "--batch-size", "8"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            a.extend(["--init".into(), init.display().to_string(), "--data".into(), data.display().to_string()]);
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        let out = Command::new(env!("CARGO_BIN_EXE_simcse"))
            .args(args(&["--export", &export.display().to_string()]))
            .output()
            .unwrap();
        let json = final_json(&out);
        assert_eq!(json["steps"], 2, "{fixture}");
        assert!(json["last_loss"].as_f64().is_some_and(f64::is_finite), "{fixture}: {json}");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(export.join("config.json")).unwrap()).unwrap();
        assert_eq!((config["model_type"].as_str(), config["pad_token_id"].as_u64()), (Some(family), Some(1)));
        assert_eq!(config["architectures"][0], architecture);
        // The export loads back and encodes.
        let encoder = contrastive_text::SentenceEncoder::from_folder(&export, &candle_core::Device::Cpu).unwrap();
        let sentences = ["alpha river", "cloud", "The river runs north past the stone.", "Café — 東京"];
        let vectors = encoder.encode(&sentences).unwrap();
        assert_eq!(vectors.dims()[0], 4);
        if let Some(keep) = std::env::var_os("SAVE_EXPORTS_TO") {
            let kept = Path::new(&keep).join(fixture);
            std::fs::create_dir_all(&kept).unwrap();
            for entry in walk(&export) {
                let to = kept.join(entry.strip_prefix(&export).unwrap());
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&entry, to).unwrap();
            }
            let ours = serde_json::json!({"sentences": sentences, "vectors": vectors.to_vec2::<f32>().unwrap()});
            std::fs::write(kept.join("ours.json"), ours.to_string()).unwrap();
        }
        let too_long = (longest + 1).to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_simcse")).args(args(&["--max-length", &too_long])).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.status.code().is_some(), "{stderr}");
        assert!(stderr.contains("--max-length") && stderr.contains(&format!("at most {longest}")), "{stderr}");
    }
}

/// `--encoder vit-tiny` trains SimCLR and DINO (whose smaller local views resample the ViT's
/// position embeddings); a patch size that does not divide the views is refused by name.
#[test]
fn simclr_and_dino_train_a_vit() {
    let assets = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    random_image_folder(data.path());
    let common = [
        "--data",
        data.path().to_str().unwrap(),
        "--batch-size",
        "8",
        "--max-steps",
        "2",
        "--quick",
        "--encoder",
        "vit-tiny",
        "--image-size",
        "16",
        "--patch-size",
        "4",
    ];
    for (binary, extra) in
        [(env!("CARGO_BIN_EXE_simclr"), &[][..]), (env!("CARGO_BIN_EXE_dino"), &["--local-size", "8"][..])]
    {
        let json = final_json(&run(binary, &[&common[..], extra].concat(), assets.path()));
        assert_eq!(json["steps"], 2, "{binary}: {json}");
        assert!(json["last_loss"].as_f64().is_some_and(f64::is_finite), "{binary}: {json}");
        assert!(json["spread"]["effective_rank"].as_f64().is_some_and(|r| r >= 1.0), "{binary}: {json}");
    }
    // With drop path, a run stopped after one step and resumed takes the second step an
    // uninterrupted run takes: the drop path streams' positions are in the checkpoint.
    let simclr = env!("CARGO_BIN_EXE_simclr");
    let out = tempfile::tempdir().unwrap();
    let (whole, parts) = (out.path().join("whole"), out.path().join("parts"));
    fn with<'a>(common: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [common, &["--drop-path", "0.5"][..], extra].concat()
    }
    let straight = final_json(&run(simclr, &with(&common, &["--out", whole.to_str().unwrap()]), assets.path()));
    let mut one_step = common.to_vec();
    assert_eq!((one_step[4], one_step[5]), ("--max-steps", "2"));
    one_step[5] = "1";
    let first = with(&one_step, &["--out", parts.to_str().unwrap()]);
    assert_eq!(final_json(&run(simclr, &first, assets.path()))["steps"], 1);
    let resumed = final_json(&run(simclr, &with(&common, &["--resume", parts.to_str().unwrap()]), assets.path()));
    assert_eq!(resumed["last_loss"], straight["last_loss"], "{resumed} vs {straight}");
    // The last --patch-size of `common` becomes 5; DINO's local views of 6 are not whole patches.
    let odd_patch = [&common[..common.len() - 1], &["5"][..]].concat();
    for (binary, args, flag) in [
        (env!("CARGO_BIN_EXE_simclr"), odd_patch, "--patch-size"),
        (env!("CARGO_BIN_EXE_dino"), [&common[..], &["--local-size", "6"][..]].concat(), "--local-size"),
    ] {
        let out = run(binary, &args, assets.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{binary}: {stderr}");
        assert!(stderr.contains(flag), "{binary}: {stderr}");
    }
}

/// The files under `dir`, recursively.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
