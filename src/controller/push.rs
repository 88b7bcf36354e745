//! The `ThalassaPushSecret` controller: a thin driver over the pure steps of `crate::push::plan`.
//!
//! One reconcile (on a change of the spec, and every `refreshInterval`): GET the Secret from
//! Kubernetes, hash each entry's data with the operator's key, and compare with `status.pushed`.
//! An unchanged entry costs no Thalassa call. A changed entry costs one metadata GET of its path
//! and one write: createSecret (with the KMS key and the ownership labels) when the path is
//! absent, putSecretValue when this resource created it (or `updatePolicy: Replace`), nothing
//! (RemoteNotOwned) otherwise. Writes go through the connection of the resource's store
//! (`connect`), with its rate limit, deadlines, retries and error taxonomy.
//!
//! The Secret is read with a plain GET per check instead of a watch: a watch of every Secret of
//! the cluster would hold the metadata of all of them in memory, and the check interval already
//! bounds how late a change is pushed. Cost: one Kubernetes GET per resource per interval.
//!
//! Remote data is deleted only with `deletionPolicy: Delete`, only for paths status records as
//! created by this resource (and whose Thalassa label still names its UID), and only when the
//! resource is deleted; a change of store, region or path leaves the old target alone.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{ByteString, api::core::v1::Secret, jiff};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt, controller::Action, events::EventType, reflector,
        reflector::ObjectRef, watcher,
    },
};
use serde_json::json;
use tracing::{debug, info};

use super::{
    CHECK_TIME_REFRESH, Context,
    apply::{self, write_status},
    connect::connect_to,
    scoped,
};
use crate::{
    config::parse_duration,
    error::{Error, Reason, Result},
    push::{
        crd::{
            PUSH_FINALIZER, PUSHED_BY_ANNOTATION, PUSHED_BY_UID_LABEL, PUSHED_MANAGED_BY_LABEL,
            PushDeletionPolicy, PushEntry, PushedEntry, ThalassaPushSecret,
            ThalassaPushSecretStatus,
        },
        plan::{self, Remote},
    },
    status::{self, Health, Observed, Outcome, Prerequisites, Reached, reasons},
    thalassa::{self, CreateSecretRequest},
};

/// How long a deletion with `deletionPolicy: Delete` keeps retrying before it gives up (an
/// Event names what was left): a store that is gone or an identity that may not delete must not
/// hold the resource, or its namespace, forever.
const CLEANUP_DEADLINE: Duration = Duration::from_secs(300);
/// First delay after a failure; doubles per attempt (by the resource's age of failure), capped at
/// the refresh interval.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Runs the push controller until `shutdown`: its own watch of the resources (generation and
/// deletion changes only, so its status writes do not wake it) and a periodic requeue.
pub(super) async fn run_push(
    client: Client,
    (namespace, shard): (Option<String>, watcher::Config),
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(
            scoped::<ThalassaPushSecret>(&client, namespace.as_deref()),
            shard.any_semantic(),
        ),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(spec_or_deletion, Default::default());
    let pruner = spawn_metric_pruner(ctx.clone(), reader.clone());
    Controller::for_stream(stream, reader)
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile_push, push_error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "push reconcile loop error");
            }
        })
        .await;
    pruner.abort();
}

/// Wakes a reconcile on a spec change (generation) or a deletion request.
fn spec_or_deletion(push: &ThalassaPushSecret) -> Option<u64> {
    let generation = push.metadata.generation.unwrap_or_default() as u64;
    Some(generation * 2 + u64::from(push.metadata.deletion_timestamp.is_some()))
}

fn spawn_metric_pruner(
    ctx: Arc<Context>,
    pushes: reflector::Store<ThalassaPushSecret>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            ctx.metrics
                .retain_pushes(|ns, name| pushes.get(&ObjectRef::new(name).within(ns)).is_some());
        }
    })
}

