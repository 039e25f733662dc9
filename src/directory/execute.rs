//! Running one export's plan: steps strictly in order, each step's result classified, transient
//! conditions retried with backoff (reconnecting when the connection went away), outcomes that
//! already hold taken as done, and what was done reported even when a later step fails.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ldap3::LdapResult;
use ldap3::controls::{PostRead, RawControl};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::classify::{OpContext, OpKind, TransportError, Verdict, classify, rc};
use super::dialect::POST_READ_CONTROL;
use super::entry::{RawEntry, parse_read_entry_control};
use super::evidence::{self, Expectations, creation_attribute, creator_attribute};
use super::{ExportJob, ExportResult, ExportStatus, Inner, Recovery};
use crate::fence::{Fence, Fenced};
use crate::model::{ConnectedSystemExportErrorType, PendingExportChangeType};
use crate::plan::{
    AnchorEncoding, AnchorRead, Attribute, ContainerSpec, ExportPlan, ModKind, Modification,
    ModifyPurpose, Operation, PlannedStep, dn_key,
};

/// What one attempt at a step came to.
enum StepOutcome {
    Done,
    Retry {
        outcome_unknown: bool,
        /// The directory gave no answer (see [`Verdict::Transient`]).
        no_answer: bool,
        message: String,
    },
    Failed {
        error_type: ConnectedSystemExportErrorType,
        message: String,
    },
    /// The run may no longer write this export (see [`Fence`]).
    Fenced(Fenced),
}

impl StepOutcome {
    fn failed(message: impl Into<String>) -> Self {
        StepOutcome::Failed {
            error_type: ConnectedSystemExportErrorType::General,
            message: message.into(),
        }
    }

    /// The outcome for a verdict that is neither success nor one the step handles itself.
    fn from_verdict(v: Verdict) -> Self {
        match v {
            Verdict::Success => StepOutcome::Done,
            Verdict::Transient {
                outcome_unknown,
                no_answer,
                message,
            } => StepOutcome::Retry {
                outcome_unknown,
                no_answer,
                message,
            },
            Verdict::Fail {
                error_type,
                message,
            } => StepOutcome::Failed {
                error_type,
                message,
            },
            Verdict::NoSuchObject(m) | Verdict::EntryExists(m) | Verdict::ValueConflict(m) => {
                StepOutcome::failed(m)
            }
            Verdict::Fenced(why) => StepOutcome::Fenced(why),
        }
    }
}

/// The running state of one export.
struct Run<'a> {
    plan: &'a ExportPlan,
    /// An earlier attempt (a stale claim, or an operation of this run whose outcome is unknown) may
    /// have applied part of the export.
    reattempt: bool,
    /// That earlier attempt was another run's (the claim said so), not only this run's own operation
    /// whose answer was lost.
    earlier_run: bool,
    /// Fires when the run stops starting exports (see `Directory::run_until`).
    stop: &'a CancellationToken,
    /// An Add of this run met "already exists" with nothing at its DN once already.
    adoption_missed: bool,
    /// What an existing entry is judged with on a re-attempt.
    recovery: &'a Recovery,
    /// The run's right to write this export.
    fence: Option<&'a Fence>,
    /// A step other than a container check has completed: the directory holds part of this export.
    applied: bool,
    result: ExportResult,
}

