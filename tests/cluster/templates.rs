//! `target.template` against a real control plane and the emulator: templated keys, labels and
//! annotations; a `templateFrom` ConfigMap whose edit re-renders; reveals all-or-nothing (a
//! re-render reads every source once, a restart or an unchanged check reads none); drift repair;
//! a syntax error, an undefined variable and a missing ConfigMap give `TemplateError` with the
//! template's name and position, keep the last good data, and quote no value anywhere.

use std::{collections::BTreeMap, time::Duration};

use crate::common::{Harness, condition, harness, http_get, kubectl, secret_data, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api,
    api::{Patch, PatchParams},
};

const TEMPLATED: &str = r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {name: db}
spec:
  refreshInterval: 10s
  data:
    - secretKey: username
      remoteRef: {path: /app/tpl/creds, property: username}
    - secretKey: password
      remoteRef: {path: /app/tpl/creds, property: password}
    - secretKey: host
      remoteRef: {path: /app/tpl/host}
  target:
    template:
      data:
        dsn: "postgres://{{ username }}:{{ password | urlencode }}@{{ host }}/app"
      labels:
        db-host: "{{ host | replace('.', '-') }}"
      annotations:
        example.com/user: "{{ username | upper }}"
      templateFrom:
        - configMap:
            name: db-templates
            items: [{key: config.yaml}]
"#;

fn config_map(name: &str, labelled: bool, text: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "labels": if labelled {
                serde_json::json!({"secrets.thalassa.cloud/template": "true"})
            } else {
                serde_json::json!({})
            },
        },
        "data": {"config.yaml": text},
    }))
    .unwrap()
}

async fn apply_config_map(h: &Harness, config_map: &ConfigMap) {
    let api: Api<ConfigMap> = Api::namespaced(h.client.clone(), h.ns());
    api.patch(
        config_map.metadata.name.as_deref().unwrap(),
        &PatchParams::apply("tests").force(),
        &Patch::Apply(config_map),
    )
    .await
    .expect("ConfigMap applies");
}

