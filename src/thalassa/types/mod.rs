//! Wire types of the Secrets Manager (S1–S9) and KMS key APIs, as JSON with camelCase names.
//!
//! Decoding is lenient on purpose: unknown fields are ignored, and optional arrays and maps may be
//! omitted or `null` (the Go server declares many of them `omitempty`).
//!
//! This file holds those decoding helpers; `secrets` and `kms` hold each API's types.

use serde::{Deserialize, Deserializer};

mod kms;
mod secrets;

pub use kms::{
    CreateKmsKeyRequest, KmsKey, KmsKeyStatus, KmsKeyVersion, KmsRegionSummary, KmsSummary,
    Organisation,
};
#[cfg(any(test, feature = "testing"))]
pub(crate) use secrets::UpdateAccessPolicyRequest;
pub use secrets::{
    BrowseSecretsResponse, CreateSecretRequest, ListedKmsKey, ListedSecret, PutSecretValueResponse,
    Region, RevealedSecret, Secret, SecretVersion,
};
pub(crate) use secrets::{GetSecretValueRequest, GetSecretValueResponse, PutSecretValueRequest};

/// Decodes `null` (as well as an omitted field, via `#[serde(default)]`) as the type's default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// What went wrong decoding a JSON body, in our own words: the kind and position of the problem.
/// serde's message is never used, because it can quote the body.
pub(crate) fn json_error_detail(error: &serde_json::Error) -> String {
    if error.to_string().contains("not valid base64") {
        "a secret value is not valid base64".to_owned()
    } else {
        format!(
            "{:?} error in the JSON body at line {} column {}",
            error.classify(),
            error.line(),
            error.column()
        )
    }
}

