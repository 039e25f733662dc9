//! The claim stage's types: a page of claimed pending exports with everything the later stages need,
//! and the decoding of the claim statement's combined result set.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::marker::{Marker, is_marker};
use super::system::SystemSchema;
use crate::error::RowError;
use crate::fence::Fence;
use crate::model::{
    AttributeValueChange, ConnectedSystemObject, ConnectedSystemObjectJoinType,
    ConnectedSystemObjectStatus, CsoAttributeValue, PendingExport,
    PendingExportAttributeChangeStatus, PendingExportAttributeChangeType, PendingExportChangeType,
    PendingExportStatus, UnresolvedReferenceReason, ValueSlots,
};

/// Which exports a claim selects: JIM's two passes, split by `HasUnresolvedReferences`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// Exports without unresolved references (JIM's "immediate" exports), sent first.
    Plain,
    /// Reference-bearing exports (JIM's "deferred" pass), sent after every plain one.
    References,
}

/// A keyset position in `("CreatedAt", "Id")` order: the last row a claim returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// `CreatedAt` of that row, exactly as read from the database.
    pub created_at: DateTime<Utc>,
    /// `Id` of that row.
    pub id: Uuid,
}

/// One claimed pending export, marked `Executing` by this run, with its attribute value changes and the
/// context of its connected system object.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedExport {
    /// The row as claimed: `status` is `Executing` and `last_attempted_at` the claim's time; the changes
    /// are all of the export's rows of `PendingExportAttributeValueChanges`. [`ExportQueue::resolve_references`]
    /// rewrites resolved reference changes in place.
    ///
    /// [`ExportQueue::resolve_references`]: super::ExportQueue::resolve_references
    pub export: PendingExport,
    /// The status the row had before this claim.
    pub previous_status: PendingExportStatus,
    /// True when an earlier attempt may already have written to the directory: the row carried the
    /// engine's mark (`super::marker`: an attempt was claimed and neither succeeded nor was returned
    /// unsent, whatever way the row came back to the queue), or it was left `Executing` by a run
    /// without marks. A Create that meets an existing entry then judges whether that entry is its own
    /// earlier write before adopting it, instead of failing as a first attempt does.
    pub re_attempt: bool,
    /// The claim time of the first attempt that may have written to the directory (this claim's, for
    /// a first attempt): an entry a re-attempt adopts must have been created no earlier.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// The target CSO with the values of its anchor attributes and of every attribute the changes touch;
    /// `None` when the export has no CSO (a Delete whose CSO is gone).
    pub cso: Option<ConnectedSystemObject>,
    /// References resolved for this export during this run; persisted with its outcome.
    pub resolutions: Vec<ReferenceResolution>,
    /// References that are still unresolved after the last resolution, with the reason.
    pub unresolved: Vec<UnresolvedReference>,
    /// For each writable reference change resolved before this claim (by an earlier run, whose
    /// export then failed or wrote in part), the DN its object has now, where it differs from the
    /// change's value as text: the object was renamed or moved since, or the two spell one DN
    /// differently, which the engine tells apart (see `engine::renames`).
    pub moved_targets: Vec<MovedTarget>,
    /// The objects this export names (by a reference Add or Update resolved before this claim or by
    /// this run's resolution) for which JIM has staged a DN change that no export has made yet, one
    /// entry per object. A write naming such an object by the DN it has now would go on naming that
    /// DN after the rename, where the directory keeps stored DNs (see `engine::renames`).
    pub pending_renames: Vec<PendingRename>,
}

/// A DN change staged for an object a reference names, not yet made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRename {
    /// The referenced object's CSO.
    pub cso_id: Uuid,
    /// The pending export that renames or moves it.
    pub export_id: Uuid,
    /// The attribute of the staged change (the CSO's DN attribute).
    pub attribute_id: i32,
    /// The DN the object has now, as the reference names it.
    pub from: String,
    /// The DN staged for it.
    pub to: String,
    /// The objects the renaming export's own reference changes name: CSO ids where resolved, else
    /// MVO ids. Naming the export that names this object back, it is not waited for (see
    /// `engine::admission`).
    pub names: Vec<Uuid>,
}

