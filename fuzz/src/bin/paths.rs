//! Fuzz target: path validation, the keys derived from paths under a prefix, Secret keys and
//! durations. Input: `prefix\npath` (the whole input is also tried as a path and a duration).
//! A panic is a finding: either a parser panicked or an invariant below does not hold.

use thalassa_operator::{
    config::parse_duration,
    render::{KeyMapping, RenderSource, SourceValue, is_valid_secret_key, prefix_key, render_data},
    thalassa::{MAX_PATH_LEN, SecretBytes, SecretValue, validate_browse_path, validate_path},
};

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.' | '+')
}

fn check_path(p: &str) {
    if validate_browse_path(p).is_ok() {
        assert!(p.starts_with('/'), "{p:?}");
        assert!(!p.contains("//"), "{p:?}");
        assert!(p.chars().all(is_path_char), "{p:?}");
        assert!(p.chars().count() <= MAX_PATH_LEN, "{p:?}");
        assert!(
            !p.split('/').any(|s| s == "." || s == ".."),
            "dot segment accepted: {p:?}"
        );
    }
    if validate_path(p).is_ok() {
        assert!(validate_browse_path(p).is_ok(), "{p:?}");
        assert!(!p.ends_with('/'), "{p:?}");
    }
}

/// The CRD grammar `([0-9]+(\.[0-9]+)?(ms|s|m|h))+`, by hand.
fn in_duration_grammar(text: &str) -> bool {
    let mut rest = text.as_bytes();
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        if let Some(after) = rest.strip_prefix(b".") {
            let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return false;
            }
            rest = &after[digits..];
        }
        rest = if let Some(r) = rest.strip_prefix(b"ms") {
            r
        } else if let Some(r) = rest
            .strip_prefix(b"s")
            .or_else(|| rest.strip_prefix(b"m"))
            .or_else(|| rest.strip_prefix(b"h"))
        {
            r
        } else {
            return false;
        };
    }
    true
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        check_path(text);
        if let Ok(duration) = parse_duration(text) {
            assert!(in_duration_grammar(text), "{text:?} parsed as {duration:?}");
            assert!(duration.as_nanos() <= i64::MAX as u128, "{text:?}");
        }
        let (prefix, path) = text.split_once('\n').unwrap_or(("/", text));
        check_path(prefix);
        check_path(path);
        let key = prefix_key(prefix, path);
        if validate_browse_path(prefix).is_ok() && prefix.ends_with('/') {
            if let Some(relative) = path.strip_prefix(prefix) {
                if validate_path(path).is_ok() {
                    assert!(!key.contains('/') && !key.contains('+'), "{key:?}");
                    assert_eq!(key, relative.replace('/', "_").replace('+', "-"));
                }
            }
        }
        let mapping = KeyMapping::UnderPrefix { relative_key: key };
        let kv = SecretValue::KeyValues(
            path.split('/')
                .map(|p| (p.to_string(), SecretBytes::from("v")))
                .collect(),
        );
        let string = SecretValue::String(SecretBytes::from("v"));
        for value in [&string, &kv] {
            let source = RenderSource {
                path,
                version: 1,
                mappings: vec![&mapping],
                value: SourceValue::Revealed(value),
            };
            match render_data(&[source], None) {
                Ok(rendered) => {
                    for key in rendered.data.keys() {
                        assert!(is_valid_secret_key(key), "invalid key written: {key:?}");
                    }
                }
                Err(e) => assert!(
                    matches!(e.reason(), "SourceFormatMismatch" | "TargetKeyConflict"),
                    "{}",
                    e.reason()
                ),
            }
        }
    });
}
