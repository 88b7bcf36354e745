//! The sync of one resource with a valid spec: connect → observe → sync, as methods of [`Sync`]
//! (the resource, its validated spec, the context and its template turn).
//!
//! In: the resource and its validated spec. Out: a [`SyncReport`] — how far the sync got
//! ([`Reached`], all the status needs to know about the prerequisites it proved), the KMS backend
//! as the summary showed it, and the outcome. Reads Thalassa (through [`resolve`]) and the target
//! Secret; writes only the Secret (through [`apply`]) and its Events. A failure anywhere before
//! the Secret write leaves the Secret exactly as it is. A deterministic failure is remembered
//! with the inputs it depended on ([`Attempt`]), and while they stay the same it is reported
//! again without revealing anything.

use std::{collections::BTreeMap, ops::ControlFlow, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::PartialObjectMeta,
    runtime::{events::EventType, reflector::ObjectRef},
};
use tokio::sync::SemaphorePermit;
use tracing::{debug, info};

use super::{
    Context, apply,
    connect::{self, Connection},
    generate,
    memory::Attempt,
    plan,
    plan::{SourceMetas, SyncOutcome, TargetState},
    resolve,
    validate::{Templates, ValidatedSpec},
};
use crate::{
    crd::{CreationPolicy, DATA_HASH_ANNOTATION, ThalassaSecret},
    error::{Error, Result},
    render,
    render::{RenderedData, SourceRecord, parse_sources},
    sources::SourceCache,
    status::{self, Observed, Reached},
    template,
    thalassa::RevealedSecret,
};

/// What a sync did, whether or not it finished.
#[derive(Debug)]
pub(super) struct SyncReport {
    /// The KMS backend as the summary showed it.
    pub(super) kms_backend: Option<Observed>,
    /// How far it got.
    pub(super) reached: Reached,
    /// What it synced, or why it stopped (shared: a remembered failure is reported again).
    pub(super) outcome: std::result::Result<SyncOutcome, Arc<Error>>,
}

impl SyncReport {
    /// A sync that stopped before learning anything.
    pub(super) fn failed(error: Error) -> SyncReport {
        SyncReport::reached(Reached::Start, Err(Arc::new(error)))
    }

    fn reached(
        reached: Reached,
        outcome: std::result::Result<SyncOutcome, Arc<Error>>,
    ) -> SyncReport {
        SyncReport {
            kms_backend: None,
            reached,
            outcome,
        }
    }

    /// The error it stopped with, if any.
    pub(super) fn error(&self) -> Option<&Error> {
        self.outcome.as_ref().err().map(|e| &**e)
    }
}

/// A reconcile's claim on its namespace's turn to use the template sandbox
/// ([`template::TenantTurn`]): taken when a template must be compiled or rendered, kept until
/// the reconcile ends. Without it the reconcile does not wait: [`Error::TemplateTurnTaken`].
struct RenderTurn {
    tenant: String,
    held: std::sync::Mutex<Option<template::TenantTurn>>,
}

impl RenderTurn {
    fn of(ts: &ThalassaSecret) -> RenderTurn {
        RenderTurn {
            tenant: ts.namespace().unwrap_or_default(),
            held: std::sync::Mutex::new(None),
        }
    }

    /// Takes the namespace's turn (at once, or not at all).
    fn take(&self) -> Result<()> {
        let mut held = self.held.lock().expect("turn lock");
        if held.is_none() {
            *held =
                Some(template::TenantTurn::try_take(&self.tenant).ok_or(Error::TemplateTurnTaken)?);
        }
        Ok(())
    }
}

/// What this reconcile does about the force-sync annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Force {
    /// No new value (none set, or handled already).
    Nothing,
    /// Force a sync for this value now.
    Now(String),
    /// A new value, but a forced sync of this resource was honoured less than
    /// `--force-sync-min-interval` ago: decide again after this long. Every value set meanwhile
    /// is coalesced into the one forced sync then (the annotation holds only the newest).
    Later(Duration),
}

