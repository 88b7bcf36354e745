//! The links of Thalassa's dependency chain, in the order they depend on each other: what the
//! `check` command reports row by row, what a store's conditions report (the first four, see
//! `controller::stores`), and what the store condition metrics label.

use std::fmt;

/// One link of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// `GET /v1/kms/summary` and a one-level browse of `/` do not answer 401.
    Credentials,
    /// The summary says `featureEnabled` (Secrets Manager needs KMS, so this comes before the
    /// secrets gate; it is also the only unambiguous gate signal).
    KmsGate,
    /// The browse of `/` is not refused by the `secrets` feature gate.
    SecretsGate,
    /// The region is in the summary with `kmsAvailable: true`.
    KmsBackend,
    /// The `--key` (identity or slug) can be read.
    KeyExists,
    /// The `--key` is `active`.
    KeyActive,
    /// The `--key` has a type Secrets Manager can bind ([`super::SYMMETRIC_KEY_TYPES`]).
    KeySymmetric,
    /// The `--path` metadata can be read (and, with `--key`, is bound to that key).
    SecretReadable,
    /// `getSecretValue` on the `--path` succeeds.
    SecretReveal,
}

impl Link {
    /// Every link, in the order [`super::run_checks`] reports them.
    pub const ALL: [Link; 9] = [
        Link::Credentials,
        Link::KmsGate,
        Link::SecretsGate,
        Link::KmsBackend,
        Link::KeyExists,
        Link::KeyActive,
        Link::KeySymmetric,
        Link::SecretReadable,
        Link::SecretReveal,
    ];

    /// The name the `check` table prints (and failure messages point at: "see kms backend").
    pub const fn as_str(self) -> &'static str {
        match self {
            Link::Credentials => "credentials",
            Link::KmsGate => "kms feature gate",
            Link::SecretsGate => "secrets feature gate",
            Link::KmsBackend => "kms backend",
            Link::KeyExists => "kms key exists",
            Link::KeyActive => "kms key active",
            Link::KeySymmetric => "kms key symmetric",
            Link::SecretReadable => "secret readable",
            Link::SecretReveal => "secret reveal",
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
