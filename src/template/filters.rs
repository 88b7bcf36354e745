//! The template engine's configuration ([`environment`]: strict undefined variables, fuel,
//! recursion limit, no auto-escaping, no loader) and the filters added to minijinja's built-in
//! ones, with the list docs/reference.md documents.
//!
//! I/O contract: pure. A filter's error names only what went wrong, never its input (the caller
//! builds the message from the error's kind and the template's own text).

use base64::Engine as _;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use super::{FUEL, RECURSION_LIMIT};

/// The filters added to minijinja's built-in ones, for docs/reference.md.
pub const EXTRA_FILTERS: &[&str] = &[
    "b64enc",
    "b64dec",
    "fromjson",
    "toyaml",
    "fromyaml",
    "urlencode_userinfo",
];

/// Every filter docs/reference.md documents, with an example and what it renders (a unit test renders
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

/// The engine every template is compiled and rendered with.
pub(super) fn environment() -> Environment<'static> {
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

pub(super) fn encode_userinfo(bytes: &[u8]) -> String {
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
