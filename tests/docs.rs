//! The README is the user's reference: every Ready=False reason, every prerequisite reason and
//! every operator flag must be documented there.

use clap::CommandFactory;
use thalassa_operator::{config::Cli, error::Reason, status};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

#[test]
fn every_reason_and_condition_is_documented() {
    let readme = readme();
    for reason in Reason::all() {
        assert!(
            readme.contains(&format!("| `{reason}` |")),
            "README lacks a row for reason {reason}"
        );
    }
    for type_ in status::types::ALL {
        assert!(
            readme.contains(&format!("`{type_}`")),
            "README lacks condition {type_}"
        );
    }
    use status::reasons::*;
    for reason in [
        SYNCED,
        ENABLED,
        FEATURE_DISABLED,
        AVAILABLE,
        UNAVAILABLE,
        ACTIVE,
        KEY_NOT_ACTIVE,
        KEY_MISMATCH,
        KEY_NOT_FOUND,
        AUTHORIZED,
        INVALID_CREDENTIALS,
        PERMISSION_DENIED,
        NOT_CHECKED,
    ] {
        assert!(
            readme.contains(&format!("`{reason}`")),
            "README lacks reason {reason}"
        );
    }
}

#[test]
fn every_documented_template_filter_is_in_the_readme() {
    let readme = readme();
    for (filter, _, _) in thalassa_operator::template::DOCUMENTED_FILTERS {
        assert!(
            readme.contains(&format!("`{filter}`")),
            "README lacks template filter {filter}"
        );
    }
}

#[test]
fn every_flag_is_documented_with_its_environment_variable() {
    let readme = readme();
    let command = Cli::command();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        assert!(
            readme.contains(&format!("`--{long}`")),
            "README lacks flag --{long}"
        );
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            assert!(
                readme.contains(&format!("`{env}`")),
                "README lacks env {env} of --{long}"
            );
        }
    }
}

#[test]
fn the_reason_table_says_which_failures_stall() {
    let readme = readme();
    for reason in Reason::all() {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{reason}` |")))
            .expect("row exists");
        let kstatus = row.split('|').nth(2).unwrap().trim();
        let expected = if reason.needs_person() {
            "`Stalled`"
        } else {
            "`Reconciling`"
        };
        assert!(
            kstatus.starts_with(expected),
            "README row of {reason} says {kstatus}, the code says {expected}"
        );
    }
}

#[test]
fn the_argocd_cm_snippet_embeds_the_health_script_byte_for_byte_for_every_kind() {
    let root = env!("CARGO_MANIFEST_DIR");
    let script = std::fs::read_to_string(format!("{root}/config/argocd/health.lua")).unwrap();
    let snippet: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{root}/config/argocd/argocd-cm-patch.yaml")).unwrap(),
    )
    .unwrap();
    let data = snippet["data"].as_mapping().expect("data");
    // Argo CD's key form: resource.customizations.health.<group>_<kind>, one per kind the CRDs
    // serve (the kinds as the CRDs name them, so a renamed kind fails here).
    let mut expected = Vec::new();
    for crd in thalassa_operator::crd::all_crds() {
        let names = &crd.spec.names;
        let key = format!(
            "resource.customizations.health.{}_{}",
            crd.spec.group, names.kind
        );
        let embedded = data
            .get(key.as_str())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("argocd-cm lacks {key}"));
        assert_eq!(embedded, script, "{key} is not health.lua byte for byte");
        expected.push(key);
    }
    assert_eq!(expected.len(), 3);
    assert_eq!(data.len(), expected.len(), "no other keys: {data:?}");
}

/// Percent-decodes a URL component.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The `DATABASE_URL` template of a ThalassaSecret document (the README's example or a sample).
fn dsn_template(yaml: &str) -> String {
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).expect("valid YAML");
    doc["spec"]["target"]["template"]["data"]["DATABASE_URL"]
        .as_str()
        .expect("a DATABASE_URL template")
        .to_string()
}

/// Renders `template` with the given inputs, as the operator does.
fn render_dsn(template: &str, inputs: &[(&str, &str)]) -> String {
    use thalassa_operator::template::{Source, TemplateSet, render};
    let set = TemplateSet {
        data: [(
            "DATABASE_URL".to_string(),
            Source {
                name: "DATABASE_URL".into(),
                text: template.to_string(),
            },
        )]
        .into(),
        ..TemplateSet::default()
    };
    let inputs = inputs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let output = render(&set, &inputs).expect("the example renders");
    String::from_utf8(output.data["DATABASE_URL"].clone()).unwrap()
}

#[test]
fn the_readme_dsn_example_survives_a_password_with_url_delimiters() {
    let readme = readme();
    let section = &readme[readme.find("### Templates").expect("a Templates section")..];
    let start = section.find("```yaml\n").expect("a YAML example") + "```yaml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/samples/template-dsn.yaml"
    ))
    .unwrap();
    let password = "p/ss@w:rd x%?#+";
    let user = "app@team";
    for (what, yaml) in [
        ("README", example),
        ("config/samples/template-dsn.yaml", &sample),
    ] {
        let dsn = render_dsn(
            &dsn_template(yaml),
            &[
                ("username", user),
                ("password", password),
                ("host", "db.production.internal"),
            ],
        );
        let url = reqwest::Url::parse(&dsn).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(url.scheme(), "postgres", "{what}");
        assert!(
            matches!(url.host_str(), Some("db" | "db.production.internal")),
            "{what}: host {:?}",
            url.host_str()
        );
        assert_eq!(url.port(), Some(5432), "{what}");
        assert_eq!(url.path(), "/shop", "{what}");
        assert_eq!(percent_decode(url.username()), user.as_bytes(), "{what}");
        assert_eq!(
            percent_decode(url.password().expect("a password")),
            password.as_bytes(),
            "{what}"
        );
    }
}
