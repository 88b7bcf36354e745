//! The Rust validator and the CRD's admission rules (OpenAPI patterns and lengths plus CEL) accept
//! exactly the same specs. Each sample is sent to the real kube-apiserver as a server-side dry run
//! (`dryRun: All`, nothing is stored) and checked with `controller::validate`; any sample where
//! the two disagree is printed and fails the test. Samples are generated deterministically (fixed
//! seed) and mix valid values with the tricky ones: `.`, `..`, `...`, dot files, `a..b`, trailing
//! and double slashes, unicode, over-length values, and durations at and around 10s and Go's limit.

use std::collections::BTreeMap;

use crate::common::harness;
use futures::{StreamExt, stream};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use thalassa_operator::{
    config::{Cli, Config},
    controller,
    crd::{DataEntry, DataFromSource, GenerateSpec, RemoteRef, ThalassaSecret, ThalassaSecretSpec},
    render::is_valid_secret_key,
};

/// Small deterministic generator (xorshift64*), so every run sends the same samples.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn word(&mut self, alphabet: &str, max: usize) -> String {
        let chars: Vec<char> = alphabet.chars().collect();
        let len = 1 + self.below(max);
        (0..len).map(|_| chars[self.below(chars.len())]).collect()
    }
}

const PATH_ALPHABET: &str = "abcXYZ019_.+-";

fn path_samples() -> Vec<String> {
    let mut samples: Vec<String> = [
        "/",
        "//",
        "/a",
        "/a/",
        "/a//b",
        "/.",
        "/..",
        "/...",
        "/.hidden",
        "/a/.hidden/b",
        "/a..b",
        "/a/./b",
        "/a/../b",
        "/team-a/../team-b/db/password",
        "/a/.",
        "/a/..",
        "/a/...",
        "/a/./",
        "/a/../",
        "/./",
        "/../",
        "/.../",
        "/..a",
        "/a..",
        "/.a.",
        "/+",
        "/-",
        "/_",
        "/a+b/c_d-e.f",
        "a/b",
        "a/",
        "",
        " /a",
        "/a ",
        "/a b",
        "/é",
        "/café/x",
        "/a/\u{200b}",
        "/a\u{0}",
        "/a\nb",
        "/a/%2e%2e/b",
        "/a/%2F",
        "/a?b",
        "/a#b",
        "/a\\b",
        "/a;b",
        "/a:b",
        "/a*",
        "/app/production/db/password",
        "/app/production/",
    ]
    .map(String::from)
    .into();
    // Lengths around the 512-character limit, with and without a trailing slash.
    for len in [510, 511, 512, 513, 600] {
        let body = "a".repeat(len - 1);
        samples.push(format!("/{body}"));
        samples.push(format!("/{}/", &body[..len - 2]));
        samples.push(format!("/{}/b", &body[..len - 3]));
    }
    // A multi-byte character at the limit: 512 characters but more than 512 bytes.
    samples.push(format!("/{}é", "a".repeat(510)));
    let mut rng = Rng(0x5EED_0017);
    let tricky = [
        ".", "..", "...", ".hidden", "a..b", "", "é", "a b", "%2e", "+", "-", "_", "..a", "a..",
    ];
    while samples.len() < 260 {
        let count = rng.below(5);
        let mut path = String::new();
        if rng.chance(92) {
            path.push('/');
        }
        let segments: Vec<String> = (0..count)
            .map(|_| {
                if rng.chance(25) {
                    rng.pick(&tricky).to_string()
                } else {
                    rng.word(PATH_ALPHABET, 10)
                }
            })
            .collect();
        path.push_str(&segments.join("/"));
        if rng.chance(30) {
            path.push('/');
        }
        samples.push(path);
    }
    samples.sort();
    samples.dedup();
    samples
}