impl Run<'_> {
    /// True when nothing this export sent can have taken effect: no step completed but container
    /// checks (which any later attempt repeats harmlessly), and no operation's outcome is unknown.
    fn untouched(&self) -> bool {
        !self.reattempt && !self.applied && !self.result.entry_created
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Inner {
    pub(super) async fn execute(&self, job: ExportJob, stop: &CancellationToken) -> ExportResult {
        let span = tracing::debug_span!("export", export_id = %job.export_id);
        async move {
            let plan = match job.plan {
                Ok(plan) => plan,
                Err(f) => return ExportResult::failed(job.export_id, f.error_type, f.message),
            };
            if stop.is_cancelled() {
                return ExportResult::not_started(job.export_id);
            }
            let mut run = Run {
                plan: &plan,
                reattempt: job.reattempt,
                earlier_run: job.reattempt,
                stop,
                adoption_missed: false,
                recovery: &job.recovery,
                fence: job.fence.as_ref(),
                applied: false,
                result: ExportResult::new(job.export_id),
            };
            run.result.warnings.extend(plan.warnings.iter().cloned());
            for step in &plan.steps {
                if let Err(status) = self.run_step_with_retries(step, &mut run).await {
                    run.result.status = status;
                    let written = &run.result.written_change_ids;
                    run.result.substitutions = plan
                        .substitutions
                        .iter()
                        .filter(|s| written.contains(&s.change_id))
                        .cloned()
                        .collect();
                    return run.result;
                }
                run.result
                    .written_change_ids
                    .extend(step.change_ids.iter().copied());
                if !matches!(step.operation, Operation::EnsureContainer(_)) {
                    run.applied = true;
                }
            }
            run.result
                .written_change_ids
                .extend(plan.unsent_change_ids.iter().copied());
            run.result.substitutions = plan.substitutions.clone();
            if plan.change_type == PendingExportChangeType::Create {
                run.result.secondary_external_id = Some(plan.dn.clone());
            }
            run.result
        }
        .instrument(span)
        .await
    }

    async fn run_step_with_retries(
        &self,
        step: &PlannedStep,
        run: &mut Run<'_>,
    ) -> Result<(), ExportStatus> {
        let max = self.tuning.max_operation_retries;
        let mut attempt = 0u32;
        loop {
            match self.run_step(step, run).await {
                StepOutcome::Done => return Ok(()),
                StepOutcome::Failed {
                    error_type,
                    message,
                } => {
                    tracing::debug!(op = step.operation.kind(), %message, "export failed");
                    return Err(ExportStatus::Failed {
                        error_type,
                        message,
                    });
                }
                StepOutcome::Fenced(why) => {
                    tracing::debug!(
                        op = step.operation.kind(),
                        ?why,
                        "not written: the run's lease on the row is gone"
                    );
                    return Err(ExportStatus::Fenced {
                        why,
                        began: !run.untouched(),
                    });
                }
                StepOutcome::Retry {
                    outcome_unknown,
                    no_answer,
                    message,
                } => {
                    if outcome_unknown {
                        run.reattempt = true;
                    }
                    if attempt >= max {
                        run.result.no_answer = no_answer;
                        let mut message =
                            format!("{message} (gave up after {} attempts)", attempt + 1);
                        if run.reattempt {
                            // The directory may have applied part of this export without our knowing:
                            // say so, so the next attempt reads the directory before writing.
                            message.push(' ');
                            message.push_str(super::OUTCOME_UNKNOWN_NOTE);
                        }
                        return Err(ExportStatus::Failed {
                            error_type: ConnectedSystemExportErrorType::General,
                            message,
                        });
                    }
                    if run.stop.is_cancelled() && run.untouched() {
                        return Err(ExportStatus::NotStarted);
                    }
                    attempt += 1;
                    run.result.retries += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = self
                        .tuning
                        .retry_backoff
                        .saturating_mul(1 << (attempt - 1).min(16))
                        .min(MAX_BACKOFF);
                    tracing::warn!(
                        op = step.operation.kind(),
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        %message,
                        "retrying after a transient condition"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Waits until the run may write this export (at once while its lease is certainly held).
    async fn gate(&self, run: &Run<'_>) -> Result<(), StepOutcome> {
        match run.fence {
            Some(fence) => fence.writable(run.stop).await.map_err(StepOutcome::Fenced),
            None => Ok(()),
        }
    }

    async fn run_step(&self, step: &PlannedStep, run: &mut Run<'_>) -> StepOutcome {
        if !matches!(step.operation, Operation::EnsureContainer(_))
            && let Err(fenced) = self.gate(run).await
        {
            return fenced;
        }
        match &step.operation {
            Operation::EnsureContainer(spec) => self.ensure_container(spec, run).await,
            Operation::Add {
                dn,
                attributes,
                placeholder,
            } => self.add(dn, attributes, *placeholder, run).await,
            Operation::Modify {
                dn,
                modifications,
                purpose,
            } => self.modify(dn, modifications, *purpose, run).await,
            Operation::ModifyDn {
                dn,
                new_rdn,
                delete_old_rdn,
                new_superior,
                new_dn,
            } => {
                self.modify_dn(
                    dn,
                    new_rdn,
                    *delete_old_rdn,
                    new_superior.as_deref(),
                    new_dn,
                    run,
                )
                .await
            }
            Operation::Delete { dn } => self.delete(dn, run).await,
            Operation::DisableAccount { dn } => self.disable_account(dn, run).await,
        }
    }

    async fn read(
        &self,
        dn: &str,
        attributes: &[&str],
        run: &mut Run<'_>,
    ) -> Result<(Option<RawEntry>, LdapResult), TransportError> {
        run.result.operations += 1;
        self.pool.read(dn, attributes).await
    }

    /// A base read, classified: `Ok(Some)` present, `Ok(None)` absent, `Err` a step outcome.
    async fn read_entry(
        &self,
        dn: &str,
        attributes: &[&str],
        run: &mut Run<'_>,
    ) -> Result<Option<RawEntry>, StepOutcome> {
        let outcome = self.read(dn, attributes, run).await;
        let ctx = OpContext {
            kind: OpKind::Search,
            dn,
            placeholder: false,
        };
        let verdict = classify(
            &ctx,
            &outcome
                .as_ref()
                .map(|(_, r)| r.clone())
                .map_err(Clone::clone),
        );
        match verdict {
            Verdict::Success => Ok(outcome.ok().and_then(|(e, _)| e)),
            Verdict::NoSuchObject(_) => Ok(None),
            other => Err(StepOutcome::from_verdict(other)),
        }
    }

    async fn ensure_container(&self, spec: &ContainerSpec, run: &mut Run<'_>) -> StepOutcome {
        let cell = {
            let mut map = self
                .containers
                .verified
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.entry(dn_key(&spec.dn)).or_default().clone()
        };
        // Held across the read and the add: exports needing the same container wait here, and find
        // it verified when they get the lock.
        let mut verified = cell.lock().await;
        if *verified {
            return StepOutcome::Done;
        }
        match self.read_entry(&spec.dn, &[], run).await {
            Ok(Some(_)) => {
                *verified = true;
                return StepOutcome::Done;
            }
            Ok(None) => {}
            Err(outcome) => return outcome,
        }
        let mut attributes = vec![Attribute::text("objectClass", &[&spec.object_class])];
        attributes.extend(spec.attributes.iter().cloned());
        if let Err(fenced) = self.gate(run).await {
            return fenced;
        }
        run.result.operations += 1;
        let outcome = self.pool.add(&spec.dn, &attributes, Vec::new()).await;
        let ctx = OpContext {
            kind: OpKind::ContainerAdd,
            dn: &spec.dn,
            placeholder: false,
        };
        match classify(&ctx, &outcome) {
            Verdict::Success => {
                *verified = true;
                run.result.containers_created.push(spec.dn.clone());
                self.containers
                    .created
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(spec.dn.clone());
                StepOutcome::Done
            }
            // Someone else (another engine, an administrator) created it meanwhile.
            Verdict::EntryExists(_) => {
                *verified = true;
                StepOutcome::Done
            }
            other => StepOutcome::from_verdict(other),
        }
    }

    async fn add(
        &self,
        dn: &str,
        attributes: &[Attribute],
        placeholder: bool,
        run: &mut Run<'_>,
    ) -> StepOutcome {
        let anchor = run.plan.anchor.clone();
        let read_anchor = anchor.as_ref().filter(|a| a.encoding != AnchorEncoding::Dn);
        let post_read =
            read_anchor.filter(|_| self.tuning.use_post_read && self.profile.supports_post_read);
        let controls: Vec<RawControl> = post_read
            .map(|a| vec![PostRead::new(vec![a.attribute.as_str()])])
            .unwrap_or_default();
        run.result.operations += 1;
        let outcome = self.pool.add(dn, attributes, controls).await;
        let ctx = OpContext {
            kind: OpKind::Add,
            dn,
            placeholder,
        };
        match classify(&ctx, &outcome) {
            Verdict::Success => {
                run.result.entry_created = true;
                run.result.secondary_external_id = Some(dn.to_string());
                let from_control = match (&outcome, post_read) {
                    (Ok(r), Some(a)) => anchor_from_controls(r, a),
                    _ => None,
                };
                run.result.external_id = match (from_control, &anchor) {
                    (Some(v), _) => Some(v),
                    (None, Some(a)) => self.read_anchor(dn, a, run).await,
                    (None, None) => None,
                };
                StepOutcome::Done
            }
            Verdict::EntryExists(message) => {
                if run.reattempt {
                    self.adopt(dn, attributes, anchor.as_ref(), &message, run)
                        .await
                } else {
                    // A first attempt never takes over an entry it did not create (JIM fails too).
                    StepOutcome::failed(message)
                }
            }
            other => StepOutcome::from_verdict(other),
        }
    }

    /// An entry is where a re-attempted Create goes: adopt it only when the evidence says it is this
    /// export's earlier write ([`evidence`]: created after the first attempt, by this identity, holding
    /// the Add's values, its anchor held by no other CSO). Otherwise fail as a first attempt does,
    /// leaving the entry as it is. An adopted entry is not overwritten; the Add's values it lacks (of
    /// several: an earlier attempt's Add may have carried others) are added. `refusal` is the
    /// directory's answer to the Add.
    async fn adopt(
        &self,
        dn: &str,
        attributes: &[Attribute],
        anchor: Option<&AnchorRead>,
        refusal: &str,
        run: &mut Run<'_>,
    ) -> StepOutcome {
        let dialect = self.profile.dialect;
        let mut names: Vec<&str> = attributes.iter().map(|a| a.name.as_str()).collect();
        names.push(creation_attribute(dialect));
        names.extend(creator_attribute(dialect));
        names.extend(
            anchor
                .filter(|a| a.encoding != AnchorEncoding::Dn)
                .map(|a| a.attribute.as_str()),
        );
        let entry = match self.read_entry(dn, &names, run).await {
            Ok(Some(entry)) => entry,
            Ok(None) if !run.adoption_missed => {
                // It may have vanished between the Add and the read: send the Add again, once.
                run.adoption_missed = true;
                return StepOutcome::Retry {
                    outcome_unknown: true,
                    no_answer: false,
                    message: refusal.to_string(),
                };
            }
            // Twice "already exists" with nothing at the DN: the clash is another entry's unique
            // value (AD refuses a duplicate sAMAccountName or userPrincipalName with 68), which no
            // retry resolves.
            Ok(None) => return StepOutcome::failed(exists_elsewhere(dn, refusal)),
            Err(outcome) => return outcome,
        };
        let more: Vec<&Modification> = run
            .plan
            .steps
            .iter()
            .filter_map(|s| match &s.operation {
                Operation::Modify {
                    modifications,
                    purpose: ModifyPurpose::Overflow,
                    ..
                } => Some(modifications.iter()),
                _ => None,
            })
            .flatten()
            .collect();
        let expected = Expectations {
            dialect,
            add: attributes,
            more,
            since: run.recovery.first_attempt_at,
            clock_skew: chrono::Duration::from_std(self.tuning.clock_skew)
                .unwrap_or(chrono::Duration::seconds(300)),
            identity: self.identity.as_deref(),
        };
        if let Err(why) = evidence::judge(&entry, &expected) {
            return not_adopted(dn, refusal, &why);
        }
        let external_id = match anchor {
            Some(a) if a.encoding == AnchorEncoding::Dn => Some(dn.to_string()),
            Some(a) => entry.anchor(&a.attribute, a.encoding),
            None => None,
        };
        if let (Some(registry), Some(a), Some(value)) = (
            run.recovery.anchors.as_ref(),
            anchor.filter(|a| a.encoding != AnchorEncoding::Dn),
            external_id.as_deref(),
        ) {
            match registry.other_holder(value).await {
                Ok(None) => {}
                Ok(Some(other)) => {
                    return not_adopted(
                        dn,
                        refusal,
                        &format!(
                            "its {} {value} is the anchor of connected system object {other}",
                            a.attribute
                        ),
                    );
                }
                Err(e) => {
                    return StepOutcome::Retry {
                        outcome_unknown: false,
                        no_answer: false,
                        message: format!(
                            "cannot tell whether the entry at '{dn}' belongs to another object: {e}"
                        ),
                    };
                }
            }
        }
        run.result.entry_created = true;
        run.result.adopted = true;
        run.result.secondary_external_id = Some(dn.to_string());
        run.result.external_id = match (external_id, anchor) {
            (Some(v), _) => Some(v),
            (None, Some(a)) => self.read_anchor(dn, a, run).await,
            (None, None) => None,
        };
        tracing::info!(
            dn,
            "adopted the entry this export's earlier attempt created"
        );
        // The earlier attempt's Add may have carried other values of a multi-valued attribute
        // (members in another order, fewer resolved): add what this Add has and the entry lacks.
        let missing = evidence::missing_values(&entry, attributes, dialect);
        if !missing.is_empty() {
            if let Err(fenced) = self.gate(run).await {
                return fenced;
            }
            return self
                .modify(dn, &missing, ModifyPurpose::Overflow, run)
                .await;
        }
        StepOutcome::Done
    }

    /// On a re-attempt of an export whose object JIM knows the anchor of, checks that the entry at
    /// `dn` is that object before it is renamed over, deleted or disabled: `Ok(true)` it is,
    /// `Ok(false)` nothing is there, `Err` a failure naming the stranger (or a read's outcome).
    async fn confirm_identity(
        &self,
        dn: &str,
        action: &str,
        run: &mut Run<'_>,
    ) -> Result<bool, StepOutcome> {
        let Some(known) = run.plan.known_anchor.clone() else {
            return Ok(true);
        };
        match self
            .read_entry(dn, &[known.read.attribute.as_str()], run)
            .await?
        {
            None => Ok(false),
            Some(entry) => match entry.anchor(&known.read.attribute, known.read.encoding) {
                Some(found) if known.matches(&found) => Ok(true),
                found => Err(StepOutcome::failed(format!(
                    "{action} of '{dn}' refused: the entry there is not this object (its {} is {}, \
                     this object's is {}); it is left as it is",
                    known.read.attribute,
                    found.as_deref().unwrap_or("absent"),
                    known.value
                ))),
            },
        }
    }

    /// Reads the anchor after a Create. A failure leaves the external id empty (as in JIM, the
    /// export still succeeds; the confirming import finds the object by DN).
    async fn read_anchor(
        &self,
        dn: &str,
        anchor: &AnchorRead,
        run: &mut Run<'_>,
    ) -> Option<String> {
        if anchor.encoding == AnchorEncoding::Dn {
            return Some(dn.to_string());
        }
        for _ in 0..=self.tuning.max_operation_retries {
            match self.read_entry(dn, &[anchor.attribute.as_str()], run).await {
                Ok(Some(entry)) => {
                    let value = entry.anchor(&anchor.attribute, anchor.encoding);
                    if value.is_none() {
                        run.result.warnings.push(format!(
                            "'{dn}' has no usable {} to use as its anchor",
                            anchor.attribute
                        ));
                    }
                    return value;
                }
                Ok(None) => break,
                Err(StepOutcome::Retry { .. }) => {
                    tokio::time::sleep(self.tuning.retry_backoff).await;
                }
                Err(_) => break,
            }
        }
        run.result
            .warnings
            .push(format!("could not read back the anchor of '{dn}'"));
        None
    }

    async fn modify(
        &self,
        dn: &str,
        modifications: &[Modification],
        purpose: ModifyPurpose,
        run: &mut Run<'_>,
    ) -> StepOutcome {
        run.result.operations += 1;
        let outcome = self.pool.modify(dn, modifications).await;
        let ctx = OpContext {
            kind: OpKind::Modify,
            dn,
            placeholder: modifications.iter().any(|m| m.placeholder),
        };
        match classify(&ctx, &outcome) {
            Verdict::Success => StepOutcome::Done,
            Verdict::ValueConflict(_) => self.converge(dn, modifications, run).await,
            // A disable of an entry that is gone holds (§11.19).
            Verdict::NoSuchObject(_) if purpose == ModifyPurpose::Disable => StepOutcome::Done,
            other => StepOutcome::from_verdict(other),
        }
    }

    /// A Modify met a value already there (20) or already gone (16), so none of it was applied.
    /// Read the entry and drop the added values it already holds byte for byte, then resend; if the
    /// rest still conflicts, send value by value and let the server's own matching say which already
    /// hold. Nothing is taken as done without the server confirming it.
    async fn converge(
        &self,
        dn: &str,
        modifications: &[Modification],
        run: &mut Run<'_>,
    ) -> StepOutcome {
        let names: Vec<&str> = modifications
            .iter()
            .filter(|m| m.kind == ModKind::Add)
            .map(|m| m.attribute.as_str())
            .collect();
        let mut remaining: Vec<Modification> = modifications.to_vec();
        if !names.is_empty() {
            match self.read_entry(dn, &names, run).await {
                Ok(Some(entry)) => {
                    for m in remaining.iter_mut().filter(|m| m.kind == ModKind::Add) {
                        let present = entry.values(&m.attribute);
                        m.values.retain(|v| !present.contains(v));
                    }
                    remaining.retain(|m| m.kind != ModKind::Add || !m.values.is_empty());
                }
                Ok(None) => {
                    return StepOutcome::failed(format!(
                        "Modify of '{dn}' failed: noSuchObject (32): the entry is gone"
                    ));
                }
                Err(outcome) => return outcome,
            }
            if remaining.is_empty() {
                return StepOutcome::Done;
            }
            if let Err(fenced) = self.gate(run).await {
                return fenced;
            }
            run.result.operations += 1;
            let outcome = self.pool.modify(dn, &remaining).await;
            let ctx = OpContext {
                kind: OpKind::Modify,
                dn,
                placeholder: remaining.iter().any(|m| m.placeholder),
            };
            match classify(&ctx, &outcome) {
                Verdict::Success => return StepOutcome::Done,
                Verdict::ValueConflict(_) => {}
                other => return StepOutcome::from_verdict(other),
            }
        }
        for m in &remaining {
            let singles: Vec<Modification> = if m.kind == ModKind::Replace || m.values.len() <= 1 {
                vec![m.clone()]
            } else {
                m.values
                    .iter()
                    .map(|v| Modification {
                        values: vec![v.clone()],
                        ..m.clone()
                    })
                    .collect()
            };
            for single in singles {
                if let Err(fenced) = self.gate(run).await {
                    return fenced;
                }
                run.result.operations += 1;
                let outcome = self.pool.modify(dn, std::slice::from_ref(&single)).await;
                let ctx = OpContext {
                    kind: OpKind::Modify,
                    dn,
                    placeholder: single.placeholder,
                };
                match classify(&ctx, &outcome) {
                    Verdict::Success => {}
                    // One value: the server says it is already there (add) or already gone (delete).
                    Verdict::ValueConflict(_) if single.kind != ModKind::Replace => {}
                    other => return StepOutcome::from_verdict(other),
                }
            }
        }
        StepOutcome::Done
    }

    async fn modify_dn(
        &self,
        dn: &str,
        new_rdn: &str,
        delete_old_rdn: bool,
        new_superior: Option<&str>,
        new_dn: &str,
        run: &mut Run<'_>,
    ) -> StepOutcome {
        run.result.operations += 1;
        let outcome = self
            .pool
            .modify_dn(dn, new_rdn, delete_old_rdn, new_superior)
            .await;
        let ctx = OpContext {
            kind: OpKind::ModifyDn,
            dn,
            placeholder: false,
        };
        let renamed = |run: &mut Run<'_>| {
            run.result.secondary_external_id = Some(new_dn.to_string());
            StepOutcome::Done
        };
        // After an attempt that may have renamed already: gone from the old DN and present at the new
        // one means done.
        let already_renamed = matches!(&outcome, Ok(r) if r.rc == rc::NO_SUCH_OBJECT || r.rc == rc::ENTRY_ALREADY_EXISTS)
            && run.reattempt;
        if already_renamed {
            let old = match self.read_entry(dn, &[], run).await {
                Ok(e) => e,
                Err(o) => return o,
            };
            if old.is_none() {
                // Gone from the old DN: done if the entry at the new one is this object.
                let Some(known) = run.plan.known_anchor.clone() else {
                    if !run.earlier_run && new_entry_exists(self, new_dn, run).await {
                        // This run's own ModifyDN, sent moments ago, whose answer was lost.
                        return renamed(run);
                    }
                    return StepOutcome::failed(format!(
                        "{}; '{dn}' is gone and JIM holds no anchor for this object, so whether the \
                         entry at '{new_dn}' is it cannot be told; it is left as it is",
                        rename_refusal(&outcome, dn)
                    ));
                };
                match self
                    .read_entry(new_dn, &[known.read.attribute.as_str()], run)
                    .await
                {
                    Ok(Some(entry)) => {
                        match entry.anchor(&known.read.attribute, known.read.encoding) {
                            Some(found) if known.matches(&found) => return renamed(run),
                            found => {
                                return StepOutcome::failed(format!(
                                    "{}; the entry at '{new_dn}' is not this object (its {} is {}, \
                                     this object's is {}); it is left as it is",
                                    rename_refusal(&outcome, dn),
                                    known.read.attribute,
                                    found.as_deref().unwrap_or("absent"),
                                    known.value
                                ));
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(o) => return o,
                }
            }
        }
        if matches!(&outcome, Ok(r) if r.rc == rc::ENTRY_ALREADY_EXISTS) {
            // The target DN is taken (by a stranger, or by an entry of ours the evidence above could
            // not show to be this object): the message names that DN, which is what an operator
            // has to look at, not only the entry being renamed.
            return StepOutcome::failed(format!(
                "{}; the target '{new_dn}' is held by another entry, which is left as it is",
                rename_refusal(&outcome, dn)
            ));
        }
        match classify(&ctx, &outcome) {
            Verdict::Success => renamed(run),
            other => StepOutcome::from_verdict(other),
        }
    }

    async fn delete(&self, dn: &str, run: &mut Run<'_>) -> StepOutcome {
        if run.reattempt {
            match self.confirm_identity(dn, "Delete", run).await {
                Ok(true) => {}
                Ok(false) => return StepOutcome::Done,
                Err(o) => return o,
            }
        }
        run.result.operations += 1;
        let outcome = self.pool.delete(dn).await;
        let ctx = OpContext {
            kind: OpKind::Delete,
            dn,
            placeholder: false,
        };
        match classify(&ctx, &outcome) {
            Verdict::Success | Verdict::NoSuchObject(_) => StepOutcome::Done,
            other => StepOutcome::from_verdict(other),
        }
    }

    /// AD's disable: read `userAccountControl`, set ACCOUNTDISABLE (0x2), write it back if it
    /// changed. A missing entry counts as done (§11.19); a missing or unreadable value counts as 0.
    async fn disable_account(&self, dn: &str, run: &mut Run<'_>) -> StepOutcome {
        const ACCOUNT_DISABLE: i64 = 0x2;
        if run.reattempt {
            match self.confirm_identity(dn, "Disable", run).await {
                Ok(true) => {}
                Ok(false) => return StepOutcome::Done,
                Err(o) => return o,
            }
        }
        let entry = match self.read_entry(dn, &["userAccountControl"], run).await {
            Ok(Some(e)) => e,
            Ok(None) => return StepOutcome::Done,
            Err(o) => return o,
        };
        let current: i64 = entry
            .first_text("userAccountControl")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let wanted = current | ACCOUNT_DISABLE;
        if wanted == current && entry.first_text("userAccountControl").is_some() {
            return StepOutcome::Done;
        }
        let m = Modification {
            kind: ModKind::Replace,
            attribute: "userAccountControl".into(),
            values: vec![wanted.to_string().into_bytes()],
            placeholder: false,
        };
        self.modify(dn, &[m], ModifyPurpose::Disable, run).await
    }
}

/// The failure of an Add refused as "already exists" while no entry is at its DN.
fn exists_elsewhere(dn: &str, refusal: &str) -> String {
    format!(
        "the directory refused to create '{dn}' as already existing ({refusal}), but no entry is at \
         that DN: another entry holds one of its unique values (in Active Directory, \
         sAMAccountName or userPrincipalName)"
    )
}

/// The failure of a re-attempted Create whose DN holds an entry the evidence does not show to be this
/// export's: the first attempt's failure, and why the entry was not taken over.
fn not_adopted(dn: &str, refusal: &str, why: &str) -> StepOutcome {
    tracing::warn!(
        dn,
        why,
        "an entry where a re-attempted Create goes was not adopted"
    );
    StepOutcome::failed(format!(
        "{refusal}; the entry at '{dn}' was not taken over as this export's earlier write because {why}; \
         it is left as it is"
    ))
}

/// True when an entry is at `dn` (a failed read counts as absent).
async fn new_entry_exists(inner: &Inner, dn: &str, run: &mut Run<'_>) -> bool {
    matches!(inner.read_entry(dn, &[], run).await, Ok(Some(_)))
}

/// A re-attempted ModifyDN's refusal as the directory gave it.
fn rename_refusal(outcome: &Result<LdapResult, TransportError>, dn: &str) -> String {
    match outcome {
        Ok(r) => format!(
            "ModifyDN of '{dn}' failed: {} ({}){}",
            super::classify::rc_name(r.rc),
            r.rc,
            if r.text.is_empty() {
                String::new()
            } else {
                format!(": {}", r.text)
            }
        ),
        Err(e) => format!("ModifyDN of '{dn}' failed: {e}"),
    }
}

/// The anchor from an Add's post-read response control, if the server sent one.
fn anchor_from_controls(result: &LdapResult, anchor: &AnchorRead) -> Option<String> {
    result
        .ctrls
        .iter()
        .filter(|c| c.1.ctype == POST_READ_CONTROL)
        .find_map(|c| c.1.val.as_deref())
        .and_then(parse_read_entry_control)
        .and_then(|e| e.anchor(&anchor.attribute, anchor.encoding))
}
