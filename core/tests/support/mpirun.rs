//! Starts a program under `mpirun -np N` the way every multi-process test here must: the
//! transport on loopback only (`--mca btl self,vader`, TCP on `lo`), inside a new network
//! namespace with only `lo` up where `unshare -n` is permitted, and a time limit (a hang is a
//! failure). Shared by core's and the examples' tests through `#[path]`.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a run under mpirun left.
pub struct MpiRun {
    /// mpirun's exit status.
    pub status: ExitStatus,
    /// Every process's stdout, as mpirun relays it (the examples' tests read it).
    #[allow(dead_code)]
    pub stdout: String,
    /// Every process's stderr.
    pub stderr: String,
    /// Wall-clock time of the whole run (core's tests report it).
    #[allow(dead_code)]
    pub took: Duration,
}

/// Whether mpirun is here; without it a test skips, unless `CONTRASTIVE_REQUIRE_MPI=1` (CI),
/// where it fails.
pub fn have_mpirun() -> bool {
    let here = Command::new("mpirun").arg("--version").output().is_ok_and(|o| o.status.success());
    if !here {
        assert!(
            std::env::var("CONTRASTIVE_REQUIRE_MPI").as_deref() != Ok("1"),
            "CONTRASTIVE_REQUIRE_MPI=1 but there is no mpirun (Debian: apt install openmpi-bin libopenmpi-dev)"
        );
        eprintln!("no mpirun: the multi-process test is skipped (Debian: apt install openmpi-bin libopenmpi-dev)");
    }
    here
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `program args` as `np` processes with `env` exported to each, for at most `limit`.
pub fn mpirun(np: usize, program: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> MpiRun {
    let mut line = format!(
        "mpirun --allow-run-as-root --oversubscribe -np {np} --mca btl self,vader --mca btl_tcp_if_include lo \
         --mca oob_tcp_if_include lo"
    );
    for (k, v) in env {
        line.push_str(&format!(" -x {}", quoted(&format!("{k}={v}"))));
    }
    line.push(' ');
    line.push_str(&quoted(&program.display().to_string()));
    for a in args {
        line.push(' ');
        line.push_str(&quoted(a));
    }
    let isolated = Command::new("unshare")
        .args(["-n", "ip", "link", "set", "lo", "up"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut command = if isolated {
        let mut c = Command::new("unshare");
        c.args(["-n", "sh", "-c", &format!("ip link set lo up && exec {line}")]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &format!("exec {line}")]);
        c
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = command
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            let _ = child.wait();
            panic!(
                "mpirun -np {np} {} still running after {limit:?}: a hang\n{}",
                program.display(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    MpiRun {
        status,
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
        took: started.elapsed(),
    }
}

/// What tells a test binary run under mpirun which part to run (its `mpi_worker` test), and where
/// that part writes.
#[allow(dead_code)]
pub const WORKER: &str = "CONTRASTIVE_MPI_WORKER";
#[allow(dead_code)]
pub const OUT: &str = "CONTRASTIVE_MPI_OUT";

/// This test binary's `mpi_worker` test as `np` processes, told to run `part` into `out`; `None`
/// (a skip) without mpirun.
#[allow(dead_code)]
pub fn workers(np: usize, part: &str, out: &Path) -> Option<MpiRun> {
    if !have_mpirun() {
        return None;
    }
    let exe = std::env::current_exe().unwrap();
    let args = ["--exact", "mpi_worker", "--nocapture", "--test-threads", "1"];
    let out = out.display().to_string();
    Some(mpirun(np, &exe, &args, &[(WORKER, part), (OUT, &out)], Duration::from_secs(300)))
}

/// The losses of a run folder's `history.jsonl`.
#[allow(dead_code)]
pub fn losses(dir: &Path) -> Vec<f64> {
    let history = contrastive_core::train::read_history(&dir.join("history.jsonl")).unwrap();
    history.iter().filter_map(|r| r.loss).collect()
}

/// Asserts that a run on one process (in `one`) and on several (in `several`) took `steps` steps
/// with the same losses and end with the same `state` (named tensors read from a run folder),
/// each within `tolerance`; returns the largest difference of a tensor value.
#[allow(dead_code)]
pub fn assert_same_run(
    what: &str,
    one: &Path,
    several: &Path,
    steps: usize,
    tolerance: f64,
    state: impl Fn(&Path) -> Vec<(String, Vec<f32>)>,
) -> f32 {
    let (a, b) = (losses(one), losses(several));
    assert_eq!((a.len(), b.len()), (steps, steps), "{what}: steps");
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() < tolerance, "{what}: step {step}: loss {x} with one process, {y} with several");
    }
    let (x, y) = (state(one), state(several));
    let names = |v: &[(String, Vec<f32>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&x), names(&y), "{what}: tensors");
    let mut largest = 0.0f32;
    for ((name, u), (_, v)) in x.iter().zip(&y) {
        assert_eq!(u.len(), v.len(), "{what}: {name}");
        for (p, q) in u.iter().zip(v) {
            assert!(f64::from((p - q).abs()) < tolerance, "{what}: {name}: {p} with one process, {q} with several");
            largest = largest.max((p - q).abs());
        }
    }
    eprintln!("{what}: losses {a:?}; largest difference of a tensor {largest:e}");
    largest
}

/// The trainer of the equivalence tests: at most `steps` steps of SGD with momentum 0.9 at a
/// constant `lr` over at most `epochs` epochs, the last checkpoint only, no progress bar. SGD,
/// not Adam: Adam's step does not change when every gradient is scaled alike, and a test must see
/// a gradient that is off by a factor.
#[allow(dead_code)]
pub fn sgd_steps(epochs: usize, steps: usize, lr: f64) -> contrastive_core::train::TrainerConfig {
    contrastive_core::train::TrainerConfig {
        epochs,
        max_steps: Some(steps),
        lr,
        schedule: contrastive_core::optim::Schedule::Constant,
        optimizer: contrastive_core::optim::OptimizerConfig::Sgd {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        },
        checkpoint_every: None,
        progress: false,
        ..Default::default()
    }
}

/// The variables of `store` loaded from the run's last checkpoint in `dir`, by name.
#[allow(dead_code)]
pub fn checkpoint_values(store: &contrastive_core::nn::ParamStore, dir: &Path) -> Vec<(String, Vec<f32>)> {
    let checkpoint = contrastive_core::train::list_checkpoints(dir).unwrap().pop().expect("a checkpoint");
    store.load(&checkpoint.join("model.safetensors")).unwrap();
    store.all().into_iter().map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect()
}