fn duration_samples() -> Vec<String> {
    let mut samples: Vec<String> = [
        "1h30m",
        "1.5s",
        "0s",
        "9s",
        "10s",
        "11s",
        "500ms",
        "9999ms",
        "10000ms",
        "10001ms",
        "9.999999999s",
        "9.9999999999s",
        "9.99999999999999999999s",
        "10.0s",
        "10.000000000000000001s",
        "0.16666666666m",
        "0.16666666667m",
        "0.0027777777h",
        "0.0027777778h",
        "1m",
        "1h",
        "1.5h",
        "0.5m",
        "5s5s",
        "5s4999ms",
        "5s5000ms",
        "1m0s",
        "00010s",
        "2562047h",
        "2562047h47m16.854775807s",
        "2562047h47m16.854775808s",
        "2562048h",
        "9223372036854775807ms",
        "9223372036s",
        "9223372037s",
        "99999999999999999999h",
        "0.0000000001h",
        "10",
        "s",
        "",
        " 10s",
        "10s ",
        ".5m",
        "10.s",
        "1.s",
        "1d",
        "10us",
        "10ns",
        "10µs",
        "-10s",
        "+10s",
        "10S",
        "1M",
        "1h-1m",
        "1e3s",
        "10sm",
        "10m10",
        "1_0s",
        "１０s",
    ]
    .map(String::from)
    .into();
    let mut rng = Rng(0xD0_2A71_0017);
    let units = ["ms", "s", "m", "h"];
    while samples.len() < 160 {
        let parts = 1 + rng.below(3);
        let mut text = String::new();
        for _ in 0..parts {
            let int = match rng.below(4) {
                0 => rng.below(10),
                1 => rng.below(100),
                2 => rng.below(20_000),
                _ => rng.below(10_000_000),
            };
            text.push_str(&int.to_string());
            if rng.chance(30) {
                text.push('.');
                text.push_str(&rng.word("0123456789", 12));
            }
            text.push_str(rng.pick(&units));
        }
        samples.push(text);
    }
    samples.sort();
    samples.dedup();
    samples
}

fn key_samples() -> Vec<String> {
    let mut samples: Vec<String> = [
        "a",
        ".",
        "..",
        "...",
        "..a",
        ".a",
        "a..",
        "a.b",
        "a..b",
        "-",
        "_",
        "-a",
        "tls.crt",
        ".dockerconfigjson",
        "a b",
        "é",
        "a/b",
        "a:b",
        "a+b",
        "",
        "A-Z_09",
    ]
    .map(String::from)
    .into();
    for len in [252, 253, 254] {
        samples.push("k".repeat(len));
    }
    let mut rng = Rng(0x4B_E750_0017);
    while samples.len() < 60 {
        samples.push(rng.word("ab.-_Z9", 6));
    }
    samples.sort();
    samples.dedup();
    samples
}

fn config() -> Config {
    Cli::try_parse_args_from(["op", "--organisation", "o", "--token-file", "/t"])
        .expect("flags parse")
        .args
        .into_config()
        .expect("valid config")
}

fn remote_ref(path: &str) -> DataEntry {
    DataEntry {
        secret_key: "a".into(),
        remote_ref: RemoteRef {
            path: path.into(),
            property: None,
            version: None,
        },
        generate: None,
    }
}

/// One spec to try, with what it exercises.
struct Sample {
    field: &'static str,
    value: String,
    spec: ThalassaSecretSpec,
}

fn path_cases() -> Vec<Sample> {
    let mut cases = Vec::new();
    for path in path_samples() {
        cases.push(Sample {
            field: "data[].remoteRef.path",
            value: path.clone(),
            spec: ThalassaSecretSpec {
                data: vec![remote_ref(&path)],
                ..Default::default()
            },
        });
        cases.push(Sample {
            field: "dataFrom[].path",
            value: path.clone(),
            spec: ThalassaSecretSpec {
                data_from: vec![DataFromSource {
                    path: Some(path.clone()),
                    path_prefix: None,
                }],
                ..Default::default()
            },
        });
        cases.push(Sample {
            field: "dataFrom[].pathPrefix",
            value: path.clone(),
            spec: ThalassaSecretSpec {
                data_from: vec![DataFromSource {
                    path: None,
                    path_prefix: Some(path),
                }],
                ..Default::default()
            },
        });
    }
    cases
}

fn duration_cases() -> Vec<Sample> {
    duration_samples()
        .into_iter()
        .map(|text| Sample {
            field: "refreshInterval",
            value: text.clone(),
            spec: ThalassaSecretSpec {
                refresh_interval: Some(text),
                data: vec![remote_ref("/a")],
                ..Default::default()
            },
        })
        .collect()
}

