//! Component log tails, printed when a test fails.

use std::fs;
use std::path::{Path, PathBuf};

use crate::process::{KEEP_MARKER, touch_marker};

/// Number of lines [`LogsOnPanic`] prints from each component log.
pub const DEFAULT_TAIL_LINES: usize = 40;

/// Component log files in the order they are printed.
pub(crate) const COMPONENT_LOGS: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];

/// The last `lines` lines of every component log in `log_dir`, each block headed by its path.
pub(crate) fn tails(log_dir: &Path, lines: usize) -> String {
    let mut out = String::new();
    for name in COMPONENT_LOGS {
        let path = log_dir.join(format!("{name}.log"));
        out.push_str(&format!(
            "----- last {lines} lines of {} -----\n",
            path.display()
        ));
        match fs::read_to_string(&path) {
            Ok(text) => {
                let all: Vec<&str> = text.lines().collect();
                for line in &all[all.len().saturating_sub(lines)..] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            Err(error) => out.push_str(&format!("(not readable: {error})\n")),
        }
    }
    out
}

/// Guard that, when dropped while the thread is panicking (a failing test), prints the tail of
/// each component log to stderr (which libtest captures and shows with the failure) and marks
/// the run directory to be kept so the full logs survive the run.
///
/// Obtain one from [`ControlPlane::logs_on_panic`](crate::ControlPlane::logs_on_panic);
/// [`TestNamespace`](crate::TestNamespace) holds one already.
#[derive(Debug)]
#[must_use = "the logs are printed when the guard is dropped during a panic"]
pub struct LogsOnPanic {
    pub(crate) run_dir: PathBuf,
    pub(crate) log_dir: PathBuf,
}

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            touch_marker(&self.run_dir, KEEP_MARKER);
            eprintln!(
                "testenv: test failed; control-plane logs are kept in {}\n{}",
                self.log_dir.display(),
                tails(&self.log_dir, DEFAULT_TAIL_LINES)
            );
        }
    }
}
