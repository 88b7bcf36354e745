//! Client for the Thalassa Cloud Secrets Manager, KMS and token APIs.
