//! The pure steps of a push: which data an entry sends (checked against Thalassa's limits), its
//! keyed hash, whether it changed since it was pushed, and what to do with the remote path.
//!
//! No I/O: the driver (`controller::push`) reads the Secret and the path's metadata and carries
//! out the [`Action`] decided here.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use super::crd::{PushEntry, PushUpdatePolicy, PushedEntry};
use crate::{
    crd::{StoreKind, StoreRef},
    render::{HashKey, data_hash},
    thalassa::{SecretBytes, SecretValueInput},
};

/// Thalassa's limit on one value (decoded bytes).
pub const MAX_VALUE_BYTES: usize = 4096;
/// Thalassa's limit on the keys of a key/value secret.
pub const MAX_KEYS: usize = 256;
/// Thalassa's limit on a key name's length.
pub const MAX_KEY_NAME: usize = 128;

/// The data one entry pushes: one key of the Secret, or all of them. Never formatted.
pub struct EntryData<'a> {
    /// `Some(key)`: the value of that key, as a string secret; `None`: every key.
    secret_key: Option<&'a str>,
    data: BTreeMap<&'a String, &'a ByteString>,
}

/// Why an entry's data cannot be pushed. Names keys and sizes, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// Selects an entry's data from the Secret's data and checks it against Thalassa's limits
/// (value 1..=4096 bytes, at most 256 keys, key names 1..=128 of `[A-Za-z0-9_.-]`).
pub fn entry_data<'a>(
    entry: &'a PushEntry,
    secret: &'a BTreeMap<String, ByteString>,
) -> Result<EntryData<'a>, Refused> {
    let data: BTreeMap<&String, &ByteString> = match &entry.secret_key {
        Some(key) => {
            let (k, v) = secret
                .get_key_value(key)
                .ok_or_else(|| Refused(format!("the Secret has no key {key}")))?;
            BTreeMap::from([(k, v)])
        }
        None => secret.iter().collect(),
    };
    if data.is_empty() {
        return Err(Refused("the Secret has no data".into()));
    }
    if data.len() > MAX_KEYS {
        return Err(Refused(format!(
            "the Secret has {} keys; a Thalassa key/value secret holds at most {MAX_KEYS}",
            data.len()
        )));
    }
    for (key, value) in &data {
        check_value(key, value.0.len(), entry.secret_key.is_none())?;
    }
    Ok(EntryData {
        secret_key: entry.secret_key.as_deref(),
        data,
    })
}

fn check_value(key: &str, len: usize, key_value: bool) -> Result<(), Refused> {
    if key_value
        && (key.len() > MAX_KEY_NAME
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
    {
        return Err(Refused(format!(
            "key {key} is not a Thalassa key name (1 to {MAX_KEY_NAME} characters of A-Z a-z 0-9 _ . -)"
        )));
    }
    if len == 0 || len > MAX_VALUE_BYTES {
        return Err(Refused(format!(
            "the value of key {key} has {len} bytes; Thalassa stores 1 to {MAX_VALUE_BYTES}"
        )));
    }
    Ok(())
}

impl EntryData<'_> {
    /// Keyed hash of what is pushed: the shape (one key as a string, or key/values) and the data.
    pub fn hash(&self, key: &HashKey) -> String {
        let shape = match self.secret_key {
            Some(_) => "push:string",
            None => "push:key-values",
        };
        data_hash(key, Some(shape), self.data.iter().map(|(k, v)| (*k, *v)))
    }

    /// The request body's value (base64 on the wire, zeroized on drop).
    pub fn value(&self) -> SecretValueInput {
        match self.secret_key {
            Some(_) => {
                let bytes = self.data.values().next().map(|v| v.0.as_slice());
                SecretValueInput::String(SecretBytes::from(bytes.unwrap_or_default()))
            }
            None => SecretValueInput::KeyValues(
                self.data
                    .iter()
                    .map(|(k, v)| ((*k).clone(), SecretBytes::from(v.0.as_slice())))
                    .collect(),
            ),
        }
    }
}

/// The target an entry is written to besides its path: the connection and the region. A
/// different store or region is a different target, never the old one moved.
pub fn target_of(store_ref: Option<&StoreRef>, region: &str) -> String {
    match store_ref {
        None => format!("default@{region}"),
        Some(StoreRef { kind, name }) => match kind {
            StoreKind::ThalassaSecretStore => format!("ThalassaSecretStore/{name}@{region}"),
            StoreKind::ClusterThalassaSecretStore => {
                format!("ClusterThalassaSecretStore/{name}@{region}")
            }
        },
    }
}

/// What status recorded for this path and target, if anything.
pub fn recorded<'a>(
    pushed: &'a [PushedEntry],
    remote_path: &str,
    target: &str,
) -> Option<&'a PushedEntry> {
    pushed
        .iter()
        .find(|p| p.remote_path == remote_path && p.target == target)
}

/// True when the data hash equals what was pushed to this very target: nothing to do, and no
/// Thalassa call is made.
pub fn unchanged(recorded: Option<&PushedEntry>, hash: &str) -> bool {
    recorded.is_some_and(|r| r.data_hash == hash)
}

/// The remote path as its metadata showed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Thalassa answered "not found".
    Absent,
    /// It exists; `ours` when this resource created it (its UID label, or status for this
    /// target says so).
    Exists {
        /// Created by this resource.
        ours: bool,
    },
}

/// What to do with a changed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// createSecret with the KMS key and the ownership labels (version 1).
    Create,
    /// putSecretValue: a new version.
    NewVersion,
    /// The path exists and is not ours, and `updatePolicy` is `IfNotExists`: nothing is written.
    Refuse,
}

