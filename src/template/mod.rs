//! Templates for the target Secret (`spec.target.template`), rendered with minijinja.
//!
//! Pure part: [`compile_check`] (syntax, before anything is revealed) and [`render`] (values in,
//! data/labels/annotations out). The engine is configured as a sandbox: no loader (so no
//! `include`, `import` or `extends`; the crate is built without `multi_template` and `macros`),
//! strict undefined variables, a fuel limit, a recursion limit and a cap on each output. Memory
//! cannot be bounded inside one process (a loop of string copies allocates before any output is
//! written), so the operator renders in a child process with an address-space and CPU limit
//! ([`render_in_sandbox`]; the child runs [`sandbox_main`]).
//!
//! Error messages are built here from the error's kind and position and the template's own
//! text, never from the engine's message: a render error can quote a value.

use std::{collections::BTreeMap, io::Write as _, time::Duration};

use base64::Engine as _;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::{crd::TemplateMergePolicy, render::is_label_value};

/// Instructions one template may execute.
pub const FUEL: u64 = 50_000;
/// Nesting depth of loops and blocks.
pub const RECURSION_LIMIT: usize = 32;
/// Largest output of one data template (a Secret holds 1 MiB in all).
pub const MAX_DATA_OUTPUT: usize = 1024 * 1024;
/// Largest output of one annotation template.
pub const MAX_ANNOTATION_OUTPUT: usize = 64 * 1024;
/// Address space of the sandbox process.
pub const SANDBOX_MEMORY_BYTES: u64 = 256 * 1024 * 1024;
/// CPU seconds of the sandbox process.
pub const SANDBOX_CPU_SECONDS: u64 = 5;
/// The argument that makes the operator binary run as the sandbox.
pub const SANDBOX_ARG: &str = "__render-template";
/// Everything one resource's templates may pull in together: inline templates and every
/// `templateFrom` ConfigMap item, in bytes (each item is also limited on its own).
pub const MAX_TEMPLATES_TOTAL_BYTES: usize = 256 * 1024;
/// The output of all data templates of a resource together: what a Secret holds.
pub const MAX_DATA_TOTAL: usize = 1024 * 1024;
/// The output of all annotation templates of a resource together (the apiserver's limit on an
/// object's annotations).
pub const MAX_ANNOTATIONS_TOTAL: usize = 256 * 1024;
/// Sandboxes running at once in the whole process; one tenant (namespace) holds at most one
/// ([`TenantTurn`]), so one tenant's renders never take every sandbox.
pub const MAX_SANDBOXES: usize = 2;
/// Largest answer the parent reads from a sandbox: every output base64-encoded plus keys and
/// framing. The child's own output limits keep a real answer well below it.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// One template and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Where a person finds it: `target.template.data[dsn]`, `ConfigMap app-templates key
    /// config.yaml`.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// Every template of a resource, resolved (ConfigMap texts included).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TemplateSet {
    /// Secret key to template.
    pub data: BTreeMap<String, Source>,
    /// Label key to template.
    pub labels: BTreeMap<String, Source>,
    /// Annotation key to template.
    pub annotations: BTreeMap<String, Source>,
    /// Whether the source keys are written too.
    pub merge: bool,
}

