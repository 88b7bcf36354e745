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
