//! Per-test namespaces, so tests sharing one control plane do not see each other's objects.

use std::path::PathBuf;
use std::thread;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};

use crate::{ControlPlane, LogsOnPanic, kube_config_from, random_suffix};

/// Label put on every namespace created by [`ControlPlane::temp_namespace`], so leftovers of
/// killed runs on a long-lived control plane are easy to find and delete.
pub const TEST_NAMESPACE_LABEL: &str = "testenv.thalassa.cloud/temporary";

/// A namespace that exists for one test. Dropping it deletes the namespace (best effort; the
/// namespace controller then removes its contents), after printing the component log tails if
/// the test is failing.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    kubeconfig: PathBuf,
    deleted: bool,
    // Held only for its Drop. Declared last on purpose: fields drop after `Drop::drop` ran and
    // in declaration order, so the tails are printed after the delete was issued.
    _logs_on_panic: LogsOnPanic,
}

impl TestNamespace {
    pub(crate) async fn create(
        control_plane: &ControlPlane,
        prefix: &str,
    ) -> anyhow::Result<TestNamespace> {
        let name = namespace_name(prefix);
        let client = control_plane.try_client().await?;
        let namespaces: Api<Namespace> = Api::all(client);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_NAMESPACE_LABEL.to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(TestNamespace {
            name,
            kubeconfig: control_plane.kubeconfig_path().to_path_buf(),
            deleted: false,
            _logs_on_panic: control_plane.logs_on_panic(),
        })
    }

    /// The namespace's name, `<prefix>-<6 random [a-z0-9]>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace now and reports errors (dropping does the same silently).
    ///
    /// # Errors
    /// If the delete request fails.
    pub async fn delete(mut self) -> anyhow::Result<()> {
        self.deleted = true;
        delete_namespace(&self.kubeconfig, &self.name).await
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // Drop cannot await, and the test's runtime may be shutting down; a short-lived thread
        // with its own runtime and client issues the delete (a single request).
        let kubeconfig = self.kubeconfig.clone();
        let name = self.name.clone();
        let deleted = thread::spawn(move || -> anyhow::Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(delete_namespace(&kubeconfig, &name))
        })
        .join();
        if let Ok(Err(error)) = deleted {
            eprintln!(
                "testenv: could not delete namespace {}: {error:#}",
                self.name
            );
        }
    }
}

async fn delete_namespace(kubeconfig: &std::path::Path, name: &str) -> anyhow::Result<()> {
    let client = kube::Client::try_from(kube_config_from(kubeconfig).await?)?;
    let namespaces: Api<Namespace> = Api::all(client);
    match namespaces.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error).with_context(|| format!("deleting namespace {name}")),
    }
}

/// `<prefix>-<suffix>`, with the prefix reduced to a valid DNS label part (lowercase
/// alphanumerics and `-`) and cut so the whole name fits the 63-character limit.
fn namespace_name(prefix: &str) -> String {
    let mut cleaned: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .take(63 - 7)
        .collect();
    cleaned = cleaned.trim_matches('-').to_string();
    if cleaned.is_empty() {
        cleaned.push_str("test");
    }
    format!("{cleaned}-{}", random_suffix(6))
}

#[cfg(test)]
mod tests {
    use super::namespace_name;

    #[test]
    fn namespace_names_are_valid_dns_labels() {
        for prefix in ["smoke", "Weird_Prefix!", "", "-x-", &"a".repeat(100)] {
            let name = namespace_name(prefix);
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
            assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
        }
    }
}
