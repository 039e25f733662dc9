//! A rename or move (ModifyDN) of one export, and how a re-attempt reads a refusal: the entry may
//! already be where the earlier attempt put it.

use super::{Run, StepOutcome};
use crate::directory::Inner;
use ldap3::LdapResult;

use crate::directory::classify::{OpContext, OpKind, TransportError, Verdict, classify, rc};

impl Inner {
    pub(super) async fn modify_dn(
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
            .modify_dn(
                dn,
                new_rdn,
                delete_old_rdn,
                new_superior,
                self.identity_controls(run),
            )
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
        // With the identity assertion, another entry at the old DN answers assertionFailed.
        let already_renamed = matches!(&outcome, Ok(r) if matches!(r.rc, rc::NO_SUCH_OBJECT | rc::ENTRY_ALREADY_EXISTS | rc::ASSERTION_FAILED))
            && run.reattempt;
        if already_renamed {
            let old = match self.read_entry(dn, &[], run).await {
                Ok(e) => e,
                Err(o) => return o,
            };
            match run.plan.known_anchor.clone() {
                // Done if this object is at the new DN, whatever is at the old one now (an entry
                // made there since the earlier attempt renamed this object away is left as it is).
                Some(known) => match self
                    .read_entry(new_dn, &[known.read.attribute.as_str()], run)
                    .await
                {
                    Ok(Some(entry)) => {
                        match entry.anchor(&known.read.attribute, known.read.encoding) {
                            Some(found) if known.matches(&found) => return renamed(run),
                            found if old.is_none() => {
                                return StepOutcome::failed(format!(
                                    "{}; the entry at '{new_dn}' is not this object (its {} is {}, \
                                     this object's is {}); it is left as it is",
                                    rename_refusal(&outcome, dn),
                                    known.read.attribute,
                                    found.as_deref().unwrap_or("absent"),
                                    known.value
                                ));
                            }
                            _ => {}
                        }
                    }
                    Ok(None) => {}
                    Err(o) => return o,
                },
                None if old.is_none() => {
                    if !run.earlier_run && new_entry_exists(self, new_dn, run).await {
                        // This run's own ModifyDN, sent moments ago, whose answer was lost.
                        return renamed(run);
                    }
                    return StepOutcome::failed(format!(
                        "{}; '{dn}' is gone and JIM holds no anchor for this object, so whether the \
                         entry at '{new_dn}' is it cannot be told; it is left as it is",
                        rename_refusal(&outcome, dn)
                    ));
                }
                None => {}
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
            crate::directory::classify::rc_name(r.rc),
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
