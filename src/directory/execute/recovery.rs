//! When the directory already holds (part of) what an export sends: a re-attempted Create adopts the
//! entry its earlier attempt wrote, but only on evidence; a rename, delete or disable of a known object
//! first confirms the entry is that object; a Modify whose values are partly there converges on them.
//! Nothing is taken as done without the directory confirming it.

use super::{Run, StepOutcome};
use crate::directory::Inner;
use crate::directory::classify::{OpContext, OpKind, Verdict, classify};
use crate::directory::evidence::{self, Expectations, creation_attribute, creator_attribute};
use crate::plan::{
    AnchorEncoding, AnchorRead, Attribute, ModKind, Modification, ModifyPurpose, Operation,
};

impl Inner {
    /// An entry is where a re-attempted Create goes: adopt it only when the evidence says it is this
    /// export's earlier write ([`evidence`]: created after the first attempt, by this identity, holding
    /// the Add's values, its anchor held by no other CSO). Otherwise fail as a first attempt does,
    /// leaving the entry as it is. An adopted entry is not overwritten; the Add's values it lacks (of
    /// several: an earlier attempt's Add may have carried others) are added. `refusal` is the
    /// directory's answer to the Add.
    pub(super) async fn adopt(
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
    pub(super) async fn confirm_identity(
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

    /// A Modify met a value already there (20) or already gone (16), so none of it was applied.
    /// Read the entry and drop the added values it already holds byte for byte, then resend; if the
    /// rest still conflicts, send value by value and let the server's own matching say which already
    /// hold. Nothing is taken as done without the server confirming it.
    pub(super) async fn converge(
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
            let outcome = self
                .pool
                .modify(dn, &remaining, self.identity_controls(run))
                .await;
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
                let outcome = self
                    .pool
                    .modify(
                        dn,
                        std::slice::from_ref(&single),
                        self.identity_controls(run),
                    )
                    .await;
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
