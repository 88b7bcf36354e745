//! The documentation against the code: every Ready=False reason, every prerequisite reason and
//! template filter must be in the reference (`docs/reference.md`), every operator flag in
//! `docs/operating.md`, every relative link of the README and `docs/` must lead to a file and
//! heading that exist, and the node tests `docs/testing.md` describes are the ones that exist.

use clap::CommandFactory;
use thalassa_operator::{config::Cli, error::Reason, status};

/// A file of the repository, by its path from the root.
fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The reference: fields, templates, conditions and reasons.
fn reference() -> String {
    read("docs/reference.md")
}

/// The operator's flags, health and metrics.
fn operating() -> String {
    read("docs/operating.md")
}

#[test]
fn every_reason_and_condition_is_documented() {
    let reference = reference();
    for reason in Reason::all() {
        assert!(
            reference.contains(&format!("| `{reason}` |")),
            "docs/reference.md lacks a row for reason {reason}"
        );
    }
    for type_ in status::types::ALL {
        assert!(
            reference.contains(&format!("`{type_}`")),
            "docs/reference.md lacks condition {type_}"
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
            reference.contains(&format!("`{reason}`")),
            "docs/reference.md lacks reason {reason}"
        );
    }
}

#[test]
fn every_documented_template_filter_is_in_the_reference() {
    let reference = reference();
    for (filter, _, _) in thalassa_operator::template::DOCUMENTED_FILTERS {
        assert!(
            reference.contains(&format!("`{filter}`")),
            "docs/reference.md lacks template filter {filter}"
        );
    }
}

#[test]
fn every_flag_is_documented_with_its_environment_variable() {
    let operating = operating();
    let command = Cli::command();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        assert!(
            operating.contains(&format!("`--{long}`")),
            "docs/operating.md lacks flag --{long}"
        );
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            assert!(
                operating.contains(&format!("`{env}`")),
                "docs/operating.md lacks env {env} of --{long}"
            );
        }
    }
}

#[test]
fn the_reason_table_says_which_failures_stall() {
    let reference = reference();
    for reason in Reason::all() {
        let row = reference
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
            "docs/reference.md row of {reason} says {kstatus}, the code says {expected}"
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
    assert_eq!(expected.len(), 5);
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

/// The `DATABASE_URL` template of a ThalassaSecret document (the reference's example or a sample).
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
fn the_reference_dsn_example_survives_a_password_with_url_delimiters() {
    let reference = reference();
    let section = &reference[reference
        .find("### Templates")
        .expect("a Templates section")..];
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
        ("docs/reference.md", example),
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

/// The anchors GitHub gives the headings of a Markdown text (outside code blocks): lower case,
/// spaces as `-`, punctuation dropped; a repeated heading gets `-1`, `-2`, ...
fn heading_anchors(markdown: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    let mut slugs: Vec<String> = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let repeats = slugs.iter().filter(|s| **s == slug).count();
        anchors.push(if repeats == 0 {
            slug.clone()
        } else {
            format!("{slug}-{repeats}")
        });
        slugs.push(slug);
    }
    anchors
}

/// The README and the pages of `docs/` were one page once; every relative link between them (and
/// to the rest of the repository) leads to a file that exists and, with `#`, to one of its headings.
#[test]
fn every_relative_link_of_the_readme_and_docs_resolves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec!["README.md".to_string()];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            pages.push(format!("docs/{name}"));
        }
    }
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut checked = 0;
    for page in &pages {
        let text = read(page);
        let dir = root.join(page).parent().unwrap().to_path_buf();
        for target in link.captures_iter(&text).map(|c| c[1].to_string()) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                root.join(page)
            } else {
                dir.join(file)
            };
            assert!(path.exists(), "{page}: link {target}: no such file");
            if !anchor.is_empty() {
                let heading_text = std::fs::read_to_string(&path).unwrap();
                let anchors = heading_anchors(&heading_text);
                assert!(
                    anchors.iter().any(|a| a == anchor),
                    "{page}: link {target}: no such heading (headings: {anchors:?})"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked > 40,
        "only {checked} links found: the pattern is broken"
    );
}

/// docs/install.md names the image the release workflow publishes, which is the chart's default
/// repository, and the local image `tools/build-image.sh` builds, as the script names it.
#[test]
fn the_install_page_names_the_published_and_the_local_image() {
    let install = read("docs/install.md");
    let values: serde_yaml::Value =
        serde_yaml::from_str(&read("charts/thalassa-secrets-operator/values.yaml")).unwrap();
    let repository = values["image"]["repository"]
        .as_str()
        .expect("image.repository");
    let workflow: serde_yaml::Value =
        serde_yaml::from_str(&read(".github/workflows/release.yml")).unwrap();
    assert_eq!(
        workflow["env"]["IMAGE"].as_str(),
        Some(repository),
        "release.yml pushes another image than the chart's default"
    );
    let charts = workflow["env"]["CHARTS"]
        .as_str()
        .expect("release.yml's CHARTS");
    for text in [
        format!("`{repository}:<version>`"),
        format!("`{charts}/thalassa-secrets-operator`"),
        "tools/build-image.sh".to_string(),
        "--set image.repository=localhost/thalassa-secrets-operator".to_string(),
        "--set image.pullPolicy=Never".to_string(),
    ] {
        assert!(install.contains(&text), "docs/install.md lacks {text}");
    }
    let script = read("tools/build-image.sh");
    assert!(
        script.contains("localhost/thalassa-secrets-operator:$version")
            && script.contains("$out_dir/thalassa-secrets-operator-$version.tar"),
        "tools/build-image.sh names its image or archive otherwise than docs/install.md says"
    );
    assert!(install.contains("target/image/thalassa-secrets-operator-<version>.tar"));
}

/// `docs/testing.md` describes the node tests by name: exactly the tests of `tests/node`.
#[test]
fn the_node_tests_described_are_the_node_tests_that_exist() {
    let source = read("tests/node/main.rs");
    let mut existing: Vec<&str> = source
        .split("#[tokio::test]")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.split("async fn ").nth(1)?;
            name.split('(').next()
        })
        .collect();
    existing.sort_unstable();
    assert!(existing.len() >= 2, "tests/node has tests: {existing:?}");
    let testing = read("docs/testing.md");
    let section = testing
        .split("- **`tests/node/`**")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/testing.md describes tests/node");
    let mut described: Vec<&str> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| word.len() > 30 && word.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    described.sort_unstable();
    assert_eq!(described, existing, "docs/testing.md vs tests/node/main.rs");
}
