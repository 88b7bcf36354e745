//! Property tests for every parser and validator that sees user or server input: secret paths and
//! path prefixes (against a reference model and against the CRD's own schema), durations (against
//! an exact reference model and the CRD's pattern), Secret keys and the keys derived from paths
//! under a prefix, the data hash, base64 values and the JSON decoding of every wire type.
//!
//! Pure and offline; the apiserver side of the same rules is `tests/cluster/admission_parity.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use kube::CustomResourceExt;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use regex::Regex;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use thalassa_operator::{
    config::{Cli, Config, parse_duration},
    controller,
    crd::{DataEntry, DataFromSource, RemoteRef, ThalassaSecret, ThalassaSecretSpec},
    error::Reason,
    render::{
        HashKey, KeyMapping, RenderSource, SourceValue, data_hash, is_label_value,
        is_qualified_name, is_valid_secret_key, prefix_key, render_data,
    },
    thalassa::{
        self, BrowseSecretsResponse, KmsKey, KmsKeyStatus, KmsKeyVersion, KmsRegionSummary,
        KmsSummary, MAX_PATH_LEN, Organisation, PathError, PutSecretValueResponse, Region,
        RevealedSecret, Secret, SecretBytes, SecretValue, SecretVersion,
    },
};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Reference models
// ---------------------------------------------------------------------------------------------

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.' | '+')
}

/// A browse path or prefix: `/`, then segments of path characters, each non-empty and neither `.`
/// nor `..`, each followed by `/` except possibly the last; at most 512 characters.
fn model_browse_path(p: &str) -> bool {
    let Some(body) = p.strip_prefix('/') else {
        return false;
    };
    if p.chars().count() > MAX_PATH_LEN || !p.chars().all(is_path_char) {
        return false;
    }
    if body.is_empty() {
        return true;
    }
    let body = body.strip_suffix('/').unwrap_or(body);
    body.split('/')
        .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

/// A secret path: a browse path that is not a directory (no trailing `/`, so not `/` either).
fn model_secret_path(p: &str) -> bool {
    model_browse_path(p) && !p.ends_with('/')
}

fn has_dot_segment(p: &str) -> bool {
    p.split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// Exact value of a duration in the CRD grammar `([0-9]+(\.[0-9]+)?(ms|s|m|h))+`, in nanoseconds
/// (fractions of a nanosecond truncated per part), or `None` when the text is outside the grammar.
fn model_duration_nanos(text: &str) -> Option<u128> {
    let mut rest = text;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int_len == 0 {
            return None;
        }
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after) = rest.strip_prefix('.') {
            let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
            if frac_len == 0 {
                return None;
            }
            frac_part = &after[..frac_len];
            rest = &after[frac_len..];
        }
        let unit: u128 = if let Some(r) = rest.strip_prefix("ms") {
            rest = r;
            1_000_000
        } else if let Some(r) = rest.strip_prefix('s') {
            rest = r;
            1_000_000_000
        } else if let Some(r) = rest.strip_prefix('m') {
            rest = r;
            60_000_000_000
        } else if let Some(r) = rest.strip_prefix('h') {
            rest = r;
            3_600_000_000_000
        } else {
            return None;
        };
        // Saturate: anything this large is far beyond every limit anyway.
        let int: u128 = int_part.parse().unwrap_or(u128::MAX / 4);
        let frac_digits = &frac_part[..frac_part.len().min(20)];
        let frac: u128 = if frac_digits.is_empty() {
            0
        } else {
            frac_digits.parse::<u128>().unwrap() * unit / 10u128.pow(frac_digits.len() as u32)
        };
        total = total
            .saturating_add(int.saturating_mul(unit))
            .saturating_add(frac);
    }
    Some(total)
}

