//! The template sandbox: a child process (this binary, run with [`SANDBOX_ARG`]) that checks or
//! renders templates under an address-space and CPU limit, and the protocol between it and the
//! operator. At most [`MAX_SANDBOXES`] run at once in the process.
//!
//! I/O contract: the parent writes one JSON request (the task, the templates, the inputs
//! base64-encoded) to the child's stdin and reads one JSON answer (the output base64-encoded,
//! or a [`TemplateError`]) from its stdout, never past `MAX_ANSWER_BYTES`. A child that runs
//! past its limits is a template error; one that cannot start or answer, a sandbox error worth
//! retrying. Inputs and outputs are zeroized once used.

use std::{collections::BTreeMap, io::Write as _, time::Duration};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::{
    MAX_SANDBOXES, Output, SANDBOX_ARG, SANDBOX_CPU_SECONDS, SANDBOX_MEMORY_BYTES, TemplateError,
    TemplateSet, compile_check, render,
};

/// Largest answer the parent reads from a sandbox: every output base64-encoded plus keys and
/// framing. The child's own output limits keep a real answer well below it.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// What the sandbox is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Task {
    /// Compile every template (no values): [`compile_check`].
    Check,
    /// Render every template from the inputs: [`render`].
    Render,
}

/// What the parent sends the sandbox.
#[derive(Serialize, Deserialize)]
struct SandboxRequest {
    task: Task,
    set: TemplateSet,
    /// Input key to base64 of its bytes.
    inputs: BTreeMap<String, String>,
}

impl Drop for SandboxRequest {
    fn drop(&mut self) {
        self.inputs.values_mut().for_each(Zeroize::zeroize);
    }
}

/// What the sandbox answers: every output value base64-encoded, so an answer is at most 4/3 of
/// the output (JSON arrays of numbers or escaped text could be six times larger).
#[derive(Default, Serialize, Deserialize)]
struct WireOutput {
    data: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

impl Drop for WireOutput {
    fn drop(&mut self) {
        self.data.values_mut().for_each(Zeroize::zeroize);
        self.labels.values_mut().for_each(Zeroize::zeroize);
        self.annotations.values_mut().for_each(Zeroize::zeroize);
    }
}

impl WireOutput {
    fn encode(output: &Output) -> WireOutput {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        WireOutput {
            data: output
                .data
                .iter()
                .map(|(k, v)| (k.clone(), b64(v)))
                .collect(),
            labels: output
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), b64(v.as_bytes())))
                .collect(),
            annotations: output
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), b64(v.as_bytes())))
                .collect(),
        }
    }

    fn decode(&self) -> Option<Output> {
        let bytes = |text: &String| base64::engine::general_purpose::STANDARD.decode(text).ok();
        let text = |text: &String| bytes(text).and_then(|b| String::from_utf8(b).ok());
        let mut output = Output::default();
        for (k, v) in &self.data {
            output.data.insert(k.clone(), bytes(v)?);
        }
        for (k, v) in &self.labels {
            output.labels.insert(k.clone(), text(v)?);
        }
        for (k, v) in &self.annotations {
            output.annotations.insert(k.clone(), text(v)?);
        }
        Some(output)
    }
}

/// Why a sandboxed render gave no output.
#[derive(Debug, thiserror::Error)]
pub enum RenderFailure {
    /// The template itself: it does not render, or it ran past the sandbox's limits (the same
    /// inputs fail the same way).
    #[error("{0}")]
    Template(TemplateError),
    /// The sandbox could not do its work (start, I/O, or the wall-clock limit on a busy node):
    /// worth retrying.
    #[error("{0}")]
    Sandbox(String),
}

/// Sandboxes running at once, process-wide: each child may take [`SANDBOX_MEMORY_BYTES`] and
/// [`SANDBOX_CPU_SECONDS`]. Waiters are served first come, first served; since a tenant holds at
/// most one [`TenantTurn`], the queue holds at most one waiter per tenant (round-robin).
static SANDBOXES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_SANDBOXES);

/// Renders in a child process (this binary, run with [`SANDBOX_ARG`]) limited to
/// [`SANDBOX_MEMORY_BYTES`] of address space and [`SANDBOX_CPU_SECONDS`] of CPU, so no template
/// can exhaust the operator's memory or time.
pub async fn render_in_sandbox(
    set: &TemplateSet,
    inputs: &BTreeMap<String, Vec<u8>>,
) -> Result<Output, RenderFailure> {
    match std::env::current_exe() {
        Ok(exe) => render_in_sandbox_with(&exe, set, inputs).await,
        Err(_) => Err(not_started()),
    }
}