impl PendingRename {
    /// True when the renaming export names the object of `claimed` (its CSO or its MVO).
    pub fn names_back(&self, claimed: &ClaimedExport) -> bool {
        let ids = [
            claimed.export.connected_system_object_id,
            claimed.cso.as_ref().and_then(|c| c.metaverse_object_id),
            claimed.export.source_metaverse_object_id,
        ];
        self.names
            .iter()
            .any(|n| ids.iter().flatten().any(|id| id == n))
    }
}

/// A row of `pending_rename!`, as the claim (kind 3) and the resolution (kind 2) read it: a DN
/// change staged for `cso_id` that no export has made yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StagedRename {
    pub cso_id: Uuid,
    pub export_id: Uuid,
    pub attribute_id: i32,
    pub to: String,
    pub names: Vec<Uuid>,
}

impl StagedRename {
    /// The pending rename of an object that a reference names by `from`.
    pub(crate) fn named_by(self, from: String) -> PendingRename {
        PendingRename {
            cso_id: self.cso_id,
            export_id: self.export_id,
            attribute_id: self.attribute_id,
            from,
            to: self.to,
            names: self.names,
        }
    }
}

/// The ids in `pending_rename!`'s comma-separated `rename_names`; what does not parse is no id.
pub(crate) fn parse_names(text: Option<&str>) -> Vec<Uuid> {
    text.unwrap_or_default()
        .split(',')
        .filter_map(super::resolve::parse_mvo_id)
        .collect()
}

/// The DN a reference resolved before the claim names now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedTarget {
    /// The attribute value change.
    pub change_id: Uuid,
    /// The referenced object's DN as the database holds it at the claim.
    pub dn: String,
}

impl ClaimedExport {
    /// The export's id.
    pub fn id(&self) -> Uuid {
        self.export.id
    }

    /// The ids of the changes that may be sent now (JIM's `ForConnector` filter): resolved and not
    /// already awaiting confirmation. Report these as written when the export succeeds.
    pub fn writable_change_ids(&self) -> Vec<Uuid> {
        self.export.writable_changes().map(|c| c.id).collect()
    }

    /// The CSO's current DN (the value of its secondary anchor attribute), if it has one.
    pub fn current_dn(&self) -> Option<&str> {
        self.cso.as_ref()?.current_dn()
    }

    /// The CSO's primary anchor value (e.g. `objectGUID`, `entryUUID`), rendered as JIM renders anchors.
    pub fn primary_anchor(&self) -> Option<String> {
        let cso = self.cso.as_ref()?;
        cso.values_of(cso.external_id_attribute_id)
            .find_map(|v| v.value.reference_string().filter(|s| !s.is_empty()))
    }
}

/// A reference change resolved to the referenced object's anchor in the target system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceResolution {
    /// The attribute value change.
    pub change_id: Uuid,
    /// The anchor written to `StringValue` (the DN, or the primary anchor as fallback).
    pub value: String,
    /// The referenced CSO, stamped as `ResolvedReferenceCsoId`.
    pub cso_id: Uuid,
}

/// A reference change that cannot be written yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnresolvedReference {
    /// The attribute value change.
    pub change_id: Uuid,
    /// Its attribute.
    pub attribute_id: i32,
    /// The referenced MVO id, as stored in `UnresolvedReferenceValue`.
    pub metaverse_object_id: String,
    /// `AwaitingAnchor` (the referenced object has a CSO in the target without an anchor value yet) or
    /// `NotInTargetSystem` (it has no CSO there, or the stored id is not a GUID).
    pub reason: UnresolvedReferenceReason,
}

/// A claimed row this engine cannot read (an unknown enum number, an attribute the system does not
/// define). It is `Executing` like the others: record a failure for it with
/// [`ExportQueue::fail_bad_rows`] or return it with [`ExportQueue::release`].
///
/// [`ExportQueue::fail_bad_rows`]: super::ExportQueue::fail_bad_rows
/// [`ExportQueue::release`]: super::ExportQueue::release
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// The pending export.
    pub pending_export_id: Uuid,
    /// What could not be read, naming the table, row and column.
    pub error: RowError,
}