/// Reference standard-base64 decoder: padding optional (in part or whole) but never excess, no bits
/// after the last byte, no characters outside the alphabet.
fn model_base64(text: &str) -> Option<Vec<u8>> {
    let unpadded = text.trim_end_matches('=');
    let pad = text.len() - unpadded.len();
    let rem = unpadded.len() % 4;
    // Padding is optional, and so is part of it ("YQ=" for "YQ=="): the decoder is configured
    // `DecodePaddingMode::Indifferent`. More `=` than the length calls for is an error.
    if rem == 1 || pad > (4 - rem) % 4 {
        return None;
    }
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in unpadded.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

// ---------------------------------------------------------------------------------------------
// The CRD's own rules, read from the generated schema so the properties follow the CRD
// ---------------------------------------------------------------------------------------------

struct StringRule {
    pattern: Regex,
    min: usize,
    max: usize,
}

impl StringRule {
    fn from_schema(schema: &Value) -> Self {
        StringRule {
            pattern: Regex::new(schema["pattern"].as_str().expect("pattern in schema")).unwrap(),
            min: schema["minLength"].as_u64().unwrap_or(0) as usize,
            max: schema["maxLength"].as_u64().unwrap_or(u64::MAX) as usize,
        }
    }

    /// What the OpenAPI part of the schema accepts (lengths count characters, as Kubernetes does).
    fn accepts(&self, text: &str) -> bool {
        let len = text.chars().count();
        (self.min..=self.max).contains(&len) && self.pattern.is_match(text)
    }
}

struct CrdRules {
    remote_ref_path: StringRule,
    data_from_path: StringRule,
    path_prefix: StringRule,
    refresh_interval: StringRule,
    secret_key: StringRule,
}

fn crd_rules() -> &'static CrdRules {
    static RULES: std::sync::OnceLock<CrdRules> = std::sync::OnceLock::new();
    RULES.get_or_init(|| {
        let crd = serde_json::to_value(ThalassaSecret::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"];
        let data = &spec["data"]["items"]["properties"];
        let data_from = &spec["dataFrom"]["items"]["properties"];
        CrdRules {
            remote_ref_path: StringRule::from_schema(&data["remoteRef"]["properties"]["path"]),
            data_from_path: StringRule::from_schema(&data_from["path"]),
            path_prefix: StringRule::from_schema(&data_from["pathPrefix"]),
            refresh_interval: StringRule::from_schema(&spec["refreshInterval"]),
            secret_key: StringRule::from_schema(&data["secretKey"]),
        }
    })
}

fn config() -> &'static Config {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        Cli::try_parse_args_from(["op", "--organisation", "o", "--token-file", "/t"])
            .expect("flags parse")
            .args
            .into_config()
            .expect("valid config")
    })
}

fn resource(spec: ThalassaSecretSpec) -> ThalassaSecret {
    let mut ts = ThalassaSecret::new("props", spec);
    ts.metadata.namespace = Some("default".into());
    ts
}

fn spec_with_path(path: &str) -> ThalassaSecretSpec {
    ThalassaSecretSpec {
        data: vec![DataEntry {
            secret_key: "a".into(),
            remote_ref: RemoteRef {
                path: path.into(),
                property: None,
                version: None,
            },
            generate: None,
        }],
        ..Default::default()
    }
}

fn spec_with_data_from(path: Option<&str>, prefix: Option<&str>) -> ThalassaSecretSpec {
    ThalassaSecretSpec {
        data_from: vec![DataFromSource {
            path: path.map(Into::into),
            path_prefix: prefix.map(Into::into),
        }],
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// One path segment: mostly valid, often tricky (`.`, `..`, `...`, dot files, empty, unicode,
/// characters outside the set, percent-encodings).
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[A-Za-z0-9_.+-]{1,12}",
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just("...".to_string()),
        1 => Just(".hidden".to_string()),
        1 => Just("a..b".to_string()),
        1 => Just(String::new()),
        1 => Just("%2e%2e".to_string()),
        1 => "[a-z]{0,3}[ é?#%\\\\\u{0}\u{200b}ø:;*][a-z]{0,3}",
        1 => "\\PC{1,4}",
    ]
}

/// Paths built from segments, with or without leading and trailing `/`, sometimes very long,
/// plus arbitrary strings.
fn path_like() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (any::<bool>(), vec(segment(), 0..6), any::<bool>()).prop_map(|(lead, segs, trail)| {
            let mut p = String::new();
            if lead || segs.is_empty() {
                p.push('/');
            }
            p.push_str(&segs.join("/"));
            if trail {
                p.push('/');
            }
            p
        }),
        1 => (500usize..530, "[a-z]{1,8}").prop_map(|(len, seg)| {
            let mut p = String::new();
            while p.len() < len {
                p.push('/');
                p.push_str(&seg);
            }
            p.truncate(len);
            p
        }),
        1 => any::<String>(),
    ]
}

/// Durations in the CRD grammar, and near misses.
fn duration_like() -> impl Strategy<Value = String> {
    let part = (
        prop_oneof![4 => "[0-9]{1,4}", 1 => "0{0,3}[0-9]{1,9}"],
        proptest::option::of("[0-9]{1,12}"),
        prop_oneof![Just("ms"), Just("s"), Just("m"), Just("h")],
    )
        .prop_map(|(int, frac, unit)| match frac {
            Some(frac) => format!("{int}.{frac}{unit}"),
            None => format!("{int}{unit}"),
        });
    prop_oneof![
        6 => vec(part, 1..4).prop_map(|parts| parts.concat()),
        1 => "[0-9.]{0,4}(ms|s|m|h|us|ns|d|µs|)[0-9]{0,2}(s|m|)",
        1 => "[ +-]?[0-9]{1,3}(s|m)[ ]?",
        1 => "[0-9]{15,22}(h|m|s)",
        1 => "\\PC{0,8}",
    ]
}

