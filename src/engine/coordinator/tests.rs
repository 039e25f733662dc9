//! Tests of the coordinator's pure parts: what the directory's result for an export becomes.

use super::*;
use crate::directory::Fenced;
use crate::model::{
    AttributeValueChange, ConnectedSystemExportErrorType, PendingExportAttributeChangeType,
    PendingExportChangeType,
};

/// A Create with two changes that may be sent and one still waiting for its reference.
fn claimed() -> ClaimedExport {
    let mut e = ClaimedExport::for_test(PendingExportChangeType::Create);
    for unresolved in [None, None, Some("mvo")] {
        e.export.attribute_changes.push(AttributeValueChange {
            unresolved_reference_value: unresolved.map(str::to_string),
            ..AttributeValueChange::for_test(e.export.id, 1, PendingExportAttributeChangeType::Add)
        });
    }
    e
}

fn result(claimed: &ClaimedExport, status: ExportStatus) -> DirectoryResult {
    let mut r = DirectoryResult::not_started(claimed.id());
    r.status = status;
    r.external_id = Some("guid".into());
    r.secondary_external_id = Some("cn=new,dc=example,dc=org".into());
    r
}

#[test]
fn a_success_accounts_for_every_writable_change_and_keeps_the_anchors() {
    let claimed = claimed();
    let writable = claimed.writable_change_ids();
    assert_eq!(writable.len(), 2);
    let directory = result(&claimed, ExportStatus::Succeeded);
    let outcome = to_outcome(claimed, directory).expect("an outcome");
    let Disposition::Succeeded(s) = outcome.result else {
        panic!("{:?}", outcome.result)
    };
    assert_eq!(s.written_changes, writable);
    assert_eq!(s.external_id.as_deref(), Some("guid"));
    assert_eq!(
        s.secondary_external_id.as_deref(),
        Some("cn=new,dc=example,dc=org")
    );
}

#[test]
fn a_failure_keeps_what_was_done_before_it() {
    let claimed = claimed();
    let first = claimed.writable_change_ids()[0];
    let mut directory = result(
        &claimed,
        ExportStatus::Failed {
            error_type: ConnectedSystemExportErrorType::General,
            message: "refused".into(),
        },
    );
    directory.entry_created = true;
    directory.written_change_ids = vec![first];
    let outcome = to_outcome(claimed, directory).expect("an outcome");
    let Disposition::Failed(f) = outcome.result else {
        panic!("{:?}", outcome.result)
    };
    assert_eq!(f.message, "refused");
    assert!(f.progress.object_exists);
    assert_eq!(f.progress.written_changes, vec![first]);
    assert_eq!(f.progress.external_id.as_deref(), Some("guid"));
}

#[test]
fn an_export_that_never_began_or_was_fenced_has_no_outcome() {
    let claimed = claimed();
    let not_started = result(&claimed, ExportStatus::NotStarted);
    assert!(to_outcome(claimed.clone(), not_started).is_none());
    let fenced = result(
        &claimed,
        ExportStatus::Fenced {
            why: Fenced::Lost,
            began: true,
        },
    );
    assert!(to_outcome(claimed, fenced).is_none());
}