/// One claim's result: the exports in `("CreatedAt", "Id")` order and the rows that could not be read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClaimedPage {
    /// The readable claimed exports, in keyset order.
    pub exports: Vec<ClaimedExport>,
    /// Claimed rows that could not be read.
    pub bad_rows: Vec<BadRow>,
    /// The last claimed row's position; `None` when nothing was claimed. Pass it to the next claim.
    pub cursor: Option<Cursor>,
    /// Rows claimed (exports plus bad rows).
    pub claimed: usize,
    /// The limit the claim was made with.
    pub limit: usize,
    /// Flushes of this run committed before the page's reads began (the claim's, and the reference
    /// resolution's after it): the page saw everything they wrote, such as a renamed object's new DN
    /// (see [`PersistReport::flush`](crate::store::PersistReport::flush)).
    pub flushes_before: u64,
}

impl ClaimedPage {
    /// True when the claim found fewer rows than it asked for: the pass has nothing more after the
    /// cursor for now (rows locked by another engine are skipped, not waited for).
    pub fn is_last(&self) -> bool {
        self.claimed < self.limit
    }
}

/// What the store keeps per claimed row to renew, persist or release it.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// The mark the claim wrote into `LastErrorStackTrace` (`super::marker`): the lease token.
    pub token: String,
    /// The status before the claim (raw: a bad row may hold an unknown number).
    pub previous_status: i32,
    /// `LastAttemptedAt` before the claim.
    pub previous_attempted_at: Option<DateTime<Utc>>,
    /// `LastErrorStackTrace` before the claim.
    pub previous_trace: Option<String>,
    /// The export was handed to the directory: what it sent may have taken effect.
    pub dispatched: bool,
    /// The row's write window.
    pub fence: Fence,
}

impl Held {
    /// True when an attempt before this claim may have reached the directory: the row carried the
    /// engine's mark, or it was left `Executing` (by a run that leaves no mark: JIM's own, or an older
    /// engine).
    pub fn reached_before(&self) -> bool {
        is_marker(self.previous_trace.as_deref()) || self.previous_status == 2
    }

    /// `LastErrorStackTrace` for a row going back to the queue without an outcome: the mark when this
    /// or an earlier attempt may have reached the directory, else what was there before the claim.
    pub fn trace_on_release(&self) -> Option<String> {
        if self.dispatched || self.reached_before() {
            Some(self.token.clone())
        } else {
            self.previous_trace.clone()
        }
    }

    /// `LastErrorStackTrace` after an outcome: on success the pre-claim value unless it was a mark
    /// (JIM's column back as JIM left it); on a failure the mark when this or an earlier attempt may
    /// have reached the directory, else NULL (JIM's value on its calls path); on a deferral (nothing
    /// sent) the pre-claim value.
    pub fn trace_after(&self, kind: i32, sent: bool) -> Option<String> {
        use super::persist::{KIND_DEFERRED, KIND_SUCCEEDED};
        let had_mark = is_marker(self.previous_trace.as_deref());
        match kind {
            KIND_SUCCEEDED if had_mark => None,
            KIND_SUCCEEDED => self.previous_trace.clone(),
            KIND_DEFERRED => self.trace_on_release_unsent(),
            _ if sent || self.reached_before() => Some(self.token.clone()),
            _ => None,
        }
    }

    /// As [`Held::trace_on_release`] for an export that sent nothing in this attempt.
    fn trace_on_release_unsent(&self) -> Option<String> {
        if self.reached_before() {
            Some(self.token.clone())
        } else {
            self.previous_trace.clone()
        }
    }
}