impl TemplateSet {
    /// The templates of one spec; `config_maps` gives the ConfigMap templates (Secret key →
    /// source), already read.
    pub fn from_spec(
        template: &crate::crd::SecretTemplate,
        config_maps: BTreeMap<String, Source>,
    ) -> TemplateSet {
        let named = |kind: &str, map: &BTreeMap<String, String>| {
            map.iter()
                .map(|(key, text)| {
                    (
                        key.clone(),
                        Source {
                            name: format!("target.template.{kind}[{key}]"),
                            text: text.clone(),
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>()
        };
        let mut data = config_maps;
        // An inline template wins over a ConfigMap one for the same key.
        data.extend(named("data", &template.data));
        TemplateSet {
            data,
            labels: named("labels", &template.labels),
            annotations: named("annotations", &template.annotations),
            merge: template.merge_policy == TemplateMergePolicy::Merge,
        }
    }

    fn all(&self) -> impl Iterator<Item = &Source> {
        self.data
            .values()
            .chain(self.labels.values())
            .chain(self.annotations.values())
    }
}

/// What the templates produced. Holds values: zeroized on drop, never formatted.
#[derive(Default, Serialize, Deserialize)]
pub struct Output {
    /// Secret key to bytes.
    pub data: BTreeMap<String, Vec<u8>>,
    /// Label key to value.
    pub labels: BTreeMap<String, String>,
    /// Annotation key to value.
    pub annotations: BTreeMap<String, String>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("data", &self.data.keys().collect::<Vec<_>>())
            .field("labels", &self.labels.keys().collect::<Vec<_>>())
            .field("annotations", &self.annotations.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.data.values_mut().for_each(Zeroize::zeroize);
        self.labels.values_mut().for_each(Zeroize::zeroize);
        self.annotations.values_mut().for_each(Zeroize::zeroize);
    }
}

/// A template that does not compile or render: where, and what kind of problem, in our words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{template}{}: {problem}", position(*.line, *.column))]
pub struct TemplateError {
    /// The template's name ([`Source::name`]).
    pub template: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong; never a value.
    pub problem: String,
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" line {l} column {c}"),
        (Some(l), None) => format!(" line {l}"),
        _ => String::new(),
    }
}

/// The filters added to minijinja's built-in ones, for the README.
pub const EXTRA_FILTERS: &[&str] = &[
    "b64enc",
    "b64dec",
    "fromjson",
    "toyaml",
    "fromyaml",
    "urlencode_userinfo",
];

/// Every filter the README documents, with an example and what it renders (a unit test renders
/// each, so the documented list is the one that works).
pub const DOCUMENTED_FILTERS: &[(&str, &str, &str)] = &[
    (
        "b64enc",
        r#"{{ "robot:t0k3n" | b64enc }}"#,
        "cm9ib3Q6dDBrM24=",
    ),
    ("b64dec", r#"{{ "aGk=" | b64dec }}"#, "hi"),
    (
        "tojson",
        r#"{{ {"user": "app"} | tojson }}"#,
        r#"{"user":"app"}"#,
    ),
    ("fromjson", r#"{{ ('{"a": 1}' | fromjson).a }}"#, "1"),
    ("toyaml", r#"{{ {"a": 1} | toyaml }}"#, "a: 1\n"),
    (
        "fromyaml",
        r#"{{ ("a: [1, 2]" | fromyaml).a | length }}"#,
        "2",
    ),
    ("trim", r#"{{ "  x  " | trim }}"#, "x"),
    ("indent", r#"{{ "a\nb" | indent(2) }}"#, "a\n  b"),
    ("upper", r#"{{ "x" | upper }}"#, "X"),
    ("lower", r#"{{ "X" | lower }}"#, "x"),
    ("title", r#"{{ "ab cd" | title }}"#, "Ab Cd"),
    ("replace", r#"{{ "a.b" | replace(".", "-") }}"#, "a-b"),
    (
        "urlencode",
        r#"{{ "p@ss word" | urlencode }}"#,
        "p%40ss%20word",
    ),
    (
        "urlencode_userinfo",
        r#"{{ "p@ss/w:rd x" | urlencode_userinfo }}"#,
        "p%40ss%2Fw%3Ard%20x",
    ),
    (
        "default",
        r#"{{ data["absent"] | default("none") }}"#,
        "none",
    ),
    ("join", r#"{{ ["a", "b"] | join(",") }}"#, "a,b"),
    ("split", r#"{{ "a,b" | split(",") | last }}"#, "b"),
    ("length", r#"{{ "abc" | length }}"#, "3"),
    ("first", r#"{{ "abc" | first }}"#, "a"),
    ("int", r#"{{ "42" | int + 1 }}"#, "43"),
    ("string", r#"{{ 7 | string }}"#, "7"),
];

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_keep_trailing_newline(true);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_filter("b64enc", b64enc);
    env.add_filter("b64dec", b64dec);
    env.add_filter("fromjson", fromjson);
    env.add_filter("toyaml", toyaml);
    env.add_filter("fromyaml", fromyaml);
    env.add_filter("urlencode_userinfo", urlencode_userinfo);
    env
}

// The filters' own errors never name the input: the caller builds the message from the kind.
fn filter_error(message: &'static str) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, message)
}

fn b64enc(value: &Value) -> Result<String, minijinja::Error> {
    let engine = base64::engine::general_purpose::STANDARD;
    match (value.as_bytes(), value.as_str()) {
        (_, Some(text)) => Ok(engine.encode(text)),
        (Some(bytes), None) => Ok(engine.encode(bytes)),
        _ => Err(filter_error("b64enc needs a string")),
    }
}

fn b64dec(value: &str) -> Result<Value, minijinja::Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| filter_error("b64dec: not valid base64"))?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(e) => Value::from_bytes(e.into_bytes()),
    })
}

fn fromjson(value: &str) -> Result<Value, minijinja::Error> {
    serde_json::from_str::<serde_json::Value>(value)
        .map(|v| Value::from_serialize(&v))
        .map_err(|_| filter_error("fromjson: not valid JSON"))
}

fn fromyaml(value: &str) -> Result<Value, minijinja::Error> {
    serde_yaml::from_str::<serde_json::Value>(value)
        .map(|v| Value::from_serialize(&v))
        .map_err(|_| filter_error("fromyaml: not valid YAML"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`), so
/// the result is safe as the user or password of a URL's userinfo (`/`, `@`, `:`, `?`, `#`, `%`
/// and spaces included; minijinja's `urlencode` leaves `/` as it is).
fn urlencode_userinfo(value: &Value) -> Result<String, minijinja::Error> {
    let bytes = match (value.as_str(), value.as_bytes()) {
        (Some(text), _) => text.as_bytes(),
        (None, Some(bytes)) => bytes,
        _ => return Err(filter_error("urlencode_userinfo needs a string")),
    };
    Ok(encode_userinfo(bytes))
}

fn encode_userinfo(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn toyaml(value: &Value) -> Result<String, minijinja::Error> {
    serde_yaml::to_string(value).map_err(|_| filter_error("toyaml: cannot encode"))
}

/// Compiles every template (no values involved): a syntax error is reported before anything is
/// revealed. Compile errors may quote the template's own text, which is not secret.
pub fn compile_check(set: &TemplateSet) -> Result<(), TemplateError> {
    let env = environment();
    for source in set.all() {
        env.template_from_named_str(&source.name, &source.text)
            .map_err(|e| describe_compile_error(source, &e))?;
    }
    Ok(())
}

fn describe_compile_error(source: &Source, error: &minijinja::Error) -> TemplateError {
    let (line, column) = locate(source, error);
    TemplateError {
        template: source.name.clone(),
        line,
        column,
        // Compile errors see only the template text, so the engine's detail is safe here.
        problem: match error.detail() {
            Some(detail) => format!("{}: {detail}", error.kind()),
            None => error.kind().to_string(),
        },
    }
}

fn locate(source: &Source, error: &minijinja::Error) -> (Option<usize>, Option<usize>) {
    let line = error.line();
    let column = error.range().and_then(|range| {
        let before = source.text.get(..range.start)?;
        Some(before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1)
    });
    (line, column)
}

/// The variables a template sees: each input key that is an identifier, plus the map `data`.
fn context(inputs: &BTreeMap<String, Vec<u8>>) -> Value {
    let value_of = |bytes: &Vec<u8>| match std::str::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(_) => Value::from_bytes(bytes.clone()),
    };
    let all: BTreeMap<String, Value> = inputs
        .iter()
        .map(|(k, v)| (k.clone(), value_of(v)))
        .collect();
    let mut vars: BTreeMap<String, Value> = all
        .iter()
        .filter(|(k, _)| is_identifier(k) && k.as_str() != "data")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.insert("data".into(), Value::from(all));
    Value::from(vars)
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A writer that refuses more than `limit` bytes.
struct Capped {
    bytes: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(std::io::Error::other("output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Capped {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// Renders every template from the input keys (what `data` and `dataFrom` produced). Each
/// output has its own limit, and the data and annotation outputs of the resource together have
/// one too ([`MAX_DATA_TOTAL`], [`MAX_ANNOTATIONS_TOTAL`]).
pub fn render(
    set: &TemplateSet,
    inputs: &BTreeMap<String, Vec<u8>>,
) -> Result<Output, TemplateError> {
    let env = environment();
    let ctx = context(inputs);
    let mut output = Output::default();
    // (per-output limit, what is left of the total)
    let render_one = |source: &Source,
                      limit: usize,
                      left: &mut usize,
                      total: usize|
     -> Result<Vec<u8>, TemplateError> {
        let template = env
            .template_from_named_str(&source.name, &source.text)
            .map_err(|e| describe_compile_error(source, &e))?;
        let mut out = Capped {
            bytes: Vec::new(),
            limit: limit.min(*left),
        };
        match template.render_captured_to(&ctx, &mut out) {
            Ok(_) => {
                *left -= out.bytes.len();
                Ok(std::mem::take(&mut out.bytes))
            }
            Err(e) if e.kind() == ErrorKind::WriteFailure && *left < limit => Err(TemplateError {
                template: source.name.clone(),
                line: None,
                column: None,
                problem: format!(
                    "the templates of this kind together render more than {total} bytes"
                ),
            }),
            Err(e) => Err(describe_render_error(source, &template, &e, inputs, limit)),
        }
    };
    let mut data_left = MAX_DATA_TOTAL;
    for (key, source) in &set.data {
        let bytes = render_one(source, MAX_DATA_OUTPUT, &mut data_left, MAX_DATA_TOTAL)?;
        output.data.insert(key.clone(), bytes);
    }
    for (key, source) in &set.labels {
        let mut unlimited = usize::MAX;
        let bytes = render_one(source, 63, &mut unlimited, usize::MAX)?;
        let text = String::from_utf8(bytes).map_err(|_| TemplateError {
            template: source.name.clone(),
            line: None,
            column: None,
            problem: "renders bytes that are not UTF-8 text, which a label cannot hold".into(),
        })?;
        if !is_label_value(&text) {
            return Err(TemplateError {
                template: source.name.clone(),
                line: None,
                column: None,
                problem: "renders a value that is not a valid label value (empty, or at most 63 characters [A-Za-z0-9_.-] beginning and ending alphanumeric)".into(),
            });
        }
        output.labels.insert(key.clone(), text);
    }
    let mut annotations_left = MAX_ANNOTATIONS_TOTAL;
    for (key, source) in &set.annotations {
        let bytes = render_one(
            source,
            MAX_ANNOTATION_OUTPUT,
            &mut annotations_left,
            MAX_ANNOTATIONS_TOTAL,
        )?;
        let text = String::from_utf8(bytes).map_err(|_| TemplateError {
            template: source.name.clone(),
            line: None,
            column: None,
            problem: "renders bytes that are not UTF-8 text, which an annotation cannot hold"
                .into(),
        })?;
        output.annotations.insert(key.clone(), text);
    }
    Ok(output)
}

fn describe_render_error(
    source: &Source,
    template: &minijinja::Template<'_, '_>,
    error: &minijinja::Error,
    inputs: &BTreeMap<String, Vec<u8>>,
    limit: usize,
) -> TemplateError {
    let (line, column) = locate(source, error);
    let problem = match error.kind() {
        ErrorKind::UndefinedError => {
            let mut missing: Vec<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| v != "data" && !inputs.contains_key(v))
                .collect();
            missing.sort();
            let known: Vec<&String> = inputs.keys().collect();
            if missing.is_empty() {
                format!(
                    "undefined value (a key or attribute that does not exist; the sources produce {known:?})"
                )
            } else {
                format!(
                    "undefined value: {} not produced by any source (the sources produce {known:?})",
                    missing.join(", ")
                )
            }
        }
        ErrorKind::WriteFailure => format!("the output is larger than {limit} bytes"),
        ErrorKind::OutOfFuel => format!("the template ran more than {FUEL} instructions"),
        ErrorKind::InvalidOperation => {
            "invalid operation: a filter, test or operator cannot handle its input (which is not shown)".into()
        }
        // The kind's description is a fixed text; the detail could quote a value.
        kind => kind.to_string(),
    };
    // The failing expression as written in the template (template text, never a value).
    let problem = match error.range().and_then(|r| source.text.get(r)) {
        Some(expression) if !expression.is_empty() && expression.len() <= 80 => {
            format!("{problem}, in `{expression}`")
        }
        _ => problem,
    };
    TemplateError {
        template: source.name.clone(),
        line,
        column,
        problem,
    }
}

/// True when a value kind is text-like (used by tests).
#[cfg(test)]
fn is_text(value: &Value) -> bool {
    matches!(
        value.kind(),
        minijinja::value::ValueKind::String | minijinja::value::ValueKind::Bytes
    )
}

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

/// The tenants (namespaces) holding their turn.
static TURNS: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// One tenant's turn to check or render templates: at most one per tenant at a time, held from
/// the first sandbox a reconcile needs until its render is done. A reconcile that does not get
/// it does not wait (it would hold a reconcile slot): it tries again shortly.
#[derive(Debug)]
pub struct TenantTurn {
    tenant: String,
}

impl TenantTurn {
    /// The tenant's turn, or `None` while another reconcile of the same tenant holds it.
    pub fn try_take(tenant: &str) -> Option<TenantTurn> {
        let mut turns = TURNS.lock().expect("turns lock");
        turns.insert(tenant.to_string()).then(|| TenantTurn {
            tenant: tenant.to_string(),
        })
    }
}

impl Drop for TenantTurn {
    fn drop(&mut self) {
        TURNS.lock().expect("turns lock").remove(&self.tenant);
    }
}

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

    fn set(data: &[(&str, &str)]) -> TemplateSet {
        TemplateSet {
            data: data
                .iter()
                .map(|(k, t)| {
                    (
                        k.to_string(),
                        Source {
                            name: format!("target.template.data[{k}]"),
                            text: t.to_string(),
                        },
                    )
                })
                .collect(),
            ..TemplateSet::default()
        }
    }

    fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn text(output: &Output, key: &str) -> String {
        String::from_utf8(output.data[key].clone()).unwrap()
    }

    #[test]
    fn every_documented_filter_renders_its_example() {
        for (filter, template, expected) in DOCUMENTED_FILTERS {
            assert!(template.contains(filter), "{filter}: example uses it");
            let output = render(&set(&[("k", template)]), &inputs(&[]))
                .unwrap_or_else(|e| panic!("{filter}: {e}"));
            assert_eq!(text(&output, "k"), *expected, "{filter}");
        }
        for extra in EXTRA_FILTERS {
            assert!(
                DOCUMENTED_FILTERS.iter().any(|(f, _, _)| f == extra),
                "{extra} is documented"
            );
        }
    }

    #[test]
    fn renders_a_dsn_from_two_keys_and_dotted_keys_through_data() {
        let out = render(
            &set(&[
                (
                    "dsn",
                    "postgres://{{ username }}:{{ password | urlencode }}@db:5432/app",
                ),
                ("cert", "{{ data['tls.crt'] | trim }}"),
            ]),
            &inputs(&[
                ("username", "app"),
                ("password", "p@ss w"),
                ("tls.crt", "  CERT\n"),
            ]),
        )
        .unwrap();
        assert_eq!(text(&out, "dsn"), "postgres://app:p%40ss%20w@db:5432/app");
        assert_eq!(text(&out, "cert"), "CERT");
    }

    #[test]
    fn extra_filters_encode_and_parse() {
        let out = render(
            &set(&[
                ("b64", "{{ token | b64enc }}"),
                ("dec", "{{ encoded | b64dec }}"),
                ("json", "{{ (doc | fromjson).user }}"),
                ("yaml", "{{ (conf | fromyaml).port }}"),
                ("toyaml", "{{ {'a': token} | toyaml }}"),
                (
                    "tojson",
                    "{{ {'auths': {'r.io': {'auth': token}}} | tojson }}",
                ),
                ("indent", "x:\n{{ conf | indent(2, true) }}"),
                ("upper", "{{ token | upper }}{{ token | lower }}"),
            ]),
            &inputs(&[
                ("token", "Tok"),
                ("encoded", "aGVsbG8="),
                ("doc", r#"{"user": "u1"}"#),
                ("conf", "port: 5432\n"),
            ]),
        )
        .unwrap();
        assert_eq!(text(&out, "b64"), "VG9r");
        assert_eq!(text(&out, "dec"), "hello");
        assert_eq!(text(&out, "json"), "u1");
        assert_eq!(text(&out, "yaml"), "5432");
        assert_eq!(text(&out, "toyaml"), "a: Tok\n");
        assert_eq!(text(&out, "tojson"), r#"{"auths":{"r.io":{"auth":"Tok"}}}"#);
        assert_eq!(text(&out, "indent"), "x:\n  port: 5432");
        assert_eq!(text(&out, "upper"), "TOKtok");
    }

    #[test]
    fn binary_inputs_stay_bytes_and_encode_exactly() {
        let mut raw = BTreeMap::new();
        raw.insert("blob".to_string(), vec![0xff, 0x00, 0x80]);
        let out = render(&set(&[("b", "{{ blob | b64enc }}")]), &raw).unwrap();
        assert_eq!(text(&out, "b"), "/wCA");
        assert!(is_text(&Value::from_bytes(vec![1])));
    }

    #[test]
    fn errors_name_template_line_and_column_but_never_a_value() {
        let canary = "CANARY-VALUE-123";
        let values = inputs(&[("password", canary)]);
        // Undefined variable: named from the template's text.
        let e = render(&set(&[("k", "a\n  {{ pasword }}")]), &values).unwrap_err();
        assert_eq!(e.template, "target.template.data[k]");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.column, Some(6));
        assert!(e.problem.contains("pasword"), "{e}");
        // Errors whose engine message would quote the value.
        for text in [
            "{{ password | int }}",
            "{{ password.nope }}",
            "{{ password | b64dec }}",
            "{{ password | fromjson }}",
            "{{ password(1) }}",
            "{{ password + 1 }}",
            "{% for x in password %}{{ x.y }}{% endfor %}",
        ] {
            let e = render(&set(&[("k", text)]), &values).unwrap_err();
            let message = e.to_string();
            assert!(!message.contains(canary), "{text}: {message}");
            assert!(!message.contains("CANARY"), "{text}: {message}");
            assert_eq!(e.line, Some(1), "{text}: {message}");
        }
    }

    #[test]
    fn syntax_errors_are_found_before_any_value_is_read() {
        let e = compile_check(&set(&[("k", "ok\n{{ user }\n")])).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.problem.starts_with("syntax error"), "{e}");
        assert!(compile_check(&set(&[("k", "{{ user }}")])).is_ok());
    }

    #[test]
    fn the_sandbox_refuses_includes_runaway_loops_and_huge_output() {
        let values = inputs(&[("v", "x")]);
        let e = compile_check(&set(&[("k", "{% include 'other' %}")])).unwrap_err();
        assert!(e.problem.starts_with("syntax error"), "{e}");
        let e = compile_check(&set(&[("k", "{% macro m() %}{% endmacro %}")])).unwrap_err();
        assert!(e.problem.starts_with("syntax error"), "{e}");
        let e = render(
            &set(&[(
                "k",
                "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
            )]),
            &values,
        )
        .unwrap_err();
        assert!(e.problem.contains("instructions"), "{e}");
        let e = render(
            &set(&[(
                "k",
                "{% for a in range(3000) %}{{ 'y' * 1000 }}{% endfor %}",
            )]),
            &values,
        )
        .unwrap_err();
        assert!(e.problem.contains("larger than"), "{e}");
    }

    #[test]
    fn urlencode_userinfo_leaves_only_unreserved_characters() {
        let all: Vec<u8> = (0..=255).collect();
        let encoded = encode_userinfo(&all);
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "{encoded}"
        );
        let out = render(
            &set(&[("k", "{{ password | urlencode_userinfo }}")]),
            &inputs(&[("password", "a/b@c:d e%f+g?h#i")]),
        )
        .unwrap();
        assert_eq!(text(&out, "k"), "a%2Fb%40c%3Ad%20e%25f%2Bg%3Fh%23i");
    }

    #[test]
    fn data_and_annotation_outputs_are_limited_in_total_too() {
        let half = "{% for i in range(600) %}{{ 'y' * 1000 }}{% endfor %}";
        let out = render(&set(&[("a", half)]), &inputs(&[])).unwrap();
        assert_eq!(out.data["a"].len(), 600_000, "one is under every limit");
        let e = render(&set(&[("a", half), ("b", half)]), &inputs(&[])).unwrap_err();
        assert_eq!(e.template, "target.template.data[b]");
        assert!(e.problem.contains("together"), "{e}");
        let mut annotated = set(&[]);
        for i in 0..5 {
            annotated.annotations.insert(
                format!("a{i}"),
                Source {
                    name: format!("target.template.annotations[a{i}]"),
                    text: "{% for i in range(60) %}{{ 'y' * 1000 }}{% endfor %}".into(),
                },
            );
        }
        let e = render(&annotated, &inputs(&[])).unwrap_err();
        assert!(e.problem.contains("together"), "{e}");
    }

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

    #[test]
    fn a_tenant_holds_one_turn_at_a_time() {
        let first = TenantTurn::try_take("unit-team-a").expect("free");
        assert!(TenantTurn::try_take("unit-team-a").is_none(), "taken");
        let other = TenantTurn::try_take("unit-team-b").expect("another tenant's own turn");
        drop(first);
        assert!(TenantTurn::try_take("unit-team-a").is_some(), "given back");
        drop(other);
    }

    #[test]
    fn labels_must_render_valid_label_values() {
        let mut templates = set(&[]);
        templates.labels.insert(
            "app".into(),
            Source {
                name: "target.template.labels[app]".into(),
                text: "{{ user }}".into(),
            },
        );
        let out = render(&templates, &inputs(&[("user", "team-a")])).unwrap();
        assert_eq!(out.labels["app"], "team-a");
        let e = render(&templates, &inputs(&[("user", "not a label!")])).unwrap_err();
        assert!(e.problem.contains("label value"), "{e}");
        assert!(!e.to_string().contains("not a label"), "{e}");
    }

    #[test]
    fn inline_templates_win_over_configmap_ones_and_names_say_where() {
        let spec: crate::crd::SecretTemplate =
            serde_yaml::from_str("data: {a: inline}\nmergePolicy: Merge\n").unwrap();
        let from_cm = BTreeMap::from([
            (
                "a".to_string(),
                Source {
                    name: "ConfigMap t key a".into(),
                    text: "cm".into(),
                },
            ),
            (
                "b".to_string(),
                Source {
                    name: "ConfigMap t key b".into(),
                    text: "cm".into(),
                },
            ),
        ]);
        let set = TemplateSet::from_spec(&spec, from_cm);
        assert!(set.merge);
        assert_eq!(set.data["a"].name, "target.template.data[a]");
        assert_eq!(set.data["b"].name, "ConfigMap t key b");
    }
}