/// A JSON value of any shape; object keys are often field names of the wire types, so decodes
/// succeed often enough to exercise the round trips.
fn any_json() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("path"),
        Just("description"),
        Just("labels"),
        Just("annotations"),
        Just("createdAt"),
        Just("updatedAt"),
        Just("destroyedAt"),
        Just("kmsKey"),
        Just("currentVersion"),
        Just("objectVersion"),
        Just("region"),
        Just("accessPolicy"),
        Just("versions"),
        Just("version"),
        Just("status"),
        Just("identity"),
        Just("name"),
        Just("slug"),
        Just("prefixes"),
        Just("secrets"),
        Just("featureEnabled"),
        Just("regions"),
        Just("kmsAvailable"),
        Just("totalKeys"),
        Just("keyType"),
        Just("latestVersion"),
        Just("rotationPeriodInDays"),
        Just("organisation"),
        Just("secretString"),
        Just("secretKeyValues"),
        Just("kmsKeyIdentity"),
        Just("kmsKeyVersion"),
    ]
    .prop_map(str::to_string);
    let key = prop_oneof![4 => field, 1 => "\\PC{0,6}"];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| json!(n % 1000)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("active".to_string()),
            Just("pending_deletion".to_string()),
            Just("destroyed".to_string()),
            Just("2026-01-01T00:00:00Z".to_string()),
            Just("2026-13-01T00:00:00Z".to_string()),
            Just("cHc=".to_string()),
            "[A-Za-z0-9+/=]{0,12}",
            "\\PC{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(1000))]

    /// `validate_path` accepts exactly the reference model, and every accepted path is safe to put
    /// into a URL: leading `/`, no `//`, no `.` or `..` segment, no trailing `/`, only
    /// `A-Z a-z 0-9 / _ - . +`, at most 512 characters.
    #[test]
    fn secret_path_validation_matches_the_model(p in path_like()) {
        let result = thalassa::validate_path(&p);
        prop_assert_eq!(result.is_ok(), model_secret_path(&p), "path {:?}: {:?}", p, result);
        if result.is_ok() {
            prop_assert!(p.starts_with('/') && !p.ends_with('/') && !p.contains("//"));
            prop_assert!(!has_dot_segment(&p));
            prop_assert!(p.chars().all(is_path_char) && p.chars().count() <= MAX_PATH_LEN);
        }
    }

    /// Same for browse paths and prefixes, where a trailing `/` (and `/` alone) is allowed.
    #[test]
    fn browse_path_validation_matches_the_model(p in path_like()) {
        let result = thalassa::validate_browse_path(&p);
        prop_assert_eq!(result.is_ok(), model_browse_path(&p), "path {:?}: {:?}", p, result);
        if result.is_ok() {
            prop_assert!(p.starts_with('/') && !p.contains("//") && !has_dot_segment(&p));
        }
    }

    /// The error names the real culprit: the character and position it reports are in the path,
    /// and the length it reports is the path's length in characters.
    #[test]
    fn path_errors_describe_the_input(p in path_like()) {
        match thalassa::validate_path(&p) {
            Err(PathError::InvalidCharacter { character, position }) => {
                prop_assert_eq!(p.chars().nth(position), Some(character));
                prop_assert!(!is_path_char(character));
            }
            Err(PathError::TooLong { len }) => {
                prop_assert_eq!(len, p.chars().count());
                prop_assert!(len > MAX_PATH_LEN);
            }
            Err(PathError::Empty) => prop_assert!(p.is_empty()),
            Err(PathError::MissingLeadingSlash) => prop_assert!(!p.starts_with('/')),
            Err(PathError::TrailingSlash) => prop_assert!(p.ends_with('/')),
            Err(PathError::DoubleSlash) => prop_assert!(p.contains("//")),
            _ => {}
        }
    }

    /// Offline half of the admission parity: the Rust validator (through the full spec validation
    /// the controller runs) accepts a `remoteRef.path` or `dataFrom[].path` exactly when the
    /// CRD's OpenAPI rules do and it has no `.`/`..` segment (the CEL rule; the apiserver itself
    /// is asked in tests/cluster/admission_parity.rs).
    #[test]
    fn spec_paths_follow_the_crd_schema(p in path_like()) {
        let config = config();
        let rules = crd_rules();
        let expected = rules.remote_ref_path.accepts(&p) && !has_dot_segment(&p);
        let ours = controller::validate(&resource(spec_with_path(&p)), config);
        prop_assert_eq!(ours.is_ok(), expected, "remoteRef.path {:?}: {:?}", p, ours.err());
        let expected = rules.data_from_path.accepts(&p) && !has_dot_segment(&p);
        let ours = controller::validate(&resource(spec_with_data_from(Some(&p), None)), config);
        prop_assert_eq!(ours.is_ok(), expected, "dataFrom.path {:?}: {:?}", p, ours.err());
    }

    /// The same for `dataFrom[].pathPrefix`.
    #[test]
    fn spec_path_prefixes_follow_the_crd_schema(p in path_like()) {
        let rules = crd_rules();
        let expected = rules.path_prefix.accepts(&p) && !has_dot_segment(&p);
        let ours = controller::validate(&resource(spec_with_data_from(None, Some(&p))), config());
        prop_assert_eq!(ours.is_ok(), expected, "pathPrefix {:?}: {:?}", p, ours.err());
    }
}

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(1000))]

    /// `parse_duration` never panics, accepts exactly the CRD grammar (within Go's range of
    /// durations, which the CEL rule uses), and agrees with the exact value to the nanosecond per
    /// part (Go computes fractions in floating point).
    #[test]
    fn parse_duration_matches_the_model(text in duration_like()) {
        let ours = parse_duration(&text);
        let grammar = crd_rules().refresh_interval.accepts(&text);
        let model = model_duration_nanos(&text);
        prop_assert_eq!(grammar, model.is_some(), "model and CRD pattern disagree on {:?}", text);
        const GO_MAX_NANOS: u128 = i64::MAX as u128;
        match model {
            Some(nanos) if nanos <= GO_MAX_NANOS - 1_000 => {
                let got = ours.map_err(|e| TestCaseError::fail(format!("{text:?} rejected: {e}")))?;
                let parts = text.matches(|c: char| c.is_ascii_alphabetic()).count() as u128;
                let diff = got.as_nanos().abs_diff(nanos);
                prop_assert!(diff <= parts, "{:?}: got {:?}, exact {}ns", text, got, nanos);
            }
            Some(nanos) if nanos > GO_MAX_NANOS + 1_000 => {
                prop_assert!(ours.is_err(), "{:?} is beyond Go's range but parsed as {:?}", text, ours);
            }
            Some(_) => {} // within a microsecond of the limit: either answer is fine
            None => prop_assert!(ours.is_err(), "{:?} is outside the grammar but parsed as {:?}", text, ours),
        }
    }

    /// The spec's refreshInterval is accepted exactly when it is in the grammar and at least 10s.
    #[test]
    fn refresh_interval_validation_matches_the_model(text in duration_like()) {
        let mut spec = spec_with_path("/a");
        spec.refresh_interval = Some(text.clone());
        let ours = controller::validate(&resource(spec), config());
        let expected = model_duration_nanos(&text)
            .is_some_and(|n| (10_000_000_000..=i64::MAX as u128 - 1_000).contains(&n));
        // Values within a nanosecond per part of 10s or of the limit depend on Go's float
        // rounding; the apiserver test covers those exactly.
        let borderline = model_duration_nanos(&text).is_some_and(|n| {
            n.abs_diff(10_000_000_000) <= 8 || n.abs_diff(i64::MAX as u128) <= 1_000
        });
        if !borderline {
            prop_assert_eq!(ours.is_ok(), expected, "refreshInterval {:?}: {:?}", text, ours.err());
        }
    }
}