fn text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    data.get(key)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test]
async fn templates_render_re_render_on_configmap_edits_and_reveal_all_or_nothing() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("tpl").await;
    h.create_kv(
        "/app/tpl/creds",
        &[("username", "admin"), ("password", "p@ss word")],
    );
    h.create_string("/app/tpl/host", "db.internal");
    apply_config_map(
        &h,
        &config_map("db-templates", true, "user: {{ username }}\n"),
    )
    .await;
    h.start_operator(&[]).await;
    h.apply_yaml(TEMPLATED).await;
    h.wait_condition("db", "Ready", "True", Some("Synced"))
        .await;
    let secret = h.secrets().get("db").await.unwrap();
    let data = secret_data(&secret);
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["config.yaml", "dsn"],
        "mergePolicy Replace: only the templated keys"
    );
    assert_eq!(
        text(&data, "dsn").unwrap(),
        "postgres://admin:p%40ss%20word@db.internal/app"
    );
    assert_eq!(text(&data, "config.yaml").unwrap(), "user: admin\n");
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()["db-host"],
        "db-internal"
    );
    assert_eq!(
        secret.metadata.annotations.as_ref().unwrap()["example.com/user"],
        "ADMIN"
    );
    let first = h.reveals();
    assert_eq!(first, 2, "one reveal per source path");

    // A ConfigMap edit re-renders (no spec change): every source is read once more.
    apply_config_map(
        &h,
        &config_map(
            "db-templates",
            true,
            "user: {{ username }}\nhost: {{ host }}\n",
        ),
    )
    .await;
    h.wait_secret("db", "the edited ConfigMap template", |d| {
        text(d, "config.yaml").as_deref() == Some("user: admin\nhost: db.internal\n")
    })
    .await;
    let after_edit = h.reveals();
    assert_eq!(after_edit, first + 2, "a re-render reads every source once");

    // Restarts and periodic checks with nothing changed read nothing.
    for _ in 0..2 {
        h.stop_operator().await;
        h.start_operator(&[]).await;
        h.wait_checks("db", 1).await;
    }
    assert_eq!(h.reveals(), after_edit, "a restart revealed a value");

    // Drift: an edited key is restored, and so is an edited templated label alone (its value is
    // covered by the template record's keyed hash); each repair renders from every source.
    let secrets = h.secrets();
    secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"dsn": "tampered"}})),
        )
        .await
        .unwrap();
    let repaired = h
        .wait_secret("db", "the repaired Secret", |d| {
            text(d, "dsn").is_some_and(|v| v.starts_with("postgres://"))
        })
        .await;
    assert_eq!(secret_data(&repaired).len(), 2);
    assert_eq!(h.reveals(), after_edit + 2);
    secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"db-host": "elsewhere"}}})),
        )
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "the repaired label", || {
        let secrets = secrets.clone();
        async move {
            let s = secrets.get("db").await.ok()?;
            (s.metadata.labels?.get("db-host")? == "db-internal").then_some(())
        }
    })
    .await;
    assert_eq!(h.reveals(), after_edit + 4);

    // A new version of one source re-renders with every source read once.
    let before = h.reveals();
    h.put_string("/app/tpl/host", "db2.internal");
    h.wait_secret("db", "the new host", |d| {
        text(d, "dsn").is_some_and(|v| v.ends_with("@db2.internal/app"))
    })
    .await;
    assert_eq!(h.reveals(), before + 2);

    // mergePolicy Merge keeps the source keys next to the templated ones.
    h.apply_yaml(&TEMPLATED.replace(
        "    template:\n",
        "    template:\n      mergePolicy: Merge\n",
    ))
    .await;
    let merged = h
        .wait_secret("db", "source and templated keys", |d| {
            d.contains_key("host")
        })
        .await;
    assert_eq!(
        secret_data(&merged).keys().collect::<Vec<_>>(),
        ["config.yaml", "dsn", "host", "password", "username"]
    );

    // Without a template the Secret holds the source keys again, and nothing templates wrote
    // stays behind (labels, annotations, the template record), so checks stay free.
    h.apply_yaml(&TEMPLATED[..TEMPLATED.find("  target:").unwrap()])
        .await;
    let plain = h
        .wait_secret("db", "the source keys only", |d| !d.contains_key("dsn"))
        .await;
    assert_eq!(
        secret_data(&plain).keys().collect::<Vec<_>>(),
        ["host", "password", "username"]
    );
    wait_for(Duration::from_secs(30), "templated metadata gone", || {
        let secrets = secrets.clone();
        async move {
            let s = secrets.get("db").await.ok()?;
            let labels = s.metadata.labels.unwrap_or_default();
            let annotations = s.metadata.annotations.unwrap_or_default();
            (!labels.contains_key("db-host")
                && !annotations.contains_key("example.com/user")
                && !annotations.contains_key("secrets.thalassa.cloud/template"))
            .then_some(())
        }
    })
    .await;
    h.wait_condition("db", "Ready", "True", Some("Synced"))
        .await;
    let settled = h.reveals();
    h.wait_checks("db", 2).await;
    assert_eq!(
        h.reveals(),
        settled,
        "checks after removing the template read nothing"
    );
}