/// Column positions of the claim statement's result set (`sql::CLAIM_*`). Generic columns are shared by
/// the three row kinds; the comment says what each holds for kind 0 (export) / 1 (change) / 2 (CSO value).
pub(crate) mod col {
    pub const KIND: usize = 0;
    pub const PE_ID: usize = 1;
    pub const ID: usize = 2;
    /// ConnectedSystemId / AttributeId / AttributeId.
    pub const I1: usize = 3;
    /// ChangeType / ChangeType.
    pub const I2: usize = 4;
    /// Status / Status.
    pub const I3: usize = 5;
    /// ErrorCount / ExportAttemptCount.
    pub const I4: usize = 6;
    /// MaxRetries.
    pub const I5: usize = 7;
    /// ProvisioningSyncRuleId.
    pub const I6: usize = 8;
    /// previous Status.
    pub const I7: usize = 9;
    /// CSO TypeId.
    pub const I8: usize = 10;
    /// CSO ExternalIdAttributeId.
    pub const I9: usize = 11;
    /// CSO SecondaryExternalIdAttributeId.
    pub const I10: usize = 12;
    /// CSO Status.
    pub const I11: usize = 13;
    /// CSO JoinType.
    pub const I12: usize = 14;
    /// CSO ConnectedSystemId.
    pub const I13: usize = 15;
    /// ConnectedSystemObjectId / ResolvedReferenceCsoId / ReferenceValueId.
    pub const U1: usize = 16;
    /// SourceMetaverseObjectId.
    pub const U2: usize = 17;
    /// QueuedByRunProfileExecutionItemId.
    pub const U3: usize = 18;
    /// CSO MetaverseObjectId.
    pub const U4: usize = 19;
    /// LastAttemptedAt / LastExportedAt.
    pub const D1: usize = 20;
    /// NextRetryAt.
    pub const D2: usize = 21;
    /// CreatedAt.
    pub const D3: usize = 22;
    /// previous LastAttemptedAt.
    pub const D4: usize = 23;
    /// LastErrorMessage / UnresolvedReferenceValue / UnresolvedReferenceValue.
    pub const T1: usize = 24;
    /// LastErrorStackTrace (the claim's mark, the lease token) / LastImportedValue.
    pub const T2: usize = 25;
    /// HasUnresolvedReferences.
    pub const B1: usize = 26;
    /// CSO found.
    pub const B2: usize = 27;
    /// First typed value slot (StringValue); the others follow in `ValueSlots` order of the SQL.
    pub const SLOTS: usize = 28;
    /// previous LastErrorStackTrace (after the eight slots) / the referenced object's DN now.
    pub const T3: usize = 36;
}

const PE_TABLE: &str = "PendingExports";
const AVC_TABLE: &str = "PendingExportAttributeValueChanges";
const CSO_TABLE: &str = "ConnectedSystemObjects";
const CSOV_TABLE: &str = "ConnectedSystemObjectAttributeValues";

/// Reads one column, naming the table, row and column when it cannot be decoded.
fn get<'r, T>(
    row: &'r PgRow,
    idx: usize,
    table: &'static str,
    id: &Uuid,
    column: &'static str,
) -> Result<T, RowError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(idx).map_err(|e| RowError {
        table,
        row_id: id.to_string(),
        column,
        problem: e.to_string(),
    })
}

/// A kind-3 row: a DN change still to be made for an object a resolved reference names.
fn decode_rename(row: &PgRow) -> Result<StagedRename, RowError> {
    let export: Uuid = row.try_get(col::ID).map_err(|e| RowError {
        table: PE_TABLE,
        row_id: "(the renaming export)".into(),
        column: "Id",
        problem: e.to_string(),
    })?;
    Ok(StagedRename {
        cso_id: get(row, col::U1, PE_TABLE, &export, "ConnectedSystemObjectId")?,
        export_id: export,
        attribute_id: get(row, col::I1, AVC_TABLE, &export, "AttributeId")?,
        to: get(row, col::SLOTS, AVC_TABLE, &export, "StringValue")?,
        names: parse_names(
            get::<Option<String>>(row, col::T1, AVC_TABLE, &export, "UnresolvedReferenceValue")?
                .as_deref(),
        ),
    })
}

/// The pending renames of an export's kind-3 rows, one per object, each with the DN the export's
/// reference names it by now (the DN the claim read beside it, else the change's value).
fn pending_renames(
    export: &PendingExport,
    moved: &[MovedTarget],
    rows: Vec<StagedRename>,
) -> Vec<PendingRename> {
    let mut out: Vec<PendingRename> = Vec::with_capacity(rows.len());
    for staged in rows {
        if out.iter().any(|r| r.cso_id == staged.cso_id) {
            continue;
        }
        let from = export
            .attribute_changes
            .iter()
            .filter(|c| c.resolved_reference_cso_id == Some(staged.cso_id))
            .find_map(|c| {
                moved
                    .iter()
                    .find(|m| m.change_id == c.id)
                    .map(|m| m.dn.clone())
                    .or_else(|| c.value.string.clone())
            });
        if let Some(from) = from {
            out.push(staged.named_by(from));
        }
    }
    out
}