/// What observing the sources found, for the sync that follows.
pub(super) struct Observation<'a> {
    /// The target Secret as the watch last saw it (managed Secrets only).
    written: Option<Arc<PartialObjectMeta<Secret>>>,
    /// A new or edited resource (or a forced sync): nothing is known to be current.
    spec_changed: bool,
    kms_backend: Option<Observed>,
    metas: SourceMetas,
    /// A periodic check holds a slot of the periodic lane until the sync ends.
    _periodic_permit: Option<SemaphorePermit<'a>>,
}

/// One reconcile of one resource with a valid spec.
pub(super) struct Sync<'a> {
    ts: &'a ThalassaSecret,
    ctx: &'a Context,
    key: ObjectRef<ThalassaSecret>,
    /// The validated spec, completed by [`Sync::connect`] (region, connection, templates) and
    /// [`Sync::decide_force`].
    pub(super) spec: ValidatedSpec,
    turn: RenderTurn,
    /// A force-sync asked for too soon after the last one: decide again after this long.
    pub(super) force_wait: Option<Duration>,
}

impl<'a> Sync<'a> {
    pub(super) fn new(ts: &'a ThalassaSecret, ctx: &'a Context, spec: ValidatedSpec) -> Self {
        Sync {
            ts,
            ctx,
            key: ObjectRef::from_obj(ts),
            spec,
            turn: RenderTurn::of(ts),
            force_wait: None,
        }
    }

    /// connect → observe → sync.
    pub(super) async fn run(&mut self) -> SyncReport {
        let connection = match self.connect().await {
            Ok(connection) => connection,
            Err(e) => return SyncReport::failed(e),
        };
        self.decide_force();
        let sources = &connection.sources;
        match generate::rotate(self.ts, self.ctx, &self.spec, sources).await {
            Ok(rotated) => self.spec.rotated = rotated,
            Err(e) => return SyncReport::failed(e),
        }
        match self.observe(sources).await {
            ControlFlow::Break(report) => report,
            ControlFlow::Continue(observation) => self.sync(sources, observation).await,
        }
    }

    /// The resource's connection and its templates, read and compiled; completes the spec with
    /// them.
    async fn connect(&mut self) -> Result<Arc<Connection>> {
        let connection = connect::connect(self.ts, self.ctx)?;
        let ctx = self.ctx;
        let templates =
            resolve::templates(self.ts, &ctx.template_config_maps, &ctx.hash_key).await?;
        if let Some(templates) = &templates {
            self.check_templates(templates).await?;
        }
        if self.ts.spec.region.is_none() {
            self.spec.region.clone_from(&connection.default_region);
        }
        self.spec.connection.clone_from(&connection.identity);
        self.spec.templates = templates;
        Ok(connection)
    }

    /// Compiles the resource's templates in the sandbox, unless the same templates (by keyed
    /// hash) were compiled before: a periodic check compiles nothing.
    async fn check_templates(&self, templates: &Templates) -> Result<()> {
        let memory = &self.ctx.memory;
        if let Some(result) = memory.template_check(&self.key, &templates.hash) {
            return result.map_err(Error::Template);
        }
        self.turn.take()?;
        debug!("compiling the templates in the sandbox");
        let result = match template::check_in_sandbox(&templates.set).await {
            Ok(()) => Ok(()),
            Err(template::RenderFailure::Template(e)) => Err(e),
            Err(template::RenderFailure::Sandbox(problem)) => return Err(Error::Internal(problem)),
        };
        memory.remember_template_check(&self.key, templates.hash.clone(), result.clone());
        result.map_err(Error::Template)
    }

    /// Acts on the force-sync value: forces this sync, or notes how long it must wait.
    fn decide_force(&mut self) {
        match self.force_to_handle() {
            Force::Now(value) => self.spec.force = Some(value),
            Force::Later(wait) => self.force_wait = Some(wait),
            Force::Nothing => {}
        }
    }

