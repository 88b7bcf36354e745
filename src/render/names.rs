//! Kubernetes rules for what the operator writes: valid Secret keys, label values and qualified
//! (label and annotation) names, the size limit of a Secret's data, and the Secret key derived
//! for a path found under a prefix.
//!
//! I/O contract: pure predicates and one pure naming function; each rule is the apiserver's, so
//! a value refused here would be refused by the apiserver too.

/// Derives the Secret key for a path found under a prefix: the path relative to the prefix with
/// `/` replaced by `_` and `+` by `-` (Secret keys allow only `[-._a-zA-Z0-9]`).
pub fn prefix_key(prefix: &str, path: &str) -> String {
    path.strip_prefix(prefix)
        .unwrap_or(path)
        .trim_start_matches('/')
        .replace('/', "_")
        .replace('+', "-")
}

/// The most data a Kubernetes Secret holds: the apiserver refuses a Secret whose values add up
/// to more than 1 MiB.
pub const MAX_SECRET_DATA_BYTES: usize = 1024 * 1024;

/// Kubernetes qualified-name rule for label and annotation keys (the CRD's CEL rule uses the same
/// expression): an optional DNS-subdomain prefix and `/`, then 1-63 characters `[A-Za-z0-9_.-]`
/// beginning and ending alphanumeric.
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let subdomain_label = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // The apiserver also limits the prefix, a DNS subdomain, to 253 bytes.
    prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(subdomain_label))
        && is_label_value(name)
        && !name.is_empty()
}

/// Kubernetes label value rule: empty, or at most 63 characters `[A-Za-z0-9_.-]` beginning and
/// ending alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && value.as_bytes()[0].is_ascii_alphanumeric()
            && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric())
}

/// Kubernetes Secret key rule (`IsConfigMapKey`): 1–253 characters of `[-._a-zA-Z0-9]`, not `.`,
/// and not starting with `..` (the apiserver refuses `..a` and `...` too).
pub fn is_valid_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && !key.starts_with("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_follow_the_kubernetes_rules() {
        for good in ["app", "a.b-c_d", "example.com/tier", "a/b", "x9"] {
            assert!(is_qualified_name(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a b",
            "a/b/c",
            "Example.com/x",
            "/x",
            "x/",
            "a..b/x",
            &"n".repeat(64),
        ] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
        for good in ["", "v1", "a.b_c-d"] {
            assert!(is_label_value(good), "{good}");
        }
        for bad in ["-v", "v-", "a b", &"v".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }

    #[test]
    fn prefix_keys_follow_the_documented_naming() {
        assert_eq!(prefix_key("/app/", "/app/db/password"), "db_password");
        assert_eq!(prefix_key("/", "/x"), "x");
        assert_eq!(prefix_key("/app/", "/app/a+b"), "a-b");
        assert!(is_valid_secret_key("db_password.v1-x"));
        assert!(
            !is_valid_secret_key("a b") && !is_valid_secret_key("..") && !is_valid_secret_key("")
        );
        // The apiserver refuses every key starting with `..`, not only `..` itself.
        assert!(!is_valid_secret_key("..a") && !is_valid_secret_key("..."));
        assert!(is_valid_secret_key(".a") && is_valid_secret_key("a.."));
    }
}
