//! thalassa-secrets-operator: syncs secrets from Thalassa Cloud Secrets Manager into
//! native Kubernetes Secrets.

pub mod thalassa;