/// `data[].generate`: every combination of byteLength (absent, at and around 16 and 4096),
/// property, version and spec-level kmsKeyIdentity, beside a plain entry or alone.
fn generate_cases() -> Vec<Sample> {
    let lengths = [
        None,
        Some(0),
        Some(1),
        Some(15),
        Some(16),
        Some(32),
        Some(4096),
        Some(4097),
        Some(u32::MAX / 2),
    ];
    let mut cases = Vec::new();
    for length in lengths {
        for (property, version, key, plain) in
            (0..16).map(|bits: u8| (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0))
        {
            let mut entry = remote_ref("/gen/a");
            entry.generate = Some(GenerateSpec {
                byte_length: length,
            });
            entry.remote_ref.property = property.then(|| "p".to_string());
            entry.remote_ref.version = version.then_some(2);
            let mut data = vec![entry];
            if plain {
                let mut other = remote_ref("/read/b");
                other.secret_key = "b".into();
                data.push(other);
            }
            cases.push(Sample {
                field: "data[].generate",
                value: format!(
                    "byteLength {length:?}, property {property}, version {version}, kmsKeyIdentity {key}, beside a plain entry {plain}"
                ),
                spec: ThalassaSecretSpec {
                    kms_key_identity: key.then(|| "kms-1".to_string()),
                    data,
                    ..Default::default()
                },
            });
        }
    }
    cases
}

/// `data[].generate` with its CEL rules (no property, no version, a spec-level key) and bounds:
/// the apiserver and the Rust validator accept exactly the same specs.
#[tokio::test]
async fn generated_entries_are_validated_alike() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let h = harness("parity-generate").await;
    let cases = generate_cases();
    assert_eq!(cases.len(), 9 * 16);
    let mismatches = compare(&h.resources(), h.ns(), cases).await;
    assert_eq!(mismatches, 0, "the Rust validator and admission disagree");
}

/// Whether the apiserver admits `ts` (server-side dry run). Only a validation refusal (422, or
/// 400 for a body it cannot take) counts as a rejection; anything else is retried, then fails.
async fn admitted<K>(api: &Api<K>, object: &K) -> (bool, String)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut last = String::new();
    for _ in 0..5 {
        match api.create(&params, object).await {
            Ok(_) => return (true, String::new()),
            Err(kube::Error::Api(status)) if matches!(status.code, 400 | 422) => {
                return (false, status.message);
            }
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
    panic!("apiserver did not answer the dry run: {last}");
}

/// Sends every sample, compares, prints each disagreement and returns how many there were.
async fn compare(api: &Api<ThalassaSecret>, namespace: &str, samples: Vec<Sample>) -> usize {
    let config = config();
    let total = samples.len();
    let results: Vec<_> = stream::iter(samples.into_iter().enumerate())
        .map(|(i, sample)| {
            let config = &config;
            async move {
                let mut ts = ThalassaSecret::new(&format!("parity-{i}"), sample.spec.clone());
                ts.metadata.namespace = Some(namespace.to_string());
                let rust = controller::validate(&ts, config);
                let (apiserver, message) = admitted(api, &ts).await;
                (
                    sample,
                    rust.map(|_| ()).map_err(|e| e.to_string()),
                    apiserver,
                    message,
                )
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut mismatches = 0;
    let mut accepted = 0;
    for (sample, rust, apiserver, message) in &results {
        accepted += usize::from(*apiserver);
        if rust.is_ok() != *apiserver {
            mismatches += 1;
            eprintln!(
                "MISMATCH {} = {:?}: apiserver {}, Rust validate {}",
                sample.field,
                sample.value,
                if *apiserver {
                    "accepted".to_string()
                } else {
                    format!("rejected ({message})")
                },
                match rust {
                    Ok(()) => "accepted".to_string(),
                    Err(e) => format!("rejected ({e})"),
                }
            );
        }
    }
    eprintln!("{total} samples, {accepted} admitted by the apiserver, {mismatches} mismatches");
    mismatches
}

/// `remoteRef.path`, `dataFrom[].path` and `dataFrom[].pathPrefix`: the apiserver and the Rust
/// validator accept exactly the same values.
#[tokio::test]
async fn paths_and_prefixes_are_validated_alike() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let h = harness("parity-paths").await;
    let started = std::time::Instant::now();
    let cases = path_cases();
    assert!(cases.len() >= 600, "only {} samples", cases.len());
    let mismatches = compare(&h.resources(), h.ns(), cases).await;
    eprintln!("paths compared in {:?}", started.elapsed());
    assert_eq!(mismatches, 0, "the Rust validator and admission disagree");
}

/// `refreshInterval`: the CRD pattern plus the CEL rule `duration(self) >= duration('10s')` and the
/// Rust parser with its 10s minimum accept exactly the same values.
#[tokio::test]
async fn refresh_intervals_are_validated_alike() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let h = harness("parity-durations").await;
    let started = std::time::Instant::now();
    let cases = duration_cases();
    assert!(cases.len() >= 150, "only {} samples", cases.len());
    let mismatches = compare(&h.resources(), h.ns(), cases).await;
    eprintln!("durations compared in {:?}", started.elapsed());
    assert_eq!(mismatches, 0, "the Rust parser and admission disagree");
}

/// Secret keys: `render::is_valid_secret_key` (which decides whether a key derived from a path or
/// a property is written) accepts exactly the keys the apiserver accepts in a Secret, and the CRD
/// admits a `secretKey` exactly when the Secret could hold it.
#[tokio::test]
async fn secret_keys_are_validated_alike() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let h = harness("parity-keys").await;
    let started = std::time::Instant::now();
    let secrets: Api<Secret> = h.secrets();
    let resources = h.resources();
    let ns = h.ns().to_string();
    let results: Vec<_> = stream::iter(key_samples().into_iter().enumerate())
        .map(|(i, key)| {
            let (secrets, resources, ns) = (&secrets, &resources, &ns);
            async move {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("parity-key-{i}")),
                        namespace: Some(ns.clone()),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(key.clone(), ByteString(b"x".to_vec()))])),
                    ..Default::default()
                };
                let (in_secret, secret_message) = admitted(secrets, &secret).await;
                let mut entry = remote_ref("/a");
                entry.secret_key = key.clone();
                let mut ts = ThalassaSecret::new(
                    &format!("parity-key-{i}"),
                    ThalassaSecretSpec {
                        data: vec![entry],
                        ..Default::default()
                    },
                );
                ts.metadata.namespace = Some(ns.clone());
                let (in_crd, crd_message) = admitted(resources, &ts).await;
                (key, in_secret, secret_message, in_crd, crd_message)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut mismatches = 0;
    for (key, in_secret, secret_message, in_crd, crd_message) in &results {
        let ours = is_valid_secret_key(key);
        if ours != *in_secret {
            mismatches += 1;
            eprintln!(
                "MISMATCH Secret data key {key:?}: apiserver {} ({secret_message}), is_valid_secret_key {ours}",
                if *in_secret { "accepted" } else { "rejected" }
            );
        }
        if in_crd != in_secret {
            mismatches += 1;
            eprintln!(
                "MISMATCH data[].secretKey {key:?}: ThalassaSecret admission {} ({crd_message}), but a Secret {} it ({secret_message})",
                if *in_crd { "accepts" } else { "rejects" },
                if *in_secret { "accepts" } else { "rejects" },
            );
        }
    }
    eprintln!(
        "{} keys compared in {:?}, {mismatches} mismatches",
        results.len(),
        started.elapsed()
    );
    assert_eq!(mismatches, 0, "Secret key rules disagree");
}

