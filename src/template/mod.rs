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
//!
//! This file holds the templates and their output as values, [`compile_check`] and [`render`].
//! Beside it:
//! - `filters`: the engine's configuration and the filters added to minijinja's;
//! - `sandbox`: the child process and the protocol to it;
//! - `turn`: one tenant's turn to use the sandboxes.

mod filters;
mod sandbox;
mod turn;

use std::collections::BTreeMap;

use minijinja::{ErrorKind, Value};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use filters::environment;
pub use filters::{DOCUMENTED_FILTERS, EXTRA_FILTERS};
pub use sandbox::{
    RenderFailure, check_in_sandbox, check_in_sandbox_with, render_in_sandbox,
    render_in_sandbox_with, sandbox_main,
};
pub(crate) use turn::TenantTurn;

use crate::{crd::TemplateMergePolicy, render::is_label_value};

/// Instructions one template may execute.
pub(crate) const FUEL: u64 = 50_000;
/// Nesting depth of loops and blocks.
pub(crate) const RECURSION_LIMIT: usize = 32;
/// Largest output of one data template (a Secret holds 1 MiB in all).
pub(crate) const MAX_DATA_OUTPUT: usize = 1024 * 1024;
/// Largest output of one annotation template.
pub(crate) const MAX_ANNOTATION_OUTPUT: usize = 64 * 1024;
/// Address space of the sandbox process.
pub(crate) const SANDBOX_MEMORY_BYTES: u64 = 256 * 1024 * 1024;
/// CPU seconds of the sandbox process.
pub(crate) const SANDBOX_CPU_SECONDS: u64 = 5;
/// The argument that makes the operator binary run as the sandbox.
pub const SANDBOX_ARG: &str = "__render-template";
/// Everything one resource's templates may pull in together: inline templates and every
/// `templateFrom` ConfigMap item, in bytes (each item is also limited on its own).
pub(crate) const MAX_TEMPLATES_TOTAL_BYTES: usize = 256 * 1024;
/// The output of all data templates of a resource together: what a Secret holds.
pub(crate) const MAX_DATA_TOTAL: usize = 1024 * 1024;
/// The output of all annotation templates of a resource together (the apiserver's limit on an
/// object's annotations).
pub(crate) const MAX_ANNOTATIONS_TOTAL: usize = 256 * 1024;
/// Sandboxes running at once in the whole process; one tenant (namespace) holds at most one
/// ([`TenantTurn`]), so one tenant's renders never take every sandbox.
pub const MAX_SANDBOXES: usize = 2;

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
    pub(crate) fn from_spec(
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
    pub(crate) labels: BTreeMap<String, String>,
    /// Annotation key to value.
    pub(crate) annotations: BTreeMap<String, String>,
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
    pub(crate) column: Option<usize>,
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

/// Compiles every template (no values involved): a syntax error is reported before anything is
/// revealed. Compile errors may quote the template's own text, which is not secret.
pub(crate) fn compile_check(set: &TemplateSet) -> Result<(), TemplateError> {
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

#[cfg(test)]
mod tests {
    use super::filters::encode_userinfo;
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