#[test]
fn parse_duration_examples() {
    for (text, expected) in [
        ("10s", Some(Duration::from_secs(10))),
        ("1h30m", Some(Duration::from_secs(5400))),
        ("1.5s", Some(Duration::from_millis(1500))),
        ("500ms", Some(Duration::from_millis(500))),
        ("10000ms", Some(Duration::from_secs(10))),
        ("0s", Some(Duration::ZERO)),
        ("2562047h", Some(Duration::from_secs(2_562_047 * 3600))),
        ("2562048h", None),
        ("99999999999999999999h", None),
        (" 10s", None),
        ("10s ", None),
        (".5s", None),
        ("1.s", None),
        ("1", None),
        ("-1s", None),
        ("1d", None),
        ("1us", None),
    ] {
        assert_eq!(parse_duration(text).ok(), expected, "{text:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Secret keys, keys derived under a prefix, rendering and the data hash
// ---------------------------------------------------------------------------------------------

fn string_value(text: &str) -> SecretValue {
    SecretValue::String(SecretBytes::from(text))
}

proptest! {
    #![proptest_config(cases(500))]

    /// `is_valid_secret_key` is Kubernetes' Secret key rule: the CRD's `secretKey` pattern and
    /// length, not `.`, not starting with `..` (checked against the apiserver in
    /// tests/cluster/admission_parity.rs).
    #[test]
    fn secret_key_rule_matches_the_crd(key in prop_oneof![
        "[-._a-zA-Z0-9]{0,8}",
        Just(".".to_string()),
        Just("..".to_string()),
        Just("..x".to_string()),
        Just("...".to_string()),
        "[.]{1,3}[a-z.]{0,3}",
        "[a-z]{250,256}",
        "\\PC{0,6}",
    ]) {
        let expected = crd_rules().secret_key.accepts(&key) && key != "." && !key.starts_with("..");
        prop_assert_eq!(is_valid_secret_key(&key), expected, "key {:?}", key);
    }

    /// Label and annotation keys follow Kubernetes' `IsQualifiedName` (an optional DNS-subdomain
    /// prefix of at most 253 bytes, then a name of 1-63 characters), label values
    /// `IsValidLabelValue`; written from the apimachinery regexes, not from our code.
    #[test]
    fn label_rules_match_kubernetes(
        prefix in proptest::option::of(prop_oneof![
            "[a-z0-9.-]{0,12}",
            "[a-zA-Z0-9._-]{0,6}",
            (1usize..30).prop_map(|n| "abcdefgh.".repeat(n) + "z"),
        ]),
        name in prop_oneof!["[A-Za-z0-9._-]{0,8}", "[a-z]{60,66}", "\\PC{0,4}"],
    ) {
        let subdomain = Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap();
        let name_rule = Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").unwrap();
        let name_ok = name.len() <= 63 && name_rule.is_match(&name);
        let key = match &prefix {
            Some(prefix) => format!("{prefix}/{name}"),
            None => name.clone(),
        };
        let expected = name_ok
            && prefix.as_ref().is_none_or(|p| p.len() <= 253 && subdomain.is_match(p));
        prop_assert_eq!(is_qualified_name(&key), expected, "key {:?}", key);
        prop_assert_eq!(is_label_value(&name), name.is_empty() || name_ok, "value {:?}", name);
    }

    /// A path under a valid prefix maps to its relative path with `/` → `_` and `+` → `-`; the
    /// rendered Secret then holds exactly that key, or render refuses with SourceFormatMismatch
    /// when it is not a valid Secret key. A key/value secret under the prefix yields
    /// `<key>.<property>` for each property, with the same guarantee.
    #[test]
    fn prefix_keys_are_valid_or_refused(
        prefix_segments in vec("[A-Za-z0-9_.+-]{1,10}", 0..3),
        relative_segments in vec(segment(), 1..4),
        properties in btree_map("\\PC{0,10}", "[a-z]{0,4}", 0..4),
    ) {
        let prefix = format!("/{}", prefix_segments.iter().map(|s| format!("{s}/")).collect::<String>());
        let relative = relative_segments.join("/");
        let path = format!("{prefix}{relative}");
        prop_assume!(thalassa::validate_browse_path(&prefix).is_ok());
        prop_assume!(thalassa::validate_path(&path).is_ok());
        let key = prefix_key(&prefix, &path);
        prop_assert_eq!(&key, &relative.replace('/', "_").replace('+', "-"));
        prop_assert!(!key.contains('/') && !key.contains('+'));

        let mapping = KeyMapping::UnderPrefix { relative_key: key.clone() };
        let value = string_value("v");
        let rendered = render_data(&[RenderSource {
            path: &path,
            version: 1,
            mappings: vec![&mapping],
            value: SourceValue::Revealed(&value),
        }], None);
        if is_valid_secret_key(&key) {
            let rendered = rendered.expect("valid key renders");
            prop_assert_eq!(rendered.data.keys().collect::<Vec<_>>(), vec![&key]);
        } else {
            prop_assert_eq!(rendered.unwrap_err().reason(), Reason::SourceFormatMismatch);
        }

        let kv = SecretValue::KeyValues(properties.iter()
            .map(|(k, v)| (k.clone(), SecretBytes::from(v.as_str()))).collect());
        let rendered = render_data(&[RenderSource {
            path: &path,
            version: 1,
            mappings: vec![&mapping],
            value: SourceValue::Revealed(&kv),
        }], None);
        let expected_keys: Vec<String> = properties.keys().map(|p| format!("{key}.{p}")).collect();
        if expected_keys.iter().all(|k| is_valid_secret_key(k)) {
            let rendered = rendered.expect("valid keys render");
            let mut got: Vec<_> = rendered.data.keys().cloned().collect();
            let mut want = expected_keys.clone();
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        } else {
            prop_assert_eq!(rendered.unwrap_err().reason(), Reason::SourceFormatMismatch);
        }
    }

    /// Whatever a listing returns (even paths outside the prefix), prefix_key never panics and a
    /// render never writes an invalid key: it succeeds with valid keys or reports why not.
    #[test]
    fn render_never_writes_an_invalid_key(
        prefix in path_like(),
        paths in vec(path_like(), 1..4),
    ) {
        let keys: Vec<KeyMapping> = paths.iter()
            .map(|p| KeyMapping::UnderPrefix { relative_key: prefix_key(&prefix, p) })
            .collect();
        let value = string_value("v");
        let sources: Vec<RenderSource<'_>> = paths.iter().zip(&keys).map(|(p, m)| RenderSource {
            path: p,
            version: 1,
            mappings: vec![m],
            value: SourceValue::Revealed(&value),
        }).collect();
        match render_data(&sources, None) {
            Ok(rendered) => prop_assert!(rendered.data.keys().all(|k| is_valid_secret_key(k))),
            Err(e) => prop_assert!(
                matches!(e.reason(), Reason::SourceFormatMismatch | Reason::TargetKeyConflict),
                "unexpected {}", e.reason()
            ),
        }
    }

    /// Two different paths under one prefix either render as two keys or are refused as a key
    /// conflict (`a/b` and `a_b` collide); one never silently overwrites the other.
    #[test]
    fn colliding_prefix_keys_are_conflicts(
        a in vec("[a-z_+-]{1,3}", 1..3),
        b in vec("[a-z_+-]{1,3}", 1..3),
    ) {
        let (pa, pb) = (format!("/p/{}", a.join("/")), format!("/p/{}", b.join("/")));
        prop_assume!(pa != pb);
        let (ka, kb) = (prefix_key("/p/", &pa), prefix_key("/p/", &pb));
        let (ma, mb) = (KeyMapping::UnderPrefix { relative_key: ka.clone() },
                        KeyMapping::UnderPrefix { relative_key: kb.clone() });
        let (va, vb) = (string_value("A"), string_value("B"));
        let result = render_data(&[
            RenderSource { path: &pa, version: 1, mappings: vec![&ma], value: SourceValue::Revealed(&va) },
            RenderSource { path: &pb, version: 1, mappings: vec![&mb], value: SourceValue::Revealed(&vb) },
        ], None);
        if ka == kb {
            prop_assert_eq!(result.unwrap_err().reason(), Reason::TargetKeyConflict);
        } else {
            let rendered = result.expect("distinct keys render");
            prop_assert_eq!(&rendered.data[&ka].0, b"A");
            prop_assert_eq!(&rendered.data[&kb].0, b"B");
        }
    }

    /// The data hash is a function of the type and the map alone (not of iteration order), has a
    /// fixed shape, and changes with the key material, the type and any key or value.
    #[test]
    fn data_hash_is_order_independent_and_injective(
        a in btree_map("[a-z.]{0,4}", vec(any::<u8>(), 0..6), 0..5),
        b in btree_map("[a-z.]{0,4}", vec(any::<u8>(), 0..6), 0..5),
        type_a in proptest::option::of("[a-z/.]{0,6}"),
        key in vec(any::<u8>(), 32),
    ) {
        let to_data = |m: &BTreeMap<String, Vec<u8>>| -> BTreeMap<String, ByteString> {
            m.iter().map(|(k, v)| (k.clone(), ByteString(v.clone()))).collect()
        };
        let (da, db) = (to_data(&a), to_data(&b));
        let hash_key = HashKey::new(key.clone());
        let h = data_hash(&hash_key, type_a.as_deref(), &da);
        prop_assert_eq!(&h, &data_hash(&hash_key, type_a.as_deref(), da.iter().rev()));
        prop_assert!(h.starts_with("hmac-sha256:") && h.len() == 12 + 64);
        prop_assert!(h[12..].bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        prop_assert_eq!(da == db, h == data_hash(&hash_key, type_a.as_deref(), &db));
        let mut other_key = key;
        other_key[0] ^= 1;
        prop_assert_ne!(&h, &data_hash(&HashKey::new(other_key), type_a.as_deref(), &da));
        let other_type = format!("{}x", type_a.as_deref().unwrap_or(""));
        prop_assert_ne!(&h, &data_hash(&hash_key, Some(&other_type), &da));
    }
}

// ---------------------------------------------------------------------------------------------
// Base64 values and the reveal response
// ---------------------------------------------------------------------------------------------

fn reveal_body(field: &str, value: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"path": "/a", "version": 1, field: value, "kmsKeyVersion": "1"}))
        .unwrap()
}

