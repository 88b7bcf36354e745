//! The chain run: walks the links in order through one client and region, each link judged by
//! [`super::links`], a link skipped (with why) when an earlier failure makes it uncheckable.
//!
//! In: a client, a region, and optionally a `--key` and a `--path`. Out: one [`CheckResult`]
//! per [`Link`], in [`Link::ALL`]'s order. Makes at most seven API calls, one of them a reveal;
//! a revealed value is dropped at once, unread.

use super::{
    CheckResult, Link,
    links::{
        backend_check, credentials_check, key_active_check, key_exists_failure, key_summary,
        key_symmetric_check, kms_gate_check, reveal_check, secret_readable_check,
        secret_readable_failure, secrets_gate_check, secrets_gate_with_kms_off,
    },
};
use crate::thalassa::{Client, KmsKey};

/// Runs the whole chain against `region`. `key` (identity or slug) and `path` are optional; their
/// checks are skipped without them. Makes at most seven API calls, one of them a reveal.
pub async fn run_checks(
    client: &Client,
    region: &str,
    key: Option<&str>,
    path: Option<&str>,
) -> Vec<CheckResult> {
    let mut walk = Walk {
        client,
        region,
        results: Vec::with_capacity(Link::ALL.len()),
        blocked_kms: None,
        secrets_ok: false,
        backend_ok: false,
        key_found: None,
        key_active: false,
    };
    walk.organisation_links().await;
    walk.key_links(key).await;
    walk.secret_links(path, key).await;
    walk.results
}

/// What the walk learned so far, which decides whether a later link can be checked.
struct Walk<'a> {
    client: &'a Client,
    region: &'a str,
    results: Vec<CheckResult>,
    /// Why KMS-dependent links cannot be checked, from the first broken prerequisite.
    blocked_kms: Option<String>,
    /// The secrets feature gate passed.
    secrets_ok: bool,
    /// The region's KMS backend passed.
    backend_ok: bool,
    /// The `--key`, when it could be read.
    key_found: Option<KmsKey>,
    /// The `--key` is active.
    key_active: bool,
}

impl Walk<'_> {
    /// Credentials, both feature gates and the regional KMS backend: two calls (the KMS summary
    /// and a one-level browse of `/`).
    async fn organisation_links(&mut self) {
        let region = self.region;
        let summary = self.client.kms_summary().await;
        let browse = self.client.browse_secrets(region, "/").await;

        let credentials = credentials_check(&summary, &browse);
        let authenticated = credentials.passed();
        self.results.push(credentials);
        self.blocked_kms = (!authenticated).then(|| "needs valid credentials".to_owned());

        let kms_gate = match &self.blocked_kms {
            Some(why) => CheckResult::skipped(Link::KmsGate, why.clone()),
            None => kms_gate_check(&summary, region),
        };
        if self.blocked_kms.is_none() && !kms_gate.passed() {
            self.blocked_kms = Some(format!(
                "needs the kms feature gate (see {})",
                Link::KmsGate
            ));
        }
        self.results.push(kms_gate);

        let secrets_gate = match &self.blocked_kms {
            Some(_) if !authenticated => {
                CheckResult::skipped(Link::SecretsGate, "needs valid credentials")
            }
            Some(_) => secrets_gate_with_kms_off(&browse),
            None => secrets_gate_check(&browse, region),
        };
        self.secrets_ok = secrets_gate.passed();
        self.results.push(secrets_gate);

        let (backend, region_known) = match (&self.blocked_kms, &summary) {
            (None, Ok(summary)) => backend_check(summary, region),
            (Some(why), _) => (CheckResult::skipped(Link::KmsBackend, why.clone()), false),
            (None, Err(error)) => (CheckResult::error(Link::KmsBackend, error, region), false),
        };
        self.backend_ok = backend.passed();
        self.results.push(backend);
        if self.blocked_kms.is_none() && !region_known {
            self.blocked_kms = Some(format!(
                "region {region} is unknown (see {})",
                Link::KmsBackend
            ));
        }
    }

    /// The `--key` links: one call.
    async fn key_links(&mut self, key: Option<&str>) {
        const KEY_LINKS: [Link; 3] = [Link::KeyExists, Link::KeyActive, Link::KeySymmetric];
        let region = self.region;
        let wanted = match (key, &self.blocked_kms) {
            (None, _) => return self.skip(&KEY_LINKS, "no --key given"),
            (Some(_), Some(why)) => return self.skip(&KEY_LINKS, &why.clone()),
            (Some(wanted), None) => wanted,
        };
        match self.client.get_key(region, wanted).await {
            Ok(found) => {
                self.results
                    .push(CheckResult::pass(Link::KeyExists, key_summary(&found)));
                let active = key_active_check(&found, region);
                self.key_active = active.passed();
                self.results.push(active);
                self.results.push(key_symmetric_check(&found, region));
                self.key_found = Some(found);
            }
            Err(error) => {
                self.results
                    .push(key_exists_failure(&error, wanted, region, self.backend_ok));
                self.skip(
                    &KEY_LINKS[1..],
                    &format!("key {wanted} could not be read (see {})", Link::KeyExists),
                );
            }
        }
    }

    /// The `--path` links: the metadata read, then the reveal (two calls).
    async fn secret_links(&mut self, path: Option<&str>, key: Option<&str>) {
        const SECRET_LINKS: [Link; 2] = [Link::SecretReadable, Link::SecretReveal];
        let region = self.region;
        let Some(path) = path else {
            return self.skip(&SECRET_LINKS, "no --path given");
        };
        let blocked_secrets = self.blocked_kms.clone().or_else(|| {
            (!self.secrets_ok)
                .then(|| format!("needs the secrets feature gate (see {})", Link::SecretsGate))
        });
        if let Some(why) = blocked_secrets {
            return self.skip(&SECRET_LINKS, &why);
        }
        let secret = match self.client.get_secret(region, path, false).await {
            Ok(secret) => secret,
            Err(error) => {
                self.results
                    .push(secret_readable_failure(&error, path, region));
                return self.skip(
                    &[Link::SecretReveal],
                    &format!(
                        "the metadata of {path} could not be read (see {})",
                        Link::SecretReadable
                    ),
                );
            }
        };
        let bound = secret.kms_key.as_ref();
        let wanted = key.map(|name| (name, self.key_found.as_ref()));
        self.results.push(secret_readable_check(
            path,
            secret.current_version,
            bound,
            wanted,
            region,
        ));

        if !self.backend_ok {
            return self.skip(
                &[Link::SecretReveal],
                &format!(
                    "a reveal needs the KMS backend of {region} (see {})",
                    Link::KmsBackend
                ),
            );
        }
        if let (Some(found), Some(bound)) = (&self.key_found, bound)
            && found.identity == bound.identity
            && !self.key_active
        {
            let why = format!(
                "{path} is bound to key {}, which is not active (see {})",
                found.identity,
                Link::KeyActive
            );
            return self.skip(&[Link::SecretReveal], &why);
        }
        self.results
            .push(reveal_check(self.client, region, path, bound).await);
    }

    /// Skips `links`, saying why.
    fn skip(&mut self, links: &[Link], why: &str) {
        for link in links {
            self.results.push(CheckResult::skipped(*link, why));
        }
    }
}