/// The write for a changed entry.
pub fn decide(remote: Remote, policy: PushUpdatePolicy) -> Action {
    match (remote, policy) {
        (Remote::Absent, _) => Action::Create,
        (Remote::Exists { ours: true }, _) | (Remote::Exists { .. }, PushUpdatePolicy::Replace) => {
            Action::NewVersion
        }
        (Remote::Exists { ours: false }, PushUpdatePolicy::IfNotExists) => Action::Refuse,
    }
}

/// The paths to delete with `deletionPolicy: Delete`: those status records as created by this
/// resource (and only those).
pub fn deletable(pushed: &[PushedEntry]) -> Vec<&PushedEntry> {
    pushed.iter().filter(|p| p.created).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HashKey {
        HashKey::new(vec![7; 32])
    }

    fn entry(secret_key: Option<&str>) -> PushEntry {
        PushEntry {
            secret_key: secret_key.map(str::to_owned),
            remote_path: "/app/db".into(),
            kms_key_identity: None,
        }
    }

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect()
    }

    fn pushed(path: &str, target: &str, hash: &str, created: bool) -> PushedEntry {
        PushedEntry {
            remote_path: path.into(),
            target: target.into(),
            version: 1,
            data_hash: hash.into(),
            created,
        }
    }

    #[test]
    fn decides_create_version_or_refuse() {
        use PushUpdatePolicy::*;
        assert_eq!(decide(Remote::Absent, IfNotExists), Action::Create);
        assert_eq!(decide(Remote::Absent, Replace), Action::Create);
        let ours = Remote::Exists { ours: true };
        let theirs = Remote::Exists { ours: false };
        assert_eq!(decide(ours, IfNotExists), Action::NewVersion);
        assert_eq!(decide(theirs, IfNotExists), Action::Refuse);
        assert_eq!(decide(theirs, Replace), Action::NewVersion);
    }

    #[test]
    fn nothing_to_do_only_for_the_same_hash_at_the_same_target() {
        let secret = data(&[("password", b"hunter2")]);
        let e = entry(Some("password"));
        let hash = entry_data(&e, &secret).unwrap().hash(&key());
        let target = target_of(None, "nl-01");
        let status = vec![pushed("/app/db", &target, &hash, true)];
        assert!(unchanged(recorded(&status, "/app/db", &target), &hash));
        // Another store or region is a new target; another path is a new path.
        let store = StoreRef {
            kind: StoreKind::ThalassaSecretStore,
            name: "team".into(),
        };
        let other = target_of(Some(&store), "nl-01");
        assert!(!unchanged(recorded(&status, "/app/db", &other), &hash));
        assert!(!unchanged(recorded(&status, "/app/other", &target), &hash));
        assert!(!unchanged(recorded(&status, "/app/db", &target), "other"));
        // A changed value changes the hash.
        let changed = data(&[("password", b"hunter3")]);
        assert_ne!(entry_data(&e, &changed).unwrap().hash(&key()), hash);
    }

    #[test]
    fn the_hash_depends_on_the_shape_and_ignores_other_keys_for_one_key() {
        let secret = data(&[("a", b"1"), ("b", b"2")]);
        let (one, whole) = (entry(Some("a")), entry(None));
        let h_one = entry_data(&one, &secret).unwrap().hash(&key());
        let h_whole = entry_data(&whole, &secret).unwrap().hash(&key());
        assert_ne!(h_one, h_whole);
        let more = data(&[("a", b"1"), ("b", b"3")]);
        assert_eq!(entry_data(&one, &more).unwrap().hash(&key()), h_one);
        assert_ne!(entry_data(&whole, &more).unwrap().hash(&key()), h_whole);
    }

    #[test]
    fn limits_are_enforced_without_naming_values() {
        let big = vec![b's'; MAX_VALUE_BYTES + 1];
        let cases: Vec<(PushEntry, BTreeMap<String, ByteString>, &str)> = vec![
            (
                entry(Some("missing")),
                data(&[("a", b"x")]),
                "no key missing",
            ),
            (entry(Some("a")), data(&[("a", b"")]), "0 bytes"),
            (entry(Some("a")), data(&[("a", &big)]), "4097 bytes"),
            (entry(None), data(&[]), "no data"),
            (
                entry(None),
                data(&[("bad key", b"x")]),
                "not a Thalassa key",
            ),
        ];
        for (e, d, expected) in cases {
            let Err(Refused(why)) = entry_data(&e, &d) else {
                panic!("{expected}: accepted")
            };
            assert!(why.contains(expected), "{why}");
            assert!(!why.contains("sss"), "{why}");
        }
        let many: BTreeMap<String, ByteString> = (0..=MAX_KEYS)
            .map(|i| (format!("k{i}"), ByteString(b"v".to_vec())))
            .collect();
        assert!(entry_data(&entry(None), &many).is_err());
        // A Kubernetes key that Thalassa refuses is fine as a single string entry.
        let spaced = data(&[("a b", b"x")]);
        assert!(entry_data(&entry(Some("a b")), &spaced).is_ok());
    }

    #[test]
    fn the_value_is_one_string_or_every_key() {
        let secret = data(&[("a", b"1"), ("b", b"2")]);
        match entry_data(&entry(Some("b")), &secret).unwrap().value() {
            SecretValueInput::String(bytes) => assert_eq!(bytes.expose(), b"2"),
            other => panic!("{other:?}"),
        }
        match entry_data(&entry(None), &secret).unwrap().value() {
            SecretValueInput::KeyValues(map) => assert_eq!(map.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_created_paths_are_deletable() {
        let status = vec![pushed("/a", "t", "h", true), pushed("/b", "t", "h", false)];
        let paths: Vec<_> = deletable(&status)
            .iter()
            .map(|p| p.remote_path.clone())
            .collect();
        assert_eq!(paths, ["/a"]);
    }
}