    /// The force-sync value this reconcile acts on: one not recorded as handled in status, nor
    /// by this process (a reconcile right after a forced one may still see the old status), and
    /// at most one per `--force-sync-min-interval` per resource.
    fn force_to_handle(&self) -> Force {
        let Some(value) = plan::force_sync_requested(self.ts) else {
            return Force::Nothing;
        };
        let memory = &self.ctx.memory;
        if memory.is_force_handled(&self.key, value) {
            return Force::Nothing;
        }
        let interval = self.ctx.config.bounds.force_sync_min_interval;
        match memory.claim_forced_sync(&self.key, std::time::Instant::now(), interval) {
            Some(wait) => Force::Later(wait),
            None => Force::Now(value.to_string()),
        }
    }

    /// Reads the target Secret from the cache, skips what the refresh policy leaves alone, then
    /// checks the KMS summary, lists the sources and checks their keys.
    async fn observe(&self, sources: &SourceCache) -> ControlFlow<SyncReport, Observation<'a>> {
        let (ts, spec, ctx) = (self.ts, &self.spec, self.ctx);
        // What the Secret (as last seen by the watch) says it reflects. A Secret written for
        // another resource (UID), another generation, or none at all makes this a new or edited
        // resource.
        let written = ctx
            .secrets
            .get(&ObjectRef::new(&spec.target_name).within(&ts.namespace().unwrap_or_default()));
        // A rotation just stored new versions: they are synced now, as for a force-sync.
        let forced = spec.force.is_some() || spec.rotated.is_some();
        // An edited template counts as a spec change (see `written_for_resource`).
        let spec_changed = forced
            || written
                .as_ref()
                .is_none_or(|m| !plan::written_for_resource(&m.metadata, ts, spec));
        if !forced
            && plan::policy_skips_sync(
                ts,
                written.as_ref().map(|m| &m.metadata),
                spec_changed,
                self.verified_rv().as_deref(),
            )
        {
            debug!(policy = ?ts.spec.refresh_policy, "nothing to sync under the refresh policy");
            let versions = ts.status.as_ref().map(|s| s.synced_versions.clone());
            let outcome = unchanged(ts, versions.unwrap_or_default(), written.as_deref());
            return ControlFlow::Break(SyncReport::reached(Reached::Start, Ok(outcome)));
        }
        // Periodic checks of already-synced resources queue in their own lane; new and edited
        // ones go straight through.
        let periodic_permit = if spec_changed {
            None
        } else {
            Some(
                ctx.periodic_lane
                    .acquire()
                    .await
                    .expect("semaphore never closed"),
            )
        };
        // A force-sync checks versions now, not from a listing up to half an interval old.
        let max_age = if forced {
            Duration::ZERO
        } else {
            spec.refresh_interval / 2
        };
        let kms_backend = match resolve::kms_summary(sources, max_age).await {
            Ok(Some(summary)) => plan::judge_kms_summary(&summary, &spec.region),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        let kms_backend = match kms_backend {
            Ok(backend) => backend,
            Err(e) => return ControlFlow::Break(SyncReport::failed(e)),
        };
        let stop = |reached, error| {
            ControlFlow::Break(SyncReport {
                kms_backend: kms_backend.clone(),
                ..SyncReport::reached(reached, Err(Arc::new(error)))
            })
        };
        let metas = match generate::resolve_generating(ts, ctx, spec, sources, max_age).await {
            Ok(metas) => metas,
            Err(e) => return stop(Reached::Start, e),
        };
        if let Err(e) = plan::check_keys(ts, &metas) {
            return stop(Reached::Listed, e);
        }
        ControlFlow::Continue(Observation {
            written,
            spec_changed,
            kms_backend,
            metas,
            _periodic_permit: periodic_permit,
        })
    }