#[tokio::test]
async fn template_errors_name_the_template_keep_the_last_good_data_and_quote_no_value() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let mut h = harness("tplerr").await;
    let canary = format!("CANARY-{:016x}", rand::random::<u64>());
    h.create_kv(
        "/app/tplerr/creds",
        &[("username", "app"), ("password", &canary)],
    );
    h.start_operator(&[]).await;
    let spec = |template: &str| {
        format!(
            r#"apiVersion: secrets.thalassa.cloud/v1alpha1
kind: ThalassaSecret
metadata: {{name: app}}
spec:
  refreshInterval: 10s
  dataFrom: [{{path: /app/tplerr/creds}}]
  target:
    template:
{template}"#
        )
    };
    h.apply_yaml(&spec(
        "      data:\n        url: \"https://{{ username }}:{{ password }}@api\"\n",
    ))
    .await;
    h.wait_condition("app", "Ready", "True", Some("Synced"))
        .await;
    let good = secret_data(&h.secrets().get("app").await.unwrap());
    assert_eq!(
        text(&good, "url").unwrap(),
        format!("https://app:{canary}@api")
    );

    // Each failure: (template lines, what the message must say).
    let failures = [
        (
            "      data:\n        url: \"{{ username }\"\n",
            "target.template.data[url] line 1",
        ),
        (
            "      data:\n        url: \"ok\"\n        bad: \"{{ username }}:{{ passwrd }}\"\n",
            "target.template.data[bad] line 1 column",
        ),
        (
            "      data:\n        url: \"{{ passwrd }}\"\n",
            "undefined value: passwrd not produced by any source",
        ),
        // Engine errors about the value itself: the message must not quote it.
        (
            "      data:\n        url: \"{{ password | int }}\"\n",
            "target.template.data[url] line 1",
        ),
        (
            "      data:\n        url: \"{{ data[password] }}\"\n",
            "target.template.data[url] line 1",
        ),
        (
            "      data:\n        url: \"{{ password | fromjson }}\"\n",
            "target.template.data[url] line 1",
        ),
        (
            "      data:\n        url: \"x\"\n      labels:\n        tier: \"{{ password }}{{ password }}{{ password }}\"\n",
            "target.template.labels[tier]",
        ),
        (
            "      templateFrom:\n        - configMap: {name: absent, items: [{key: t}]}\n",
            "ConfigMap absent: not found",
        ),
    ];
    for (template, expected) in failures {
        // A syntax error and a missing ConfigMap are found before anything is read.
        let found_first = template.contains("{{ username }\"") || template.contains("absent");
        let before = h.reveals();
        h.apply_yaml(&spec(template)).await;
        let ts = h
            .wait_condition("app", "Ready", "False", Some("TemplateError"))
            .await;
        if found_first {
            assert_eq!(h.reveals(), before, "{expected}: nothing revealed");
        }
        let ready = condition(&ts, "Ready");
        println!("{}", ready.message);
        assert!(
            ready.message.contains(expected),
            "{expected:?} not in {:?}",
            ready.message
        );
        assert!(!ready.message.contains(&canary[7..]), "{}", ready.message);
        let kept = secret_data(&h.secrets().get("app").await.unwrap());
        assert_eq!(kept, good, "the Secret keeps its last good data");
    }

    // A ConfigMap without the template label is not read.
    apply_config_map(&h, &config_map("unlabelled", false, "{{ password }}")).await;
    h.apply_yaml(&spec(
        "      templateFrom:\n        - configMap: {name: unlabelled, items: [{key: config.yaml}]}\n",
    ))
    .await;
    let ts = h
        .wait_condition("app", "Ready", "False", Some("TemplateError"))
        .await;
    let message = &condition(&ts, "Ready").message;
    assert!(
        message.contains("secrets.thalassa.cloud/template"),
        "the message names the label: {message}"
    );

    // Nothing the operator produced quotes the canary.
    let mut outputs = vec![("operator log".to_string(), h.operator_log())];
    for kind in ["events", "thalassasecrets"] {
        let (ok, out) = kubectl(&["get", kind, "-n", h.ns(), "-o", "yaml"], None).await;
        assert!(ok, "{out}");
        outputs.push((kind.to_string(), out));
    }
    let port = h.operator.as_ref().unwrap().port;
    if let Some((_, body)) = http_get(&format!("http://127.0.0.1:{port}/metrics")).await {
        outputs.push(("metrics".into(), body));
    }
    assert!(outputs[0].1.lines().count() > 20, "debug logs were read");
    for (what, text) in &outputs {
        assert!(
            !text.contains(&canary[7..]),
            "{what} quotes the value ({} bytes searched)",
            text.len()
        );
    }
    let secrets: Api<Secret> = h.secrets();
    assert!(secrets.get_opt("app").await.unwrap().is_some());
}
