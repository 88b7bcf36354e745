//! The template sandbox as the operator runs it: the real binary as a child process with an
//! address-space and CPU limit. No cluster needed.

use std::{collections::BTreeMap, path::Path};

use thalassa_operator::template::{
    RenderFailure, Source, TemplateSet, check_in_sandbox_with, render_in_sandbox_with,
};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_thalassa-secrets-operator"))
}

fn one(key: &str, text: &str) -> TemplateSet {
    TemplateSet {
        data: BTreeMap::from([(
            key.to_string(),
            Source {
                name: format!("target.template.data[{key}]"),
                text: text.to_string(),
            },
        )]),
        ..TemplateSet::default()
    }
}

fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

#[tokio::test]
async fn renders_through_the_child_process() {
    let out = render_in_sandbox_with(
        exe(),
        &one("dsn", "postgres://{{ username }}:{{ password }}@db/app"),
        &inputs(&[("username", "app"), ("password", "s3cret")]),
    )
    .await
    .expect("renders");
    assert_eq!(out.data["dsn"], b"postgres://app:s3cret@db/app");
}

#[tokio::test]
async fn a_template_that_allocates_without_bound_is_stopped_by_the_memory_limit() {
    // Each concatenation materializes a new string before anything is written: fuel and the
    // output cap cannot stop this, the child's address-space limit does.
    let bomb = "{% set s = 'x' * 90000000 %}{% set t = [s ~ s, s ~ s ~ s, s ~ s ~ s ~ s, s ~ s ~ s ~ s ~ s] %}{{ t | length }}";
    let canary = "CANARY-SANDBOX-7f3a";
    let error = render_in_sandbox_with(exe(), &one("k", bomb), &inputs(&[("v", canary)]))
        .await
        .expect_err("the sandbox stops it");
    let message = error.to_string();
    assert!(
        matches!(error, RenderFailure::Template(_)),
        "a limit is the template's fault: {message}"
    );
    assert!(message.contains("sandbox's limits"), "{message}");
    assert!(!message.contains(canary), "{message}");
}

#[tokio::test]
async fn render_errors_from_the_child_carry_position_and_no_value() {
    let canary = "CANARY-SANDBOX-91c2";
    let error = render_in_sandbox_with(
        exe(),
        &one("k", "line one\n{{ password | int }}"),
        &inputs(&[("password", canary)]),
    )
    .await
    .expect_err("not a number");
    let RenderFailure::Template(error) = error else {
        panic!("a render error is the template's: {error}");
    };
    assert_eq!(error.template, "target.template.data[k]");
    assert_eq!(error.line, Some(2));
    assert!(!error.to_string().contains(canary), "{error}");
}

#[tokio::test]
async fn compile_checks_run_in_the_child_with_position() {
    check_in_sandbox_with(exe(), &one("k", "{{ user }}"))
        .await
        .expect("compiles");
    let error = check_in_sandbox_with(exe(), &one("k", "ok\n{{ user }\n"))
        .await
        .expect_err("a syntax error");
    let RenderFailure::Template(error) = error else {
        panic!("a syntax error is the template's: {error}");
    };
    assert_eq!(error.line, Some(2));
    assert!(error.problem.starts_with("syntax error"), "{error}");
}

#[tokio::test]
async fn ten_outputs_of_a_megabyte_are_refused_by_the_child() {
    let set = TemplateSet {
        data: (0..10)
            .map(|k| {
                (
                    format!("out{k}"),
                    Source {
                        name: format!("target.template.data[out{k}]"),
                        text: "{{ 'y' * 1000000 }}".into(),
                    },
                )
            })
            .collect(),
        ..TemplateSet::default()
    };
    let error = render_in_sandbox_with(exe(), &set, &inputs(&[]))
        .await
        .expect_err("more than a Secret holds");
    let RenderFailure::Template(error) = error else {
        panic!("the output total is the template's: {error}");
    };
    assert_eq!(error.template, "target.template.data[out1]");
    assert!(error.problem.contains("together"), "{error}");
    // One of them fits, and comes back byte for byte.
    let one_output = render_in_sandbox_with(exe(), &one("k", "{{ 'y' * 1000000 }}"), &inputs(&[]))
        .await
        .expect("renders");
    assert_eq!(one_output.data["k"], vec![b'y'; 1_000_000]);
}