    /// Skips what is current or repeats a known failure, else syncs the target; a deterministic
    /// failure is remembered with its inputs.
    async fn sync(&self, sources: &SourceCache, observation: Observation<'a>) -> SyncReport {
        let Observation {
            written,
            spec_changed,
            kms_backend,
            metas,
            _periodic_permit,
        } = observation;
        let (ts, spec, memory) = (self.ts, &self.spec, &self.ctx.memory);
        let written = written.as_deref();
        let desired = plan::desired_versions(&metas);
        let attempt = Attempt {
            generation: ts.metadata.generation,
            desired: desired.clone(),
            target_rv: written.and_then(|m| m.metadata.resource_version.clone()),
            templates: spec.templates.as_ref().map(|t| t.hash.clone()),
            force: spec.force.clone(),
        };
        let report = |reached, outcome| SyncReport {
            kms_backend: kms_backend.clone(),
            ..SyncReport::reached(reached, outcome)
        };
        if let Some(error) = memory.rejection_for(&self.key, &attempt) {
            debug!("same inputs as the last failed attempt; not read again");
            return report(Reached::KeysChecked, Err(error));
        }
        if !spec_changed && self.is_current(written, &attempt) {
            debug!("sources and Secret unchanged; nothing to read");
            return report(Reached::KeysChecked, Ok(unchanged(ts, desired, written)));
        }
        // A resource that owns its Secret, with no managed Secret of that name in the (complete)
        // cache, creates it without reading first; Adopt and Merge expect a Secret that is not
        // ours (so not cached), and a name found taken before is read first from then on (a
        // create that fails after revealing would otherwise reveal again at every retry).
        let read_first = written.is_some()
            || ts.spec.target.creation_policy != CreationPolicy::Owner
            || memory.is_name_taken(&self.key);
        let (revealed, result) = self.sync_target(sources, metas, read_first).await;
        let reached = if revealed {
            Reached::Revealed
        } else {
            Reached::KeysChecked
        };
        let outcome = match result {
            Err(e) if e.is_deterministic() => Err(memory.remember_rejection(&self.key, attempt, e)),
            other => other.map_err(Arc::new),
        };
        report(reached, outcome)
    }

    /// True when the Secret as last written or verified by this process records exactly the
    /// desired versions (the watch shows no change since).
    fn is_current(&self, written: Option<&PartialObjectMeta<Secret>>, attempt: &Attempt) -> bool {
        let written_versions: BTreeMap<String, u64> = written
            .map(|m| {
                parse_sources(&m.metadata)
                    .into_iter()
                    .map(|(p, r)| (p, r.version))
                    .collect()
            })
            .unwrap_or_default();
        let verified_rv = self.verified_rv();
        attempt.desired == written_versions
            && attempt.target_rv.is_some()
            && attempt.target_rv == verified_rv
    }

    /// The resourceVersion of the target Secret as this process last wrote or verified it.
    fn verified_rv(&self) -> Option<String> {
        let namespace = self.ts.namespace().unwrap_or_default();
        self.ctx
            .memory
            .verified_rv(&namespace, &self.spec.target_name)
    }

    /// Reads the target Secret (unless `read_first` is false: the cache of managed Secrets has
    /// none of that name, so a first sync creates it with one request), reveals what changed,
    /// renders and writes. A create that finds the name taken (a Secret the cache does not
    /// hold: not ours, or not seen yet), or a write that loses a race (409), reads the Secret
    /// and plans once more. Says whether anything was revealed.
    async fn sync_target(
        &self,
        sources: &SourceCache,
        mut metas: SourceMetas,
        mut read_first: bool,
    ) -> (bool, Result<SyncOutcome>) {
        let secrets: Api<Secret> = Api::namespaced(
            self.ctx.client.clone(),
            &self.ts.namespace().unwrap_or_default(),
        );
        let mut revealed_any = false;
        let mut lost_race = false;
        loop {
            let prepared = match self
                .prepare(sources, &secrets, &mut metas, read_first)
                .await
            {
                Ok(prepared) => prepared,
                Err(e) => return (revealed_any, Err(e)),
            };
            revealed_any |= !prepared.revealed.is_empty();
            match self.write(&secrets, &metas, prepared).await {
                Err(Error::Kube(kube::Error::Api(status))) if status.code == 409 && !read_first => {
                    debug!("a Secret of that name exists though none was cached; reading it");
                    self.ctx.memory.note_name_taken(&self.key);
                    read_first = true;
                }
                Err(Error::Kube(kube::Error::Api(status))) if status.code == 409 && !lost_race => {
                    debug!("the Secret changed while it was being written; planning again");
                    lost_race = true;
                }
                result => return (revealed_any, result),
            }
        }
    }