fn push_error_policy(_push: Arc<ThalassaPushSecret>, error: &Error, _ctx: Arc<Context>) -> Action {
    debug!(error = %error, "push reconcile failed");
    Action::requeue(RETRY_AFTER_FAILURE)
}

/// One reconcile: clean up a deleted resource, or push what changed and report.
async fn reconcile_push(push: Arc<ThalassaPushSecret>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<ThalassaPushSecret> =
        Api::namespaced(ctx.client.clone(), &push.namespace().unwrap_or_default());
    if push.metadata.deletion_timestamp.is_some() {
        return finalize(&push, &api, &ctx).await;
    }
    let interval = match &push.spec.refresh_interval {
        // Admission checked the duration; an unparsable one falls back to the default.
        Some(text) => parse_duration(text).unwrap_or(ctx.config.default_refresh_interval),
        None => ctx.config.default_refresh_interval,
    };
    let outcome = push_all(&push, &ctx).await;
    let created_any = outcome.pushed.iter().any(|p| p.created);
    set_finalizer(&push, &api, wants_finalizer(&push, created_any)).await?;
    report(&push, &api, &ctx, &outcome).await?;
    Ok(Action::requeue(match outcome.error {
        None => interval,
        Some(_) => interval.min(RETRY_AFTER_FAILURE * 4),
    }))
}

/// What one push did: the entries as now stored, and the first failure.
struct PushOutcome {
    pushed: Vec<PushedEntry>,
    error: Option<Error>,
    /// Whether a Thalassa write succeeded (the whole chain works).
    wrote: bool,
    region: String,
}

/// Everything one entry's write needs.
struct Writer<'a> {
    client: &'a thalassa::Client,
    region: String,
    target: String,
    push: &'a ThalassaPushSecret,
}

/// Reads the Secret and pushes every entry whose data changed. A failure of one entry's data
/// or ownership does not stop the others; any other failure (connection, permission, KMS)
/// stops the push, keeping what status recorded for the entries not reached.
async fn push_all(push: &ThalassaPushSecret, ctx: &Context) -> PushOutcome {
    let region = push
        .spec
        .region
        .clone()
        .unwrap_or_else(|| ctx.config.default_region.clone());
    let target = plan::target_of(push.spec.store_ref.as_ref(), &region);
    let previous: &[PushedEntry] = push.status.as_ref().map_or(&[], |s| &s.pushed);
    let keep = |entry: &PushEntry| plan::recorded(previous, &entry.remote_path, &target).cloned();
    let mut outcome = PushOutcome {
        pushed: Vec::new(),
        error: None,
        wrote: false,
        region: region.clone(),
    };
    let prepared = match read_secret(push, ctx).await {
        Ok(data) => connect_to(
            ctx,
            push.namespace().unwrap_or_default(),
            push.spec.store_ref.as_ref(),
        )
        .map(|connection| (data, connection)),
        Err(e) => Err(e),
    };
    let (data, connection) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            outcome.pushed = push.spec.data.iter().filter_map(keep).collect();
            outcome.error = Some(e);
            return outcome;
        }
    };
    let writer = Writer {
        client: connection.sources.client(),
        region,
        target: target.clone(),
        push,
    };
    for entry in &push.spec.data {
        let recorded = plan::recorded(previous, &entry.remote_path, &target);
        if outcome.error.as_ref().is_some_and(|e| !per_entry(e)) {
            outcome.pushed.extend(recorded.cloned());
            continue;
        }
        match writer
            .push_entry(entry, &data, recorded, &ctx.hash_key)
            .await
        {
            Ok((stored, wrote)) => {
                outcome.wrote |= wrote;
                outcome.pushed.push(stored);
            }
            Err(e) => {
                outcome.pushed.extend(recorded.cloned());
                outcome.error.get_or_insert(e);
            }
        }
    }
    outcome
}

/// Failures of one entry only (its data, its path's owner): the other entries are still pushed.
fn per_entry(error: &Error) -> bool {
    matches!(
        error.reason(),
        Reason::PushSourceInvalid | Reason::RemoteNotOwned
    )
}