/// Accepts a JSON string or number, because `kmsKeyVersion` is a string in the Go client but a
/// number would be an easy server-side slip.
pub(crate) fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrNumber {
        String(String),
        Number(serde_json::Number),
    }
    Ok(match Option::<StringOrNumber>::deserialize(d)? {
        Some(StringOrNumber::String(text)) => text,
        Some(StringOrNumber::Number(number)) => number.to_string(),
        None => String::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::thalassa::value::{SecretBytes, SecretValue, SecretValueInput};
    use serde_json::json;

    #[test]
    fn secret_tolerates_omitted_null_and_unknown_fields() {
        let minimal: Secret = serde_json::from_value(json!({"path": "/a"})).unwrap();
        assert!(minimal.versions.is_empty() && minimal.labels.is_empty());
        let full: Secret = serde_json::from_value(json!({
            "path": "/app/db",
            "labels": null,
            "versions": [
                {"version": 1, "status": "destroyed", "createdAt": "2026-01-01T00:00:00Z",
                 "destroyedAt": "2026-01-02T00:00:00Z"},
                {"version": 2, "status": "whatever-new", "createdAt": "2026-01-03T00:00:00.123456789Z"}
            ],
            "currentVersion": 2,
            "kmsKey": {"identity": "kms-1", "status": "active", "keyType": "aes256-gcm96"},
            "region": {"identity": "r1", "slug": "nl-01", "zones": []},
            "accessPolicy": {"conditions": [{"type": "ip"}]},
            "brandNewField": {"x": 1}
        }))
        .unwrap();
        assert_eq!(full.current_version, 2);
        assert!(full.versions[0].is_destroyed());
        assert!(!full.versions[1].is_destroyed());
        assert_eq!(full.versions[1].status.as_deref(), Some("whatever-new"));
        assert!(full.kms_key.unwrap().is_active());
    }

    #[test]
    fn listed_secret_keeps_only_what_the_operator_uses() {
        let listing: Vec<ListedSecret> = serde_json::from_value(json!([
            {
                "path": "/app/db",
                "description": "d",
                "labels": {"team": "a"},
                "annotations": null,
                "createdAt": "2026-01-01T00:00:00Z",
                "currentVersion": 7,
                "objectVersion": 9,
                "kmsKey": {"identity": "kms-1", "status": "disabled", "name": "n",
                           "versions": [{"version": 1}], "organisation": {"identity": "o"},
                           "futureField": [1, 2, 3]},
                "region": {"identity": "r1", "slug": "nl-01", "zones": []},
                "accessPolicy": {"conditions": [{"type": "ip"}]},
                "versions": [{"version": 7, "status": "current"}],
                "brandNewField": {"nested": {"deep": "x"}}
            },
            {"path": "/app/plain"},
            {"path": "/app/null-key", "kmsKey": null, "currentVersion": 1}
        ]))
        .unwrap();
        assert_eq!(
            listing,
            vec![
                ListedSecret {
                    path: "/app/db".into(),
                    current_version: 7,
                    kms_key: Some(ListedKmsKey {
                        identity: "kms-1".into(),
                        status: KmsKeyStatus::Disabled,
                    }),
                },
                ListedSecret {
                    path: "/app/plain".into(),
                    current_version: 0,
                    kms_key: None,
                },
                ListedSecret {
                    path: "/app/null-key".into(),
                    current_version: 1,
                    kms_key: None,
                },
            ]
        );
        // The same body decoded in full gives the same fields.
        let full: Secret = serde_json::from_value(json!({
            "path": "/app/db", "currentVersion": 7, "labels": {"x": "y"},
            "kmsKey": {"identity": "kms-1", "status": "disabled", "keyType": "aes256-gcm96"}
        }))
        .unwrap();
        assert_eq!(ListedSecret::from(full), listing[0]);
        // A path is still required.
        assert!(serde_json::from_value::<ListedSecret>(json!({"currentVersion": 1})).is_err());
    }

    #[test]
    fn browse_accepts_missing_arrays() {
        let browse: BrowseSecretsResponse = serde_json::from_value(json!({"path": "/"})).unwrap();
        assert!(browse.prefixes.is_empty() && browse.secrets.is_empty());
        let browse: BrowseSecretsResponse =
            serde_json::from_value(json!({"path": "/", "prefixes": null, "secrets": []})).unwrap();
        assert!(browse.prefixes.is_empty());
    }

    #[test]
    fn key_status_is_open() {
        let key: KmsKey = serde_json::from_value(json!({
            "identity": "k", "status": "pending_deletion", "versions": null
        }))
        .unwrap();
        assert_eq!(key.status, KmsKeyStatus::PendingDeletion);
        let key: KmsKey =
            serde_json::from_value(json!({"identity": "k", "status": "archived"})).unwrap();
        assert_eq!(key.status, KmsKeyStatus::Other("archived".into()));
        assert_eq!(
            serde_json::to_value(&key.status).unwrap(),
            json!("archived")
        );
    }

    #[test]
    fn summary_availability_by_slug_or_identity() {
        let summary: KmsSummary = serde_json::from_value(json!({
            "featureEnabled": true,
            "regions": [{"identity": "reg-1", "slug": "nl-01", "kmsAvailable": true},
                        {"identity": "reg-2", "slug": "nl-02", "kmsAvailable": false}]
        }))
        .unwrap();
        assert!(summary.kms_available_in("nl-01"));
        assert!(summary.kms_available_in("reg-1"));
        assert!(!summary.kms_available_in("nl-02"));
        let off: KmsSummary = serde_json::from_value(json!({"featureEnabled": false})).unwrap();
        assert!(!off.kms_available_in("nl-01"));
    }

    #[test]
    fn reveal_response_decodes_values() {
        let revealed = serde_json::from_value::<GetSecretValueResponse>(json!({
            "path": "/a", "version": 2, "secretString": "cHc=",
            "kmsKeyIdentity": "kms-1", "kmsKeyVersion": "1"
        }))
        .unwrap()
        .into_revealed()
        .unwrap();
        assert_eq!(revealed.value, SecretValue::String("pw".into()));
        assert_eq!(revealed.kms_key_version, "1");
        let revealed = serde_json::from_value::<GetSecretValueResponse>(json!({
            "path": "/a", "version": 1, "secretKeyValues": {"u": "eA=="}, "kmsKeyVersion": 3
        }))
        .unwrap()
        .into_revealed()
        .unwrap();
        assert_eq!(revealed.kms_key_version, "3");
        let SecretValue::KeyValues(pairs) = revealed.value else {
            panic!("expected key/values");
        };
        assert_eq!(pairs["u"].expose(), b"x");
        let neither = serde_json::from_value::<GetSecretValueResponse>(json!({"version": 1}))
            .unwrap()
            .into_revealed();
        assert!(neither.is_err());
        let bad = serde_json::from_value::<GetSecretValueResponse>(
            json!({"version": 1, "secretString": "c2VjcmV0!!"}),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn create_request_shape() {
        let mut request =
            CreateSecretRequest::new("/app/db", "kms-1", SecretValueInput::String("pw".into()));
        request.labels.insert("team".into(), "a".into());
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"path": "/app/db", "labels": {"team": "a"}, "kmsKeyIdentity": "kms-1",
                   "secretString": "cHc="})
        );
        let put = PutSecretValueRequest {
            path: "/app/db",
            value: &SecretValueInput::KeyValues(BTreeMap::from([(
                "u".to_owned(),
                SecretBytes::from("x"),
            )])),
        };
        assert_eq!(
            serde_json::to_value(&put).unwrap(),
            json!({"path": "/app/db", "secretKeyValues": {"u": "eA=="}})
        );
        let reveal = GetSecretValueRequest {
            path: "/a",
            version: None,
        };
        assert_eq!(
            serde_json::to_value(&reveal).unwrap(),
            json!({"path": "/a"})
        );
        let clear = UpdateAccessPolicyRequest {
            access_policy: None,
        };
        assert_eq!(
            serde_json::to_value(&clear).unwrap(),
            json!({"accessPolicy": null})
        );
        let key = CreateKmsKeyRequest::new("k", "aes256-gcm96");
        assert_eq!(
            serde_json::to_value(&key).unwrap(),
            json!({"name": "k", "keyType": "aes256-gcm96"})
        );
    }
}