fn label_key_samples() -> Vec<String> {
    let mut samples: Vec<String> = [
        "a",
        "app",
        "A",
        "1",
        "a.b",
        "a_b",
        "a-b",
        "-a",
        "a-",
        "_a",
        "a_",
        ".a",
        "a.",
        "a b",
        "é",
        "",
        "a/b",
        "example.com/a",
        "Example.com/a",
        "EXAMPLE.COM/a",
        "a.b.c/d",
        "a..b/c",
        "a.-b/c",
        "-a.b/c",
        "a.b-/c",
        ".a/b",
        "a./b",
        "/a",
        "a/",
        "a/b/c",
        "a_b.com/c",
        "kubernetes.io/x",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/name",
        "secrets.thalassa.cloud/owner",
        "secrets.thalassa.cloud",
        "x.secrets.thalassa.cloud/y",
    ]
    .map(String::from)
    .into();
    for len in [63, 64] {
        samples.push("n".repeat(len));
        samples.push(format!("example.com/{}", "n".repeat(len)));
        samples.push(format!("{}.com/n", "p".repeat(len)));
    }
    for len in [253, 254] {
        let mut prefix = String::new();
        while prefix.len() < len {
            prefix.push_str("abcdefghi.");
        }
        prefix.truncate(len);
        let prefix = prefix.trim_end_matches('.').to_string() + "z";
        let prefix = &prefix[prefix.len() - len..];
        samples.push(format!("{prefix}/n"));
    }
    let mut rng = Rng(0x1A_BE15_0017);
    while samples.len() < 90 {
        let name = rng.word("abZ09-_.", 6);
        samples.push(if rng.chance(40) {
            format!("{}/{name}", rng.word("ab9-.", 6))
        } else {
            name
        });
    }
    samples.sort();
    samples.dedup();
    samples
}