fn slots(row: &PgRow, table: &'static str, id: &Uuid) -> Result<ValueSlots, RowError> {
    let s = col::SLOTS;
    Ok(ValueSlots {
        string: get(row, s, table, id, "StringValue")?,
        date_time: get(row, s + 1, table, id, "DateTimeValue")?,
        int: get(row, s + 2, table, id, "IntValue")?,
        long: get(row, s + 3, table, id, "LongValue")?,
        decimal: get::<Option<Decimal>>(row, s + 4, table, id, "DecimalValue")?,
        bytes: get(row, s + 5, table, id, "ByteValue")?,
        guid: get(row, s + 6, table, id, "GuidValue")?,
        boolean: get(row, s + 7, table, id, "BoolValue")?,
    })
}

/// A decoded export row: the export, its previous status and its CSO.
type ExportHead = (
    PendingExport,
    PendingExportStatus,
    Option<ConnectedSystemObject>,
);

/// One export being assembled from the combined result set.
#[derive(Default)]
struct Assembly {
    head: Option<Result<ExportHead, RowError>>,
    changes: Vec<AttributeValueChange>,
    values: Vec<CsoAttributeValue>,
    moved_targets: Vec<MovedTarget>,
    /// Kind-3 rows.
    renames: Vec<StagedRename>,
    error: Option<RowError>,
}

/// The key columns of an export row, needed to hold the row whatever else fails to decode. Its
/// `held.fence` is a placeholder until the queue gives it the claim's window.
pub(crate) struct RowKey {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub held: Held,
}

/// Decodes the claim statement's rows into a page. Rows that cannot be read become bad rows; only a
/// failure to read the key columns (id, lease token, `CreatedAt`) is an error, since the row could then
/// not even be released.
pub(crate) fn decode_page(
    rows: &[PgRow],
    schema: &SystemSchema,
    limit: usize,
) -> Result<(ClaimedPage, Vec<RowKey>), sqlx::Error> {
    let mut keys = Vec::new();
    let mut parts: HashMap<Uuid, Assembly> = HashMap::new();
    for row in rows {
        let kind: i32 = row.try_get(col::KIND)?;
        let pe_id: Uuid = row.try_get(col::PE_ID)?;
        let part = parts.entry(pe_id).or_default();
        match kind {
            0 => {
                keys.push(RowKey {
                    id: pe_id,
                    created_at: row.try_get(col::D3)?,
                    held: Held {
                        // A peek reads rows without marking them: no token then.
                        token: row
                            .try_get::<Option<String>, _>(col::T2)?
                            .unwrap_or_default(),
                        previous_status: row.try_get(col::I7)?,
                        previous_attempted_at: row.try_get(col::D4)?,
                        previous_trace: row.try_get(col::T3)?,
                        dispatched: false,
                        fence: Fence::open(),
                    },
                });
                part.head = Some(decode_export(row, &pe_id));
            }
            1 => match decode_change(row, &pe_id, schema) {
                Ok(c) => {
                    // The referenced object's DN now, for a reference resolved before this claim
                    // whose value differs from it.
                    if let Ok(Some(dn)) = row.try_get::<Option<String>, _>(col::T3) {
                        part.moved_targets.push(MovedTarget {
                            change_id: c.id,
                            dn,
                        });
                    }
                    part.changes.push(c);
                }
                Err(e) => {
                    part.error.get_or_insert(e);
                }
            },
            3 => match decode_rename(row) {
                Ok(rename) => part.renames.push(rename),
                Err(e) => {
                    part.error.get_or_insert(e);
                }
            },
            _ => {
                let id: Uuid = row.try_get(col::ID)?;
                match decode_value(row, &id) {
                    Ok(v) => part.values.push(v),
                    Err(e) => {
                        part.error.get_or_insert(e);
                    }
                }
            }
        }
    }
    keys.sort_by_key(|k| (k.created_at, k.id));
    let mut page = ClaimedPage {
        cursor: keys.last().map(|k| Cursor {
            created_at: k.created_at,
            id: k.id,
        }),
        claimed: keys.len(),
        limit,
        ..ClaimedPage::default()
    };
    for key in &keys {
        let Some(part) = parts.remove(&key.id) else {
            continue;
        };
        let head = part.head.unwrap_or_else(|| {
            Err(RowError {
                table: PE_TABLE,
                row_id: key.id.to_string(),
                column: "Id",
                problem: "claimed row missing from the result".into(),
            })
        });
        match (head, part.error) {
            (Ok((mut export, previous_status, mut cso)), None) => {
                export.attribute_changes = part.changes;
                if let Some(cso) = cso.as_mut() {
                    cso.values = part.values;
                }
                let earlier = key.held.previous_trace.as_deref().and_then(Marker::parse);
                let left_executing = previous_status == PendingExportStatus::Executing;
                let first_attempt_at = match earlier {
                    Some(m) => Some(m.since),
                    // Stranded by a run that left no mark: it claimed the row at LastAttemptedAt.
                    None if left_executing => key.held.previous_attempted_at,
                    None => export
                        .last_error_stack_trace
                        .as_deref()
                        .and_then(Marker::parse)
                        .map(|m| m.since)
                        .or(export.last_attempted_at),
                };
                let pending_renames = pending_renames(&export, &part.moved_targets, part.renames);
                page.exports.push(ClaimedExport {
                    export,
                    re_attempt: earlier.is_some() || left_executing,
                    first_attempt_at,
                    previous_status,
                    cso,
                    resolutions: Vec::new(),
                    unresolved: Vec::new(),
                    moved_targets: part.moved_targets,
                    pending_renames,
                });
            }
            (Err(error), _) | (Ok(_), Some(error)) => page.bad_rows.push(BadRow {
                pending_export_id: key.id,
                error,
            }),
        }
    }
    Ok((page, keys))
}

