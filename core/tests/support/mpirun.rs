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