    /// Reads the Secret, classifies it, looks up vanished sources and reveals what changed
    /// (needs the clients).
    async fn prepare(
        &self,
        sources: &SourceCache,
        secrets: &Api<Secret>,
        metas: &mut SourceMetas,
        read_first: bool,
    ) -> Result<Prepared> {
        let (ts, spec, ctx) = (self.ts, &self.spec, self.ctx);
        let existing = if read_first {
            secrets.get_opt(&spec.target_name).await?
        } else {
            None
        };
        let target =
            plan::classify_target(ts, &spec.target_name, existing.as_ref(), &ctx.hash_key)?;
        let recorded = plan::recorded_sources(existing.as_ref(), target);
        resolve::recover_missing_sources(ts, spec, sources, &recorded, metas).await?;
        plan::check_keys(ts, metas)?;
        let desired = plan::desired_versions(metas);
        let reuse = plan::reuse_allowed(ts, spec, existing.as_ref(), target);
        // Templates need every input at once: the Secret is kept whole or every source is read.
        let reuse_whole = spec.templates.is_some() && plan::reuse_whole(&desired, &recorded, reuse);
        if spec.templates.is_some() && !reuse_whole {
            // A render follows: the namespace's turn is taken before anything is revealed for it.
            self.turn.take()?;
        }
        let to_reveal = match (&spec.templates, reuse_whole) {
            (None, _) => plan::plan_reveals(&desired, &recorded, reuse),
            (Some(_), true) => Vec::new(),
            (Some(_), false) => plan::plan_reveals(&desired, &recorded, false),
        };
        // The values revealed are checked against the Secret's limit as they arrive (template
        // inputs too), so no resource holds more than its Secret could take.
        let budget = resolve::RevealBudget {
            kept: plan::reused_bytes(existing.as_ref(), &desired, &recorded, &to_reveal),
            limit: render::MAX_SECRET_DATA_BYTES,
        };
        let prefix_mappings = plan::prefix_mappings(spec, metas);
        let measure = |path: &str, secret: &RevealedSecret| {
            let mappings: Vec<&render::KeyMapping> = match spec.paths.get(path) {
                Some(source) => source.mappings.iter().collect(),
                None => prefix_mappings.get(path).into_iter().collect(),
            };
            render::mapped_len(&mappings, &secret.value)
        };
        let revealed =
            resolve::reveal(ts, spec, sources, metas, &to_reveal, budget, measure).await?;
        Ok(Prepared {
            existing,
            target,
            recorded,
            desired,
            revealed,
            reuse_whole,
        })
    }

    /// Renders the Secret and writes it when it differs, then records its resourceVersion as
    /// verified and announces the write.
    async fn write(
        &self,
        secrets: &Api<Secret>,
        metas: &SourceMetas,
        prepared: Prepared,
    ) -> Result<SyncOutcome> {
        let (ts, spec, ctx) = (self.ts, &self.spec, self.ctx);
        let Prepared {
            existing,
            target,
            recorded,
            desired,
            revealed,
            reuse_whole,
        } = prepared;
        let existing = existing.as_ref();
        let rendered = match (&spec.templates, existing.filter(|_| reuse_whole)) {
            (Some(_), Some(existing)) => render::reuse_templated(existing)
                .ok_or_else(|| Error::Internal("templated keys vanished from the Secret".into()))?,
            (templates, _) => {
                let inputs = plan::RenderInputs {
                    desired: &desired,
                    revealed: &revealed,
                    existing,
                    recorded: &recorded,
                };
                let raw = plan::render_sources(ts, spec, metas, inputs)?;
                match templates {
                    Some(templates) => self.render_templates(templates, raw).await?,
                    None => raw,
                }
            }
        };
        let rendered = plan::desired_secret(ts, spec, &ctx.hash_key, rendered);
        let data_hash = rendered.hash.clone();
        let write = plan::plan_write(ts, existing, target, &rendered, &recorded)?;
        let written = apply::write_secret(secrets, existing, &write, rendered.secret).await?;
        if written.is_some() {
            self.announce_write(existing.is_some(), target, &desired)
                .await;
        }
        let current = written.as_ref().or(existing);
        if let Some(rv) = current.and_then(|s| s.metadata.resource_version.clone()) {
            let namespace = ts.namespace().unwrap_or_default();
            ctx.memory.note_verified(&namespace, &spec.target_name, rv);
        }
        Ok(SyncOutcome {
            kms_key: revealed
                .values()
                .last()
                .map(|s| (s.kms_key_identity.clone(), s.kms_key_version.clone())),
            secret_uid: current.and_then(|s| s.metadata.uid.clone()),
            synced_versions: desired,
            wrote: written.is_some(),
            data_hash: Some(data_hash),
        })
    }