fn decode_export(row: &PgRow, id: &Uuid) -> Result<ExportHead, RowError> {
    let t = PE_TABLE;
    let change_type: i32 = get(row, col::I2, t, id, "ChangeType")?;
    let status: i32 = get(row, col::I3, t, id, "Status")?;
    let previous: i32 = get(row, col::I7, t, id, "Status")?;
    let export = PendingExport {
        id: *id,
        connected_system_id: get(row, col::I1, t, id, "ConnectedSystemId")?,
        connected_system_object_id: get(row, col::U1, t, id, "ConnectedSystemObjectId")?,
        change_type: PendingExportChangeType::from_i32(change_type)
            .map_err(|e| RowError::unknown_enum(t, id, "ChangeType", e))?,
        status: PendingExportStatus::from_i32(status)
            .map_err(|e| RowError::unknown_enum(t, id, "Status", e))?,
        error_count: get(row, col::I4, t, id, "ErrorCount")?,
        max_retries: get(row, col::I5, t, id, "MaxRetries")?,
        last_attempted_at: get(row, col::D1, t, id, "LastAttemptedAt")?,
        next_retry_at: get(row, col::D2, t, id, "NextRetryAt")?,
        last_error_message: get(row, col::T1, t, id, "LastErrorMessage")?,
        last_error_stack_trace: get(row, col::T2, t, id, "LastErrorStackTrace")?,
        source_metaverse_object_id: get(row, col::U2, t, id, "SourceMetaverseObjectId")?,
        has_unresolved_references: get(row, col::B1, t, id, "HasUnresolvedReferences")?,
        created_at: get(row, col::D3, t, id, "CreatedAt")?,
        provisioning_sync_rule_id: get(row, col::I6, t, id, "ProvisioningSyncRuleId")?,
        queued_by_run_profile_execution_item_id: get(
            row,
            col::U3,
            t,
            id,
            "QueuedByRunProfileExecutionItemId",
        )?,
        attribute_changes: Vec::new(),
    };
    let previous_status = PendingExportStatus::from_i32(previous)
        .map_err(|e| RowError::unknown_enum(t, id, "Status", e))?;
    let found: bool = get(row, col::B2, t, id, "ConnectedSystemObjectId")?;
    let cso = match (found, export.connected_system_object_id) {
        (true, Some(cso_id)) => Some(decode_cso(row, &cso_id)?),
        _ => None,
    };
    Ok((export, previous_status, cso))
}

