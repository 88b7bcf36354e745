//! Spawning and stopping the control-plane processes, and the watchdog that stops them when the
//! process that started them dies without cleaning up.
//!
//! Why a watchdog: the shared control plane lives in a `static`, whose `Drop` never runs, and a
//! test binary can also be killed with SIGKILL or die from SIGINT. Without `unsafe` there is no
//! `prctl(PR_SET_PDEATHSIG)`, so a tiny `sh` loop polls the owner's PID and, once it is gone,
//! terminates every PID listed in `<dir>/pids` and removes the run directory. Besides the
//! control-plane components, `<dir>/pids` holds the processes registered through
//! [`crate::ControlPlane::stop_with_this_process`] (e.g. the operator under test) while they run.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Name of the file (in the run directory) listing the PIDs the watchdog must stop.
pub(crate) const PIDS_FILE: &str = "pids";
/// Marker: the owner stopped everything itself; the watchdog just exits.
pub(crate) const STOPPED_MARKER: &str = ".stopped";
/// Marker: keep the run directory (logs) when cleaning up, e.g. because a test failed.
pub(crate) const KEEP_MARKER: &str = ".keep";

/// How long a component gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

const WATCHDOG_SCRIPT: &str = r#"
owner=$1 dir=$2
while kill -0 "$owner" 2>/dev/null; do
  [ -e "$dir/.stopped" ] && exit 0
  [ -d "$dir" ] || exit 0
  sleep 0.5
done
[ -e "$dir/.stopped" ] && exit 0
# Reverse start order (controller-manager, apiserver, etcd): the apiserver shuts down in ~2 s
# while etcd is up, but stalls until SIGKILL when etcd is already gone.
reversed=
for pid in $(cat "$dir/pids" 2>/dev/null); do reversed="$pid $reversed"; done
for pid in $reversed; do
  kill -TERM "$pid" 2>/dev/null || continue
  i=0
  while [ "$i" -lt 20 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.5; i=$((i + 1)); done
  kill -KILL "$pid" 2>/dev/null
done
# A node's pods, mounts, cgroups, network namespace and host sysctls (see node.rs).
[ -f "$dir/node/teardown.sh" ] && sh "$dir/node/teardown.sh"
# --one-file-system: never recurse into a mount the teardown could not remove.
[ -e "$dir/.keep" ] || rm -rf --one-file-system "$dir"
"#;

/// Starts the watchdog for the current process and run directory `dir`.
///
/// The watchdog runs in its own process group with all standard streams closed, so a Ctrl-C
/// aimed at `cargo test` does not kill it before it has cleaned up, and it never holds the
/// test's output pipes open.
pub(crate) fn spawn_watchdog(dir: &Path) -> anyhow::Result<()> {
    Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("testenv-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the watchdog (`sh`)")?;
    Ok(())
}

/// One running control-plane process (etcd, kube-apiserver or kube-controller-manager).
#[derive(Debug)]
pub(crate) struct Component {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Component {
    /// Spawns `binary args…` with stdout and stderr appended to `<log_dir>/<name>.log`, in its
    /// own process group (so terminal signals go to the owner, which stops things in order),
    /// and registers its PID with the watchdog before returning.
    pub(crate) fn spawn(
        name: &'static str,
        binary: &Path,
        args: &[String],
        run_dir: &Path,
        log_dir: &Path,
    ) -> anyhow::Result<Component> {
        let log = log_dir.join(format!("{name}.log"));
        let stdout = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let stderr = stdout.try_clone()?;
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        register_pid(run_dir, child.id())?;
        Ok(Component { name, child, log })
    }

    /// `Some(reason)` if the process has already exited.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited early with {status}", self.name)),
            Ok(None) => None,
            Err(error) => Some(format!(
                "{}: cannot query process state: {error}",
                self.name
            )),
        }
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL. Idempotent.
    pub(crate) fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // std only sends SIGKILL; etcd and the apiserver shut down cleanly on SIGTERM, and the
        // `kill` utility is the safe way to send it without `unsafe`.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serialises edits of the PID files: tests of one binary register and deregister their
/// children from several threads.
static PIDS_LOCK: Mutex<()> = Mutex::new(());

/// Appends `pid` to `<dir>/pids`, so the watchdog of `dir` stops it (before the PIDs listed
/// earlier).
pub(crate) fn register_pid(dir: &Path, pid: u32) -> anyhow::Result<()> {
    let _lock = PIDS_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let path = dir.join(PIDS_FILE);
    let mut pids = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(pids, "{pid}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Removes `pid` from `<dir>/pids` (best effort), so the watchdog never signals a process that
/// later reuses the number.
pub(crate) fn deregister_pid(dir: &Path, pid: u32) {
    let _lock = PIDS_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let path = dir.join(PIDS_FILE);
    let Ok(text) = fs::read_to_string(&path) else {
        return;
    };
    let pid = pid.to_string();
    let kept: String = text
        .lines()
        .filter(|line| line.trim() != pid)
        .map(|line| format!("{line}\n"))
        .collect();
    // Write-then-rename: the file is never seen half-written.
    let tmp = dir.join(format!("{PIDS_FILE}.tmp"));
    if fs::write(&tmp, kept).is_ok() {
        let _ = fs::rename(&tmp, &path);
    }
}

/// Whether a process with this PID exists (zombies included), via procfs.
pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Writes a marker file into the run directory, ignoring errors (best effort by design: the
/// markers only steer cleanup).
pub(crate) fn touch_marker(dir: &Path, marker: &str) {
    let _ = fs::write(dir.join(marker), b"");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deregistering_removes_exactly_that_pid() {
        let dir = std::env::temp_dir().join(format!("testenv-pids-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for pid in [100, 1000, 10] {
            register_pid(&dir, pid).unwrap();
        }
        deregister_pid(&dir, 10);
        deregister_pid(&dir, 7); // not listed: no change
        assert_eq!(
            fs::read_to_string(dir.join(PIDS_FILE)).unwrap(),
            "100\n1000\n"
        );
        register_pid(&dir, 10).unwrap();
        deregister_pid(&dir, 100);
        assert_eq!(
            fs::read_to_string(dir.join(PIDS_FILE)).unwrap(),
            "1000\n10\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
