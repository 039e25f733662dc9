//! Running one export's plan: steps strictly in order, each step's result classified, transient
//! conditions retried with backoff (reconnecting when the connection went away), outcomes that
//! already hold taken as done, and what was done reported even when a later step fails.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ldap3::LdapResult;
use ldap3::controls::{PostRead, RawControl};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod identity;
mod recovery;
mod rename;

use super::classify::{OpContext, OpKind, TransportError, Verdict, classify};
use super::dialect::POST_READ_CONTROL;
use super::entry::{RawEntry, parse_read_entry_control};
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
        let outcome = self
            .pool
            .modify(dn, modifications, self.identity_controls(run))
            .await;
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

    /// The assertion that the entry a write of `run` reaches is its object ([`identity`]).
    fn identity_controls(&self, run: &Run<'_>) -> Vec<RawControl> {
        identity::controls(
            self.profile.supports_assertion,
            run.plan.known_anchor.as_ref(),
        )
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
        let outcome = self.pool.delete(dn, self.identity_controls(run)).await;
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