    /// Runs the templates over the source keys in the sandbox and applies their output.
    async fn render_templates(
        &self,
        templates: &Templates,
        raw: RenderedData,
    ) -> Result<RenderedData> {
        let mut inputs: BTreeMap<String, Vec<u8>> = raw
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        let output = template::render_in_sandbox(&templates.set, &inputs).await;
        inputs.values_mut().for_each(zeroize::Zeroize::zeroize);
        let output = output.map_err(|failure| match failure {
            template::RenderFailure::Template(e) => Error::Template(e),
            // Not the template's fault: retried with backoff, never remembered as deterministic.
            template::RenderFailure::Sandbox(problem) => Error::Internal(problem),
        })?;
        render::apply_templates(
            raw,
            output,
            &templates.set,
            &templates.hash,
            plan::managed_type(self.ts),
            &self.ctx.hash_key,
        )
    }

    /// Logs and publishes the Event for a write.
    async fn announce_write(
        &self,
        existed: bool,
        target: TargetState,
        desired: &BTreeMap<String, u64>,
    ) {
        let ts = self.ts;
        let was_synced = ts.status.as_ref().is_some_and(|s| {
            s.observed_generation == ts.metadata.generation
                && s.synced_versions == *desired
                && status::is_ready(Some(s))
        });
        let had_secret = ts.status.as_ref().is_some_and(|s| s.secret_uid.is_some());
        let event = plan::write_event(
            existed,
            target,
            (was_synced, had_secret),
            &self.spec.target_name,
            ts.spec.target.creation_policy,
        );
        info!(secret = %self.spec.target_name, reason = event.as_ref().map_or("SecretCreated", |e| e.0), "wrote Secret");
        if let Some((reason, note)) = event {
            apply::publish(self.ctx, ts, EventType::Normal, reason, note).await;
        }
    }
}

/// The Secret as read, what it is to this resource, and the values revealed for it.
struct Prepared {
    existing: Option<Secret>,
    target: TargetState,
    recorded: BTreeMap<String, SourceRecord>,
    desired: BTreeMap<String, u64>,
    revealed: BTreeMap<String, Arc<RevealedSecret>>,
    /// With templates: the Secret is kept as it is (nothing changed, nothing revealed).
    reuse_whole: bool,
}

/// The outcome of a sync that wrote nothing: the Secret (as last seen) holds `versions`.
fn unchanged(
    ts: &ThalassaSecret,
    versions: BTreeMap<String, u64>,
    written: Option<&PartialObjectMeta<Secret>>,
) -> SyncOutcome {
    SyncOutcome {
        synced_versions: versions,
        kms_key: None,
        // From the Secret as seen, not only from status: a reconcile right after the first
        // write may still see the resource without its new status, and must not write a status
        // that drops the ownership record.
        secret_uid: written
            .and_then(|m| m.metadata.uid.clone())
            .or_else(|| ts.status.as_ref().and_then(|s| s.secret_uid.clone())),
        wrote: false,
        data_hash: written
            .and_then(|m| m.metadata.annotations.as_ref())
            .and_then(|a| a.get(DATA_HASH_ANNOTATION))
            .cloned(),
    }
}