fn decode_cso(row: &PgRow, id: &Uuid) -> Result<ConnectedSystemObject, RowError> {
    let t = CSO_TABLE;
    let status: i32 = get(row, col::I11, t, id, "Status")?;
    let join_type: i32 = get(row, col::I12, t, id, "JoinType")?;
    Ok(ConnectedSystemObject {
        id: *id,
        connected_system_id: get(row, col::I13, t, id, "ConnectedSystemId")?,
        type_id: get(row, col::I8, t, id, "TypeId")?,
        external_id_attribute_id: get(row, col::I9, t, id, "ExternalIdAttributeId")?,
        secondary_external_id_attribute_id: get(
            row,
            col::I10,
            t,
            id,
            "SecondaryExternalIdAttributeId",
        )?,
        status: ConnectedSystemObjectStatus::from_i32(status)
            .map_err(|e| RowError::unknown_enum(t, id, "Status", e))?,
        metaverse_object_id: get(row, col::U4, t, id, "MetaverseObjectId")?,
        join_type: ConnectedSystemObjectJoinType::from_i32(join_type)
            .map_err(|e| RowError::unknown_enum(t, id, "JoinType", e))?,
        values: Vec::new(),
    })
}

fn decode_change(
    row: &PgRow,
    pe_id: &Uuid,
    schema: &SystemSchema,
) -> Result<AttributeValueChange, RowError> {
    let t = AVC_TABLE;
    let id: Uuid = row.try_get(col::ID).map_err(|e| RowError {
        table: t,
        row_id: format!("of pending export {pe_id}"),
        column: "Id",
        problem: e.to_string(),
    })?;
    let id = &id;
    let attribute_id: i32 = get(row, col::I1, t, id, "AttributeId")?;
    if schema.attribute(attribute_id).is_none() {
        return Err(RowError {
            table: t,
            row_id: id.to_string(),
            column: "AttributeId",
            problem: format!(
                "attribute {attribute_id} is not a readable attribute of connected system {}",
                schema.connected_system_id
            ),
        });
    }
    let change_type: i32 = get(row, col::I2, t, id, "ChangeType")?;
    let status: i32 = get(row, col::I3, t, id, "Status")?;
    Ok(AttributeValueChange {
        id: *id,
        pending_export_id: *pe_id,
        attribute_id,
        value: slots(row, t, id)?,
        unresolved_reference_value: get(row, col::T1, t, id, "UnresolvedReferenceValue")?,
        change_type: PendingExportAttributeChangeType::from_i32(change_type)
            .map_err(|e| RowError::unknown_enum(t, id, "ChangeType", e))?,
        status: PendingExportAttributeChangeStatus::from_i32(status)
            .map_err(|e| RowError::unknown_enum(t, id, "Status", e))?,
        export_attempt_count: get(row, col::I4, t, id, "ExportAttemptCount")?,
        last_exported_at: get(row, col::D1, t, id, "LastExportedAt")?,
        last_imported_value: get(row, col::T2, t, id, "LastImportedValue")?,
        resolved_reference_cso_id: get(row, col::U1, t, id, "ResolvedReferenceCsoId")?,
    })
}

fn decode_value(row: &PgRow, id: &Uuid) -> Result<CsoAttributeValue, RowError> {
    let t = CSOV_TABLE;
    Ok(CsoAttributeValue {
        id: *id,
        attribute_id: get(row, col::I1, t, id, "AttributeId")?,
        value: slots(row, t, id)?,
        reference_value_id: get(row, col::U1, t, id, "ReferenceValueId")?,
        unresolved_reference_value: get(row, col::T1, t, id, "UnresolvedReferenceValue")?,
    })
}

#[cfg(test)]
impl ClaimedExport {
    /// A first attempt at [`PendingExport::for_test`], claimed from Pending, without a CSO: what the
    /// engine's unit tests build on.
    pub(crate) fn for_test(change_type: PendingExportChangeType) -> Self {
        ClaimedExport {
            export: PendingExport::for_test(change_type),
            previous_status: PendingExportStatus::Pending,
            re_attempt: false,
            first_attempt_at: None,
            cso: None,
            resolutions: Vec::new(),
            unresolved: Vec::new(),
            moved_targets: Vec::new(),
            pending_renames: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_names_parse_as_ids_and_skip_the_rest() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let text = format!("{a},{{{}}},not-a-guid,", b.to_string().to_uppercase());
        assert_eq!(parse_names(Some(&text)), vec![a, b]);
        assert!(parse_names(Some("")).is_empty());
        assert!(parse_names(None).is_empty());
    }
}