/// Compiles every template in the sandbox (the same limits as a render), so a template's
/// syntax is checked before anything is revealed without costing the operator's own CPU.
pub async fn check_in_sandbox(set: &TemplateSet) -> Result<(), RenderFailure> {
    match std::env::current_exe() {
        Ok(exe) => check_in_sandbox_with(&exe, set).await,
        Err(_) => Err(not_started()),
    }
}

fn not_started() -> RenderFailure {
    RenderFailure::Sandbox("the template sandbox cannot be started".into())
}

/// [`check_in_sandbox`] with the operator binary given (tests run it from outside).
pub async fn check_in_sandbox_with(
    exe: &std::path::Path,
    set: &TemplateSet,
) -> Result<(), RenderFailure> {
    ask_sandbox(exe, Task::Check, set, &BTreeMap::new())
        .await
        .map(drop)
}

/// [`render_in_sandbox`] with the operator binary given (tests run it from outside).
pub async fn render_in_sandbox_with(
    exe: &std::path::Path,
    set: &TemplateSet,
    inputs: &BTreeMap<String, Vec<u8>>,
) -> Result<Output, RenderFailure> {
    ask_sandbox(exe, Task::Render, set, inputs).await
}

async fn ask_sandbox(
    exe: &std::path::Path,
    task: Task,
    set: &TemplateSet,
    inputs: &BTreeMap<String, Vec<u8>>,
) -> Result<Output, RenderFailure> {
    let request = SandboxRequest {
        task,
        set: set.clone(),
        inputs: inputs
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    base64::engine::general_purpose::STANDARD.encode(v),
                )
            })
            .collect(),
    };
    let mut body = serde_json::to_vec(&request).expect("request serializes");
    drop(request);
    let result = {
        let _permit = SANDBOXES.acquire().await.expect("never closed");
        run_sandbox(exe, &body).await
    };
    body.zeroize();
    let mut stdout = result?;
    let parsed = serde_json::from_slice::<Result<WireOutput, TemplateError>>(&stdout)
        .map_err(|_| RenderFailure::Sandbox("the template sandbox gave no answer".into()));
    stdout.zeroize();
    match parsed? {
        Ok(wire) => wire
            .decode()
            .ok_or_else(|| RenderFailure::Sandbox("the template sandbox gave no answer".into())),
        Err(e) => Err(RenderFailure::Template(e)),
    }
}

/// Exit code of the sandbox when it could not set itself up or talk to the parent.
const SANDBOX_SETUP_FAILED: i32 = 2;

/// Reads `reader` to its end, or to `cap` bytes: `None` when there was more.
async fn read_capped(
    reader: impl tokio::io::AsyncRead + Unpin,
    cap: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_to_end(&mut bytes).await?;
    if bytes.len() > cap {
        bytes.zeroize();
        return Ok(None);
    }
    Ok(Some(bytes))
}

async fn run_sandbox(exe: &std::path::Path, body: &[u8]) -> Result<Vec<u8>, RenderFailure> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(exe)
        .arg(SANDBOX_ARG)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|_| not_started())?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let write = async move {
        let _ = stdin.write_all(body).await;
        drop(stdin);
    };
    // The answer is read as it comes, never past MAX_ANSWER_BYTES.
    let wait = async {
        let (_, answer) = tokio::join!(write, read_capped(stdout, MAX_ANSWER_BYTES));
        match answer {
            Ok(Some(answer)) => Ok((child.wait().await, answer)),
            Ok(None) => {
                let _ = child.kill().await;
                Err(RenderFailure::Sandbox(
                    "the template sandbox's answer was larger than it may be".into(),
                ))
            }
            Err(_) => Err(RenderFailure::Sandbox("the template sandbox failed".into())),
        }
    };
    let limit = Duration::from_secs(SANDBOX_CPU_SECONDS * 2);
    let (status, mut answer) = match tokio::time::timeout(limit, wait).await {
        Ok(Ok(done)) => done,
        Ok(Err(failure)) => return Err(failure),
        Err(_) => {
            return Err(RenderFailure::Sandbox(format!(
                "the template sandbox took longer than {} s (a busy node?)",
                limit.as_secs()
            )));
        }
    };
    match status {
        Ok(status) if status.success() => Ok(answer),
        other => {
            answer.zeroize();
            match other {
                Ok(status) if status.code() == Some(SANDBOX_SETUP_FAILED) => Err(
                    RenderFailure::Sandbox("the template sandbox could not set itself up".into()),
                ),
                // Killed by a signal: the CPU limit (SIGXCPU) or an allocation past the
                // address-space limit (abort).
                Ok(_) => Err(RenderFailure::Template(TemplateError {
                    template: "target.template".into(),
                    line: None,
                    column: None,
                    problem: format!(
                        "the template exceeded the sandbox's limits ({} MiB of memory, {SANDBOX_CPU_SECONDS} s of CPU)",
                        SANDBOX_MEMORY_BYTES / 1024 / 1024
                    ),
                })),
                Err(_) => Err(RenderFailure::Sandbox("the template sandbox failed".into())),
            }
        }
    }
}