/// The Secret's data (a missing Secret is a PushSourceInvalid failure; nothing is written).
async fn read_secret(
    push: &ThalassaPushSecret,
    ctx: &Context,
) -> Result<BTreeMap<String, ByteString>> {
    let name = &push.spec.secret_ref.name;
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &push.namespace().unwrap_or_default());
    match secrets.get_opt(name).await? {
        Some(secret) => Ok(secret.data.unwrap_or_default()),
        None => Err(Error::PushSourceInvalid {
            secret: name.clone(),
            detail: "it does not exist in this namespace".into(),
        }),
    }
}

impl Writer<'_> {
    /// Pushes one entry if its data changed; returns what status records and whether a write
    /// was made.
    async fn push_entry(
        &self,
        entry: &PushEntry,
        secret: &BTreeMap<String, ByteString>,
        recorded: Option<&PushedEntry>,
        hash_key: &crate::render::HashKey,
    ) -> Result<(PushedEntry, bool)> {
        let data = plan::entry_data(entry, secret).map_err(|plan::Refused(detail)| {
            Error::PushSourceInvalid {
                secret: self.push.spec.secret_ref.name.clone(),
                detail: format!("entry {}: {detail}", entry.remote_path),
            }
        })?;
        let data_hash = data.hash(hash_key);
        if let Some(recorded) = recorded.filter(|_| plan::unchanged(recorded, &data_hash)) {
            return Ok((recorded.clone(), false));
        }
        let path = &entry.remote_path;
        let remote = self.remote(path, recorded).await?;
        let (version, created) = match plan::decide(remote, self.push.spec.update_policy) {
            plan::Action::Create => (self.create(entry, data.value()).await?, true),
            plan::Action::NewVersion => {
                let written = self
                    .client
                    .put_secret_value(&self.region, path, &data.value())
                    .await?;
                (written.version, remote == Remote::Exists { ours: true })
            }
            plan::Action::Refuse => return Err(Error::RemoteNotOwned { path: path.clone() }),
        };
        info!(path = %path, version, created, "pushed a new version");
        let stored = PushedEntry {
            remote_path: path.clone(),
            target: self.target.clone(),
            version,
            data_hash,
            created,
        };
        Ok((stored, true))
    }

    /// The path's metadata: absent, or present and whether this resource created it (its UID
    /// label, or status for this target).
    async fn remote(&self, path: &str, recorded: Option<&PushedEntry>) -> Result<Remote> {
        match self.client.get_secret(&self.region, path, false).await {
            Ok(secret) => {
                let uid = self.push.metadata.uid.as_deref();
                let labelled = uid.is_some()
                    && secret.labels.get(PUSHED_BY_UID_LABEL).map(String::as_str) == uid;
                Ok(Remote::Exists {
                    ours: labelled || recorded.is_some_and(|r| r.created),
                })
            }
            Err(e) if e.is_definite_not_found() => Ok(Remote::Absent),
            Err(e) => Err(e.into()),
        }
    }

    /// createSecret with the entry's KMS key and the labels that record ownership.
    async fn create(&self, entry: &PushEntry, value: thalassa::SecretValueInput) -> Result<u64> {
        let key = entry
            .kms_key_identity
            .clone()
            .or_else(|| self.push.spec.kms_key_identity.clone())
            .ok_or_else(|| {
                Error::InvalidSpec(format!("entry {} has no kmsKeyIdentity", entry.remote_path))
            })?;
        let mut request = CreateSecretRequest::new(entry.remote_path.clone(), key, value);
        request.labels = BTreeMap::from([
            (
                PUSHED_BY_UID_LABEL.to_string(),
                self.push.metadata.uid.clone().unwrap_or_default(),
            ),
            (
                PUSHED_MANAGED_BY_LABEL.to_string(),
                crate::crd::MANAGED_BY.to_string(),
            ),
        ]);
        request.annotations = BTreeMap::from([(
            PUSHED_BY_ANNOTATION.to_string(),
            format!(
                "{}/{}",
                self.push.namespace().unwrap_or_default(),
                self.push.name_any()
            ),
        )]);
        request.description = Some(format!(
            "pushed by ThalassaPushSecret {}/{}",
            self.push.namespace().unwrap_or_default(),
            self.push.name_any()
        ));
        let created = self.client.create_secret(&self.region, &request).await?;
        Ok(created.current_version.max(1))
    }
}