fn label_value_samples() -> Vec<String> {
    let mut samples: Vec<String> = [
        "", "v", "V", "1", "a.b", "a_b", "a-b", "-v", "v-", "_v", "v_", ".v", "v.", "a b", "é",
        "a/b", "a:b",
    ]
    .map(String::from)
    .into();
    samples.push("v".repeat(63));
    samples.push("v".repeat(64));
    let mut rng = Rng(0x7A_1BE5_0017);
    while samples.len() < 40 {
        samples.push(rng.word("abZ09-_.", 6));
    }
    samples.sort();
    samples.dedup();
    samples
}

/// What is tried, the value, and the labels and annotations that carry it.
type MetadataSample = (
    &'static str,
    String,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
);

/// `target.labels` and `target.annotations`: the Rust validator and the CRD's CEL rules accept the
/// same maps, and neither accepts a label or annotation the apiserver would refuse on the Secret
/// (where the operator is stricter than the apiserver, for its own keys or otherwise, the sample
/// is printed as a note).
#[tokio::test]
async fn target_labels_and_annotations_are_validated_alike() {
    let _turn = crate::common::area_turn(module_path!()).await;
    let h = harness("parity-labels").await;
    let started = std::time::Instant::now();
    let config = config();
    let mut samples: Vec<MetadataSample> = Vec::new();
    for key in label_key_samples() {
        samples.push((
            "label key",
            key.clone(),
            BTreeMap::from([(key.clone(), "v".to_string())]),
            BTreeMap::new(),
        ));
        samples.push((
            "annotation key",
            key.clone(),
            BTreeMap::new(),
            BTreeMap::from([(key, "any value: é /".to_string())]),
        ));
    }
    for value in label_value_samples() {
        samples.push((
            "label value",
            value.clone(),
            BTreeMap::from([("k".to_string(), value)]),
            BTreeMap::new(),
        ));
    }
    let (secrets, resources, ns) = (h.secrets(), h.resources(), h.ns().to_string());
    let results: Vec<_> = stream::iter(samples.into_iter().enumerate())
        .map(|(i, (what, value, labels, annotations))| {
            let (secrets, resources, ns, config) = (&secrets, &resources, &ns, &config);
            async move {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("parity-meta-{i}")),
                        namespace: Some(ns.clone()),
                        labels: Some(labels.clone()),
                        annotations: Some(annotations.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let (in_secret, secret_message) = admitted(secrets, &secret).await;
                let mut spec = ThalassaSecretSpec {
                    data: vec![remote_ref("/a")],
                    ..Default::default()
                };
                spec.target.labels = labels;
                spec.target.annotations = annotations;
                let mut ts = ThalassaSecret::new(&format!("parity-meta-{i}"), spec);
                ts.metadata.namespace = Some(ns.clone());
                let (in_crd, crd_message) = admitted(resources, &ts).await;
                let rust = controller::validate(&ts, config)
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                (
                    what,
                    value,
                    in_secret,
                    secret_message,
                    in_crd,
                    crd_message,
                    rust,
                )
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut mismatches = 0;
    for (what, value, in_secret, secret_message, in_crd, crd_message, rust) in &results {
        let verdict = |ok: bool| if ok { "accepts" } else { "rejects" };
        if rust.is_ok() != *in_crd {
            mismatches += 1;
            eprintln!(
                "MISMATCH {what} {value:?}: CRD admission {} ({crd_message}), Rust validate {} ({})",
                verdict(*in_crd),
                verdict(rust.is_ok()),
                rust.as_ref().err().map_or("", String::as_str)
            );
        }
        if (rust.is_ok() || *in_crd) && !*in_secret {
            mismatches += 1;
            eprintln!(
                "MISMATCH {what} {value:?}: accepted for the ThalassaSecret but a Secret refuses it ({secret_message})"
            );
        } else if *in_secret && !*in_crd {
            eprintln!(
                "note: {what} {value:?} is valid on a Secret but refused by the operator ({crd_message})"
            );
        }
    }
    eprintln!(
        "{} label/annotation samples compared in {:?}, {mismatches} mismatches",
        results.len(),
        started.elapsed()
    );
    assert_eq!(mismatches, 0, "label and annotation rules disagree");
}