proptest! {
    #![proptest_config(cases(800))]

    /// Any bytes round-trip through base64.
    #[test]
    fn base64_round_trips(bytes in vec(any::<u8>(), 0..200)) {
        let encoded = SecretBytes::new(bytes.clone()).to_base64();
        prop_assert_eq!(model_base64(&encoded), Some(bytes.clone()));
        prop_assert_eq!(SecretBytes::from_base64(&encoded).unwrap().expose().to_vec(), bytes.clone());
        // Padding is optional on input.
        let unpadded = encoded.trim_end_matches('=');
        prop_assert_eq!(SecretBytes::from_base64(unpadded).unwrap().expose().to_vec(), bytes);
    }

    /// Decoding accepts exactly what the reference decoder accepts, with the same bytes: invalid
    /// characters, misplaced or excess padding, impossible lengths and non-canonical trailing
    /// bits are all rejected.
    #[test]
    fn base64_decoding_matches_the_model(text in prop_oneof![
        "[A-Za-z0-9+/]{0,16}={0,3}",
        "[A-Za-z0-9+/=]{0,16}",
        "[A-Za-z0-9+/=_*!. -]{0,16}",
        "\\PC{0,8}",
    ]) {
        let ours = SecretBytes::from_base64(&text).ok().map(|b| b.expose().to_vec());
        prop_assert_eq!(ours, model_base64(&text), "{:?}", text);
    }

    /// Through the wire type: `secretString` and every `secretKeyValues` value decode exactly as
    /// the model says, and a rejection never quotes the value.
    #[test]
    fn reveal_decodes_values_or_rejects_without_quoting(
        text in "[A-Za-z0-9+/=_*!-]{8,40}",
        key_values in btree_map("[a-z]{1,4}", "[A-Za-z0-9+/=*]{0,12}", 0..4),
    ) {
        match RevealedSecret::from_response_json(&reveal_body("secretString", json!(text))) {
            Ok(revealed) => {
                let expected = model_base64(&text);
                prop_assert!(expected.is_some(), "{:?} accepted", text);
                prop_assert_eq!(revealed.value, SecretValue::String(SecretBytes::new(expected.unwrap())));
            }
            Err(e) => {
                prop_assert!(model_base64(&text).is_none(), "{:?} rejected: {}", text, e);
                prop_assert!(!e.contains(&text), "error quotes the value: {}", e);
                prop_assert_eq!(e.as_str(), "a secret value is not valid base64");
            }
        }
        let body = reveal_body("secretKeyValues", json!(key_values));
        let expected: Option<BTreeMap<String, SecretBytes>> = key_values.iter()
            .map(|(k, v)| model_base64(v).map(|b| (k.clone(), SecretBytes::new(b))))
            .collect();
        match (RevealedSecret::from_response_json(&body), expected) {
            (Ok(revealed), Some(expected)) => prop_assert_eq!(revealed.value, SecretValue::KeyValues(expected)),
            (Err(e), None) => {
                for v in key_values.values().filter(|v| v.len() >= 6) {
                    prop_assert!(!e.contains(v.as_str()), "error quotes a value: {}", e);
                }
            }
            (got, expected) => prop_assert!(false, "{:?}: got {:?}, expected {:?}", key_values, got.map(|r| r.value), expected),
        }
    }

    /// Exactly one value format: both or neither is an error, whatever else the body holds.
    #[test]
    fn reveal_requires_exactly_one_format(
        string in proptest::option::of(Just("cHc=")),
        kv in proptest::option::of(Just(json!({"u": "eA=="}))),
        version in any::<u64>(),
    ) {
        let mut body = json!({"version": version});
        if let Some(s) = string { body["secretString"] = json!(s); }
        if let Some(kv) = &kv { body["secretKeyValues"] = kv.clone(); }
        let result = RevealedSecret::from_response_json(&serde_json::to_vec(&body).unwrap());
        prop_assert_eq!(result.is_ok(), string.is_some() != kv.is_some(), "{}", body);
        if let Ok(revealed) = result {
            prop_assert_eq!(revealed.version, version);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire types: arbitrary JSON never panics; whatever decodes round-trips
// ---------------------------------------------------------------------------------------------

/// Decodes `value` as `T`; when it decodes, encoding and decoding again gives the same value, and
/// the text form decodes to the same value too.
fn round_trips<T>(value: &Value) -> Result<bool, TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(decoded) = serde_json::from_value::<T>(value.clone()) else {
        return Ok(false);
    };
    let encoded = serde_json::to_value(&decoded).expect("decoded value encodes");
    let again: T = serde_json::from_value(encoded.clone())
        .map_err(|e| TestCaseError::fail(format!("re-decoding {encoded} failed: {e}")))?;
    prop_assert_eq!(&again, &decoded, "round trip of {}", value);
    let text = serde_json::to_vec(&decoded).unwrap();
    let from_text: T = serde_json::from_slice(&text)
        .map_err(|e| TestCaseError::fail(format!("re-decoding text failed: {e}")))?;
    prop_assert_eq!(&from_text, &decoded);
    Ok(true)
}

/// Whether a reveal error consists only of the decoder's fixed texts, an error kind and numbers.
fn fixed_words_only(message: &str) -> bool {
    [
        "a secret value is not valid base64",
        "neither secretString nor secretKeyValues is present",
        "both secretString and secretKeyValues are present",
        " error in the JSON body at line ",
        " column ",
        "Syntax",
        "Data",
        "Eof",
        "Io",
    ]
    .iter()
    .fold(message.to_string(), |m, fixed| m.replace(fixed, " "))
    .chars()
    .all(|c| c.is_ascii_digit() || c == ' ')
}

/// Wraps `value` so it has the fields a type requires, to get past the first check more often.
fn with_required(value: &Value, required: &[(&str, Value)]) -> Value {
    let mut object = match value {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    for (field, default) in required {
        object.entry(*field).or_insert_with(|| default.clone());
    }
    Value::Object(object)
}

proptest! {
    #![proptest_config(cases(500))]

    /// Every response type decodes arbitrary JSON without panicking, and whatever decodes
    /// round-trips through its serialization.
    #[test]
    fn wire_types_decode_anything_and_round_trip(value in any_json()) {
        let secret = with_required(&value, &[("path", json!("/a"))]);
        let key = with_required(&value, &[("identity", json!("k")), ("status", json!("active"))]);
        let versioned = with_required(&value, &[("version", json!(1))]);
        let mut decoded = 0;
        for v in [&value, &secret] {
            decoded += round_trips::<Secret>(v)? as u32;
            decoded += round_trips::<BrowseSecretsResponse>(v)? as u32;
        }
        for v in [&value, &key] {
            decoded += round_trips::<KmsKey>(v)? as u32;
        }
        for v in [&value, &versioned] {
            decoded += round_trips::<SecretVersion>(v)? as u32;
            decoded += round_trips::<KmsKeyVersion>(v)? as u32;
            decoded += round_trips::<PutSecretValueResponse>(v)? as u32;
        }
        decoded += round_trips::<Region>(&value)? as u32;
        decoded += round_trips::<KmsSummary>(&value)? as u32;
        decoded += round_trips::<KmsRegionSummary>(&value)? as u32;
        decoded += round_trips::<KmsKeyStatus>(&value)? as u32;
        decoded += round_trips::<Organisation>(&value)? as u32;
        let _ = decoded;
        // The reveal response does not serialize (it holds values); it must never panic, and its
        // error is made of our own words and a position, never of the body.
        for body in [&value, &versioned] {
            if let Err(e) = RevealedSecret::from_response_json(&serde_json::to_vec(body).unwrap()) {
                prop_assert!(fixed_words_only(&e), "error text from the body: {:?}", e);
            }
        }
    }

    /// Arbitrary bytes (truncated or corrupted JSON) never panic any decoder.
    #[test]
    fn wire_types_survive_arbitrary_bytes(
        value in any_json(),
        cut in any::<prop::sample::Index>(),
        flip in any::<(prop::sample::Index, u8)>(),
        junk in vec(any::<u8>(), 0..32),
    ) {
        let text = serde_json::to_vec(&value).unwrap();
        let mut corrupted = text.clone();
        let i = flip.0.index(corrupted.len());
        corrupted[i] ^= flip.1;
        for body in [&text[..cut.index(text.len() + 1)], &corrupted[..], &junk[..]] {
            let _ = serde_json::from_slice::<Secret>(body);
            let _ = serde_json::from_slice::<BrowseSecretsResponse>(body);
            let _ = serde_json::from_slice::<KmsKey>(body);
            let _ = serde_json::from_slice::<KmsSummary>(body);
            let _ = serde_json::from_slice::<PutSecretValueResponse>(body);
            let _ = serde_json::from_slice::<Vec<Secret>>(body);
            let _ = RevealedSecret::from_response_json(body);
        }
    }
}

/// The generator reaches the interesting side of every decoder, so the round-trip property is not
/// vacuous: realistic bodies decode.
#[test]
fn realistic_bodies_decode() {
    let secret = json!({"path": "/a", "labels": null, "versions": [{"version": 1, "status": "current"}],
        "kmsKey": {"identity": "k", "status": "active"}, "createdAt": "2026-01-01T00:00:00Z"});
    assert!(round_trips::<Secret>(&secret).unwrap());
    let key = json!({"identity": "k", "status": "archived", "versions": null});
    assert!(round_trips::<KmsKey>(&key).unwrap());
    let summary =
        json!({"featureEnabled": true, "regions": [{"slug": "nl-01", "kmsAvailable": true}]});
    assert!(round_trips::<KmsSummary>(&summary).unwrap());
    let browse = json!({"path": "/", "prefixes": ["/a/"], "secrets": [{"path": "/b"}]});
    assert!(round_trips::<BrowseSecretsResponse>(&browse).unwrap());
}