/// The finalizer is held only while `deletionPolicy: Delete` has something to delete.
fn wants_finalizer(push: &ThalassaPushSecret, created_any: bool) -> bool {
    push.spec.deletion_policy == PushDeletionPolicy::Delete && created_any
}

/// Adds or removes the finalizer (a merge patch of the list, only when it must change).
async fn set_finalizer(
    push: &ThalassaPushSecret,
    api: &Api<ThalassaPushSecret>,
    wanted: bool,
) -> Result<()> {
    let finalizers = push.finalizers();
    let has = finalizers.iter().any(|f| f == PUSH_FINALIZER);
    if has == wanted {
        return Ok(());
    }
    let mut next: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != PUSH_FINALIZER)
        .cloned()
        .collect();
    if wanted {
        next.push(PUSH_FINALIZER.to_string());
    }
    // The resourceVersion makes the patch fail rather than drop someone else's finalizer.
    let patch = json!({"metadata": {
        "finalizers": next,
        "resourceVersion": push.resource_version(),
    }});
    api.patch(
        &push.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// The status from what the push did, written only when it changed (and `lastCheckTime` at most
/// every 10 minutes); an Event when Ready flips.
async fn report(
    push: &ThalassaPushSecret,
    api: &Api<ThalassaPushSecret>,
    ctx: &Context,
    outcome: &PushOutcome,
) -> Result<()> {
    let old = push.status.as_ref();
    let now = status::now();
    let prerequisites = prerequisites(outcome);
    let health = match &outcome.error {
        None => Health {
            outcome: Outcome::Ready,
            reason: reasons::SYNCED,
            message: "Thalassa holds the Secret's current data at every remote path".into(),
            retry: "retrying",
        },
        Some(e) => Health::failed(e, "retrying"),
    };
    let previous = old.map_or(&[][..], |s| &s.conditions);
    let next = ThalassaPushSecretStatus {
        observed_generation: push.metadata.generation,
        conditions: status::conditions_for(
            previous,
            &prerequisites,
            health,
            push.metadata.generation,
            &now,
        ),
        pushed: outcome.pushed.clone(),
        last_check_time: Some(now),
    };
    if outcome.error.is_none() {
        ctx.metrics
            .push_checked(&push.namespace().unwrap_or_default(), &push.name_any());
    }
    if !needs_write(old, &next) {
        return Ok(());
    }
    write_status(api, &push.name_any(), &next).await?;
    let was_ready = old.is_some_and(|s| ready_status(&s.conditions) == Some("True"));
    let is_ready = ready_status(&next.conditions) == Some("True");
    if was_ready != is_ready || old.is_none() {
        let (type_, reason, note) = match &outcome.error {
            None => (
                EventType::Normal,
                reasons::SYNCED.to_string(),
                "pushed".to_string(),
            ),
            Some(e) => (EventType::Warning, e.reason().to_string(), e.to_string()),
        };
        publish(ctx, push, type_, &reason, note).await;
    }
    Ok(())
}

fn ready_status(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Option<&str> {
    status::types::READY
        .find(conditions)
        .map(|c| c.status.as_str())
}

/// True when anything but `lastCheckTime` changed, or the stored check time is 10 minutes old.
fn needs_write(old: Option<&ThalassaPushSecretStatus>, new: &ThalassaPushSecretStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &ThalassaPushSecretStatus| ThalassaPushSecretStatus {
        last_check_time: None,
        ..s.clone()
    };
    if strip(old) != strip(new) {
        return true;
    }
    match (&old.last_check_time, &new.last_check_time) {
        (Some(o), Some(n)) => n.0.duration_since(o.0).unsigned_abs() >= CHECK_TIME_REFRESH,
        _ => true,
    }
}

/// What a push proves about the chain: a write means gates, credentials, the KMS backend and the
/// key all work; a failure says which link broke (as for a ThalassaSecret).
fn prerequisites(outcome: &PushOutcome) -> Prerequisites {
    let region = &outcome.region;
    let mut learned = Prerequisites::learned(None, Reached::Start, region, outcome.error.as_ref());
    if outcome.wrote {
        let ok = |message: &str| Observed::ok(reasons::ENABLED, message);
        learned.secrets_feature = ok("Secrets Manager writes succeed");
        learned.kms_feature = ok("Secrets Manager writes succeed, so the kms feature is on");
        learned.kms_backend = Observed::ok(
            reasons::AVAILABLE,
            format!("KMS encrypted the last value pushed in region {region}"),
        );
        learned.kms_key.get_or_insert(Observed {
            ok: true,
            reason: reasons::ACTIVE,
            message: "the KMS key encrypted the last value pushed".into(),
        });
        learned.authorized.get_or_insert(Observed {
            ok: true,
            reason: reasons::AUTHORIZED,
            message: "credentials accepted; the last push was allowed to write".into(),
        });
    }
    learned
}

async fn publish(
    ctx: &Context,
    push: &ThalassaPushSecret,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = apply::event("Push", type_, reason, &note);
    apply::publish_event(ctx, &push.object_ref(&()), event).await;
}

/// A deleted resource: with `deletionPolicy: Delete`, delete the paths it created (and whose
/// Thalassa label still names its UID), then release the finalizer. A failure is retried and
/// reported; past [`CLEANUP_DEADLINE`], or at once when only a person could fix it and the
/// namespace is being deleted, it gives up with a Warning Event naming the paths left.
async fn finalize(
    push: &ThalassaPushSecret,
    api: &Api<ThalassaPushSecret>,
    ctx: &Context,
) -> Result<Action> {
    if !push.finalizers().iter().any(|f| f == PUSH_FINALIZER) {
        return Ok(Action::await_change());
    }
    let deleted = match push.spec.deletion_policy {
        PushDeletionPolicy::Delete => delete_created(push, ctx).await,
        PushDeletionPolicy::Retain => Ok(()),
    };
    if let Err(e) = deleted {
        if !gives_up(push, ctx, &e) {
            let note = format!(
                "deleting the Thalassa secrets this resource created failed (retrying): {e}"
            );
            publish(ctx, push, EventType::Warning, e.reason().as_str(), note).await;
            return Ok(Action::requeue(RETRY_AFTER_FAILURE * 2));
        }
        let note = format!(
            "gave up deleting the Thalassa secrets this resource created; they are left in Thalassa: {e}"
        );
        publish(ctx, push, EventType::Warning, "CleanupAbandoned", note).await;
    }
    set_finalizer(push, api, false).await?;
    Ok(Action::await_change())
}

/// Whether a failed cleanup is given up: past [`CLEANUP_DEADLINE`] since the deletion was asked
/// for, or when only a person could fix the failure and the namespace is being deleted.
fn gives_up(push: &ThalassaPushSecret, ctx: &Context, error: &Error) -> bool {
    let pending = push
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| jiff::Timestamp::now().duration_since(t.0).unsigned_abs())
        .unwrap_or_default();
    pending >= CLEANUP_DEADLINE || (error.needs_person() && namespace_terminating(push, ctx))
}

/// Deletes every path status records as created by this resource at its current target, after
/// checking its Thalassa label still names this resource's UID.
async fn delete_created(push: &ThalassaPushSecret, ctx: &Context) -> Result<()> {
    let pushed: &[PushedEntry] = push.status.as_ref().map_or(&[], |s| &s.pushed);
    let region = push
        .spec
        .region
        .clone()
        .unwrap_or_else(|| ctx.config.default_region.clone());
    let target = plan::target_of(push.spec.store_ref.as_ref(), &region);
    let deletable: Vec<_> = plan::deletable(pushed)
        .into_iter()
        .filter(|p| p.target == target)
        .collect();
    if deletable.is_empty() {
        return Ok(());
    }
    let connection = connect_to(
        ctx,
        push.namespace().unwrap_or_default(),
        push.spec.store_ref.as_ref(),
    )?;
    let client = connection.sources.client();
    let uid = push.metadata.uid.clone().unwrap_or_default();
    for entry in deletable {
        let path = &entry.remote_path;
        match client.get_secret(&region, path, false).await {
            Ok(secret) if secret.labels.get(PUSHED_BY_UID_LABEL) == Some(&uid) => {
                match client.delete_secret(&region, path).await {
                    Ok(()) => {
                        info!(path = %path, "deleted a pushed secret (deletionPolicy Delete)")
                    }
                    Err(e) if e.is_definite_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(_) => info!(path = %path, "not deleted: its label no longer names this resource"),
            Err(e) if e.is_definite_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether the namespace is known to be terminating (cluster mode watches namespaces).
fn namespace_terminating(push: &ThalassaPushSecret, ctx: &Context) -> bool {
    let namespace = push.namespace().unwrap_or_default();
    ctx.namespaces.as_ref().is_some_and(|namespaces| {
        namespaces
            .get(&ObjectRef::new(&namespace))
            .is_some_and(|ns| ns.metadata.deletion_timestamp.is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::crd::ThalassaPushSecretSpec;

    fn push(policy: PushDeletionPolicy) -> ThalassaPushSecret {
        ThalassaPushSecret::new(
            "p",
            ThalassaPushSecretSpec {
                deletion_policy: policy,
                ..Default::default()
            },
        )
    }

    #[test]
    fn the_finalizer_is_wanted_only_for_delete_with_something_created() {
        assert!(wants_finalizer(&push(PushDeletionPolicy::Delete), true));
        assert!(!wants_finalizer(&push(PushDeletionPolicy::Delete), false));
        assert!(!wants_finalizer(&push(PushDeletionPolicy::Retain), true));
    }

    #[test]
    fn a_write_proves_the_chain_and_a_denial_breaks_authorized() {
        let wrote = PushOutcome {
            pushed: Vec::new(),
            error: None,
            wrote: true,
            region: "nl-01".into(),
        };
        let learned = prerequisites(&wrote);
        for link in [
            &learned.secrets_feature,
            &learned.kms_feature,
            &learned.kms_backend,
            &learned.kms_key,
            &learned.authorized,
        ] {
            assert!(link.as_ref().is_some_and(|o| o.ok), "{learned:?}");
        }
        let denied = PushOutcome {
            error: Some(Error::from(thalassa::Error::Forbidden {
                path: Some("/a".into()),
                message: "denied".into(),
            })),
            wrote: false,
            ..wrote
        };
        let learned = prerequisites(&denied);
        assert!(learned.authorized.as_ref().is_some_and(|o| !o.ok));
    }

    #[test]
    fn only_a_changed_status_or_an_old_check_time_is_written() {
        let at = |secs| {
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(secs).unwrap(),
            ))
        };
        let old = ThalassaPushSecretStatus {
            last_check_time: at(1_000),
            ..Default::default()
        };
        let soon = ThalassaPushSecretStatus {
            last_check_time: at(1_010),
            ..Default::default()
        };
        let late = ThalassaPushSecretStatus {
            last_check_time: at(1_000 + 601),
            ..Default::default()
        };
        assert!(!needs_write(Some(&old), &soon));
        assert!(needs_write(Some(&old), &late));
        assert!(needs_write(None, &soon));
    }
}