/// The sandbox process: limits itself, reads one request from stdin, writes the result to
/// stdout. Returns the exit code.
pub fn sandbox_main() -> i32 {
    use std::io::Read as _;
    // A core dump of a render killed by its limits would hold every input value.
    if rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .is_err()
        || rlimit::setrlimit(rlimit::Resource::CORE, 0, 0).is_err()
    {
        return SANDBOX_SETUP_FAILED;
    }
    // When memory runs short, the kernel kills the render before the operator.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    let limited = rlimit::setrlimit(
        rlimit::Resource::AS,
        SANDBOX_MEMORY_BYTES,
        SANDBOX_MEMORY_BYTES,
    )
    .and_then(|()| {
        rlimit::setrlimit(
            rlimit::Resource::CPU,
            SANDBOX_CPU_SECONDS,
            SANDBOX_CPU_SECONDS,
        )
    });
    if limited.is_err() {
        return SANDBOX_SETUP_FAILED;
    }
    let mut body = Vec::new();
    if std::io::stdin().read_to_end(&mut body).is_err() {
        return SANDBOX_SETUP_FAILED;
    }
    let request: SandboxRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return SANDBOX_SETUP_FAILED,
    };
    body.zeroize();
    let mut inputs = BTreeMap::new();
    for (key, encoded) in &request.inputs {
        match base64::engine::general_purpose::STANDARD.decode(encoded) {
            Ok(bytes) => inputs.insert(key.clone(), bytes),
            Err(_) => return SANDBOX_SETUP_FAILED,
        };
    }
    let result = match request.task {
        Task::Check => compile_check(&request.set).map(|()| Output::default()),
        Task::Render => render(&request.set, &inputs),
    };
    inputs.values_mut().for_each(Zeroize::zeroize);
    let wire = result
        .as_ref()
        .map(WireOutput::encode)
        .map_err(Clone::clone);
    drop(result);
    let mut answer = serde_json::to_vec(&wire).expect("result serializes");
    drop(wire);
    let written = std::io::stdout().write_all(&answer).is_ok();
    answer.zeroize();
    if written { 0 } else { SANDBOX_SETUP_FAILED }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_answer_is_compact_and_round_trips() {
        let mut output = Output::default();
        output.data.insert("bin".into(), vec![0, 255, 7]);
        output.data.insert("big".into(), vec![b'x'; 30_000]);
        output.labels.insert("l".into(), "v".into());
        output.annotations.insert("a".into(), "\u{1}\n".into());
        let wire =
            serde_json::to_vec(&Ok::<_, TemplateError>(WireOutput::encode(&output))).unwrap();
        assert!(wire.len() < 30_000 * 4 / 3 + 200, "{} bytes", wire.len());
        let back: Result<WireOutput, TemplateError> = serde_json::from_slice(&wire).unwrap();
        let back = back.unwrap().decode().unwrap();
        assert_eq!(back.data, output.data);
        assert_eq!(back.labels, output.labels);
        assert_eq!(back.annotations, output.annotations);
    }

    #[tokio::test]
    async fn answers_are_read_only_up_to_the_cap() {
        let body = vec![b'x'; 1000];
        assert_eq!(
            read_capped(&body[..], 1000).await.unwrap(),
            Some(body.clone())
        );
        assert_eq!(read_capped(&body[..], 999).await.unwrap(), None);
    }
}
