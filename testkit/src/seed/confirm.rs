//! What JIM's confirming import does to exported rows (`export-semantics.md` §2.14), in a handful of
//! set-based statements, plus a shortcut that pretends everything was exported.
//!
//! A real confirming import reads the directory and reconciles each awaiting change against the
//! imported values. Here every change the engine marked `ExportedPendingConfirmation` is taken as
//! confirmed (the directory is assumed to hold what was sent), which is what the tests need to move
//! on to follow-up changes.

use chrono::Utc;
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::{Result, SqlContext};

/// What a confirmation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfirmReport {
    /// Attribute changes confirmed and removed.
    pub confirmed_changes: u64,
    /// Create/Update pending exports removed because nothing was left to confirm.
    pub confirmed_exports: u64,
    /// Pending exports kept because some of their changes still wait (re-statused; a Create whose DN
    /// was confirmed became an Update).
    pub remaining_exports: u64,
    /// CSOs moved from PendingProvisioning to Normal.
    pub provisioned_objects: u64,
    /// Exported Deletes: pending exports removed together with their CSOs.
    pub deleted_objects: u64,
}

/// What [`super::confirm_all_as_exported`] changed before confirming.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportShortcutReport {
    /// Reference changes resolved to the referenced CSO's DN.
    pub resolved_references: u64,
    /// Attribute changes marked `ExportedPendingConfirmation`.
    pub exported_changes: u64,
    /// Pending exports marked `Exported`.
    pub exported_exports: u64,
    /// Fake `entryUUID` anchors written for created objects.
    pub anchors: u64,
}

/// Runs one statement; `$1`, when the statement has it, is the connected system id.
async fn exec(
    tx: &mut Transaction<'_, Postgres>,
    sql: &'static str,
    cs: i32,
    what: &'static str,
) -> Result<u64> {
    let query = sqlx::query(sql);
    let query = if sql.contains("$1") {
        query.bind(cs)
    } else {
        query
    };
    Ok(query
        .execute(&mut **tx)
        .await
        .sql_context(|| what.into())?
        .rows_affected())
}

/// Confirms what the engine exported for connected system `cs` (see [`super::confirm_exported`]).
pub(crate) async fn confirm(pool: &PgPool, cs: i32) -> Result<ConfirmReport> {
    let mut tx = pool
        .begin()
        .await
        .sql_context(|| "starting the confirmation".into())?;
    let report = confirm_in(&mut tx, cs).await?;
    tx.commit()
        .await
        .sql_context(|| "committing the confirmation".into())?;
    Ok(report)
}

async fn confirm_in(tx: &mut Transaction<'_, Postgres>, cs: i32) -> Result<ConfirmReport> {
    let mut report = ConfirmReport::default();

    // Exported Deletes: the import no longer sees the object, so the PE, its changes and the CSO go.
    // References to the CSO are nulled first (that foreign key is NO ACTION); its own values cascade.
    exec(
        tx,
        "CREATE TEMP TABLE seed_deleted ON COMMIT DROP AS \
         SELECT \"Id\" AS pe_id, \"ConnectedSystemObjectId\" AS cso_id FROM \"PendingExports\" \
         WHERE \"ConnectedSystemId\" = $1 AND \"ChangeType\" = 2 AND \"Status\" = 4",
        cs,
        "collecting exported deletes",
    )
    .await?;
    exec(
        tx,
        "DELETE FROM \"PendingExportAttributeValueChanges\" c USING seed_deleted d \
         WHERE c.\"PendingExportId\" = d.pe_id",
        cs,
        "deleting the changes of exported deletes",
    )
    .await?;
    report.deleted_objects = exec(
        tx,
        "DELETE FROM \"PendingExports\" p USING seed_deleted d WHERE p.\"Id\" = d.pe_id",
        cs,
        "deleting exported deletes",
    )
    .await?;
    exec(
        tx,
        "UPDATE \"ConnectedSystemObjectAttributeValues\" v SET \"ReferenceValueId\" = NULL \
         FROM seed_deleted d WHERE v.\"ReferenceValueId\" = d.cso_id",
        cs,
        "nulling references to deleted objects",
    )
    .await?;
    exec(
        tx,
        "DELETE FROM \"ConnectedSystemObjects\" o USING seed_deleted d \
         WHERE o.\"Id\" = d.cso_id AND o.\"ConnectedSystemId\" = $1",
        cs,
        "deleting the CSOs of exported deletes",
    )
    .await?;

    // Confirmed value changes of Creates and Updates, with the referenced CSO of each reference.
    exec(
        tx,
        "CREATE TEMP TABLE seed_confirmed ON COMMIT DROP AS \
         SELECT c.\"Id\" AS avc_id, c.\"PendingExportId\" AS pe_id, pe.\"ConnectedSystemObjectId\" AS cso_id, \
                c.\"AttributeId\" AS attr_id, c.\"ChangeType\" AS change, a.\"Type\" AS data_type, \
                a.\"IsSecondaryExternalId\" AS is_dn, \
                c.\"StringValue\" AS s, c.\"DateTimeValue\" AS dt, c.\"IntValue\" AS i, c.\"LongValue\" AS l, \
                c.\"ByteValue\" AS b, c.\"GuidValue\" AS g, c.\"BoolValue\" AS bo, c.\"DecimalValue\" AS de, \
                r.\"Id\" AS ref_id \
         FROM \"PendingExportAttributeValueChanges\" c \
         JOIN \"PendingExports\" pe ON pe.\"Id\" = c.\"PendingExportId\" \
         JOIN \"ConnectedSystemAttributes\" a ON a.\"Id\" = c.\"AttributeId\" \
         LEFT JOIN \"ConnectedSystemObjects\" r ON r.\"Id\" = c.\"ResolvedReferenceCsoId\" \
         WHERE pe.\"ConnectedSystemId\" = $1 AND pe.\"ChangeType\" IN (0, 1) AND pe.\"Status\" <> 2 \
           AND pe.\"ConnectedSystemObjectId\" IS NOT NULL AND c.\"Status\" = 1",
        cs,
        "collecting confirmed changes",
    )
    .await?;
    exec(
        tx,
        "CREATE TEMP TABLE seed_touched ON COMMIT DROP AS \
         SELECT pe_id, cso_id, bool_or(is_dn) AS dn_confirmed FROM seed_confirmed GROUP BY pe_id, cso_id \
         UNION ALL \
         SELECT p.\"Id\", p.\"ConnectedSystemObjectId\", false FROM \"PendingExports\" p \
         WHERE p.\"ConnectedSystemId\" = $1 AND p.\"ChangeType\" IN (0, 1) AND p.\"Status\" = 4 \
           AND NOT EXISTS (SELECT 1 FROM seed_confirmed s WHERE s.pe_id = p.\"Id\")",
        cs,
        "collecting confirmed exports",
    )
    .await?;

    // Make the CSOs hold what was exported. Superseded values go first: every value of an attribute
    // set by Update or cleared by RemoveAll, and the same value for Add (so an optimistic apply that
    // already wrote it is not doubled) and Remove. References match by CSO id or by DN text.
    exec(
        tx,
        "DELETE FROM \"ConnectedSystemObjectAttributeValues\" v \
         USING (SELECT DISTINCT cso_id, attr_id FROM seed_confirmed WHERE change IN (1, 3)) s \
         WHERE v.\"ConnectedSystemObjectId\" = s.cso_id AND v.\"AttributeId\" = s.attr_id",
        cs,
        "removing values replaced by confirmed updates",
    )
    .await?;
    exec(
        tx,
        "DELETE FROM \"ConnectedSystemObjectAttributeValues\" v USING seed_confirmed s \
         WHERE s.change IN (0, 2) AND s.data_type <> 5 \
           AND v.\"ConnectedSystemObjectId\" = s.cso_id AND v.\"AttributeId\" = s.attr_id \
           AND v.\"StringValue\" IS NOT DISTINCT FROM s.s AND v.\"DateTimeValue\" IS NOT DISTINCT FROM s.dt \
           AND v.\"IntValue\" IS NOT DISTINCT FROM s.i AND v.\"LongValue\" IS NOT DISTINCT FROM s.l \
           AND v.\"ByteValue\" IS NOT DISTINCT FROM s.b AND v.\"GuidValue\" IS NOT DISTINCT FROM s.g \
           AND v.\"BoolValue\" IS NOT DISTINCT FROM s.bo AND v.\"DecimalValue\" IS NOT DISTINCT FROM s.de",
        cs,
        "removing values of confirmed adds and removes",
    )
    .await?;
    exec(
        tx,
        "DELETE FROM \"ConnectedSystemObjectAttributeValues\" v USING seed_confirmed s \
         WHERE s.change IN (0, 2) AND s.data_type = 5 AND s.ref_id IS NOT NULL \
           AND v.\"ConnectedSystemObjectId\" = s.cso_id AND v.\"AttributeId\" = s.attr_id \
           AND v.\"ReferenceValueId\" = s.ref_id",
        cs,
        "removing references of confirmed adds and removes",
    )
    .await?;
    exec(
        tx,
        "DELETE FROM \"ConnectedSystemObjectAttributeValues\" v USING seed_confirmed s \
         WHERE s.change IN (0, 2) AND s.data_type = 5 AND s.s IS NOT NULL \
           AND v.\"ConnectedSystemObjectId\" = s.cso_id AND v.\"AttributeId\" = s.attr_id \
           AND lower(v.\"UnresolvedReferenceValue\") = lower(s.s)",
        cs,
        "removing DN references of confirmed adds and removes",
    )
    .await?;
    // The new values; a reference keeps the referenced CSO and its DN, as an import resolves it.
    // Ids are derived from the change id, so a confirmation is as deterministic as the seed.
    exec(
        tx,
        "INSERT INTO \"ConnectedSystemObjectAttributeValues\" (\"Id\", \"AttributeId\", \
         \"ConnectedSystemObjectId\", \"StringValue\", \"DateTimeValue\", \"IntValue\", \"LongValue\", \
         \"ByteValue\", \"GuidValue\", \"BoolValue\", \"ReferenceValueId\", \"UnresolvedReferenceValue\", \
         \"DecimalValue\") \
         SELECT md5('confirmed:' || s.avc_id::text)::uuid, s.attr_id, s.cso_id, \
                CASE WHEN s.data_type = 5 THEN NULL ELSE s.s END, s.dt, s.i, s.l, s.b, s.g, s.bo, \
                CASE WHEN s.data_type = 5 THEN s.ref_id END, CASE WHEN s.data_type = 5 THEN s.s END, s.de \
         FROM seed_confirmed s \
         WHERE s.change IN (0, 1) \
           AND num_nonnulls(s.s, s.dt, s.i, s.l, s.b, s.g, s.bo, s.de, s.ref_id) > 0",
        cs,
        "writing confirmed values",
    )
    .await?;
    report.confirmed_changes = exec(
        tx,
        "DELETE FROM \"PendingExportAttributeValueChanges\" c USING seed_confirmed s \
         WHERE c.\"Id\" = s.avc_id",
        cs,
        "removing confirmed changes",
    )
    .await?;

    // Exports with nothing left are done; the rest get JIM's recomputed status, and a Create whose DN
    // was confirmed becomes an Update (the object exists now).
    report.confirmed_exports = exec(
        tx,
        "DELETE FROM \"PendingExports\" p USING seed_touched t \
         WHERE p.\"Id\" = t.pe_id AND NOT EXISTS \
           (SELECT 1 FROM \"PendingExportAttributeValueChanges\" c WHERE c.\"PendingExportId\" = p.\"Id\")",
        cs,
        "removing confirmed exports",
    )
    .await?;
    report.remaining_exports = exec(
        tx,
        "UPDATE \"PendingExports\" p SET \
           \"ChangeType\" = CASE WHEN p.\"ChangeType\" = 0 AND t.dn_confirmed THEN 1 ELSE p.\"ChangeType\" END, \
           \"Status\" = (SELECT CASE WHEN bool_and(c.\"Status\" = 3) THEN 3 \
                                     WHEN bool_or(c.\"Status\" = 2) THEN 1 \
                                     WHEN bool_or(c.\"Status\" = 0) THEN 0 ELSE 4 END \
                         FROM \"PendingExportAttributeValueChanges\" c WHERE c.\"PendingExportId\" = p.\"Id\") \
         FROM seed_touched t WHERE p.\"Id\" = t.pe_id",
        cs,
        "re-statusing partly confirmed exports",
    )
    .await?;
    report.provisioned_objects = sqlx::query(
        "UPDATE \"ConnectedSystemObjects\" o SET \"Status\" = 0, \"LastUpdated\" = $2 \
         FROM (SELECT DISTINCT cso_id FROM seed_touched) t \
         WHERE o.\"Id\" = t.cso_id AND o.\"ConnectedSystemId\" = $1 AND o.\"Status\" = 2",
    )
    .bind(cs)
    .bind(Utc::now())
    .execute(&mut **tx)
    .await
    .sql_context(|| "moving provisioned objects to Normal".into())?
    .rows_affected();
    Ok(report)
}

/// Marks every pending export of `cs` (except those another engine is executing) as exported
/// successfully, the way the engine would after writing it, then confirms. References resolve to
/// the referenced CSO's DN; each created object gets a fake `entryUUID` derived from its CSO id.
pub(crate) async fn mark_all_exported(
    pool: &PgPool,
    cs: i32,
) -> Result<(ExportShortcutReport, ConfirmReport)> {
    let mut tx = pool
        .begin()
        .await
        .sql_context(|| "starting the export shortcut".into())?;
    let mut shortcut = ExportShortcutReport {
        resolved_references: exec(
            &mut tx,
            "UPDATE \"PendingExportAttributeValueChanges\" c SET \"StringValue\" = dn.\"StringValue\", \
               \"ResolvedReferenceCsoId\" = r.\"Id\", \"UnresolvedReferenceValue\" = NULL \
             FROM \"PendingExports\" pe, \"ConnectedSystemObjects\" r, \
                  \"ConnectedSystemObjectAttributeValues\" dn, \"ConnectedSystemAttributes\" da \
             WHERE pe.\"Id\" = c.\"PendingExportId\" AND pe.\"ConnectedSystemId\" = $1 AND pe.\"Status\" <> 2 \
               AND c.\"UnresolvedReferenceValue\" IS NOT NULL AND c.\"Status\" IN (0, 2, 3) \
               AND r.\"ConnectedSystemId\" = $1 AND r.\"MetaverseObjectId\"::text = lower(c.\"UnresolvedReferenceValue\") \
               AND dn.\"ConnectedSystemObjectId\" = r.\"Id\" AND dn.\"AttributeId\" = da.\"Id\" \
               AND da.\"IsSecondaryExternalId\" AND dn.\"StringValue\" IS NOT NULL",
            cs,
            "resolving references",
        )
        .await?,
        ..Default::default()
    };
    exec(
        &mut tx,
        "CREATE TEMP TABLE seed_exportable ON COMMIT DROP AS \
         SELECT p.\"Id\" AS pe_id, p.\"ConnectedSystemObjectId\" AS cso_id, p.\"ChangeType\" AS change \
         FROM \"PendingExports\" p WHERE p.\"ConnectedSystemId\" = $1 AND p.\"Status\" <> 2 \
           AND NOT EXISTS (SELECT 1 FROM \"PendingExportAttributeValueChanges\" c \
                           WHERE c.\"PendingExportId\" = p.\"Id\" AND c.\"UnresolvedReferenceValue\" IS NOT NULL)",
        cs,
        "collecting exportable exports",
    )
    .await?;
    let now = Utc::now();
    shortcut.exported_changes = sqlx::query(
        "UPDATE \"PendingExportAttributeValueChanges\" c SET \"Status\" = 1, \
           \"ExportAttemptCount\" = c.\"ExportAttemptCount\" + 1, \"LastExportedAt\" = $1 \
         FROM seed_exportable e WHERE c.\"PendingExportId\" = e.pe_id AND c.\"Status\" IN (0, 2, 3)",
    )
    .bind(now)
    .execute(&mut *tx)
    .await
    .sql_context(|| "marking changes exported".into())?
    .rows_affected();
    shortcut.exported_exports = sqlx::query(
        "UPDATE \"PendingExports\" p SET \"Status\" = 4, \"LastAttemptedAt\" = $1, \"NextRetryAt\" = NULL, \
           \"HasUnresolvedReferences\" = false \
         FROM seed_exportable e WHERE p.\"Id\" = e.pe_id",
    )
    .bind(now)
    .execute(&mut *tx)
    .await
    .sql_context(|| "marking exports exported".into())?
    .rows_affected();
    shortcut.anchors = exec(
        &mut tx,
        "INSERT INTO \"ConnectedSystemObjectAttributeValues\" (\"Id\", \"AttributeId\", \
         \"ConnectedSystemObjectId\", \"StringValue\") \
         SELECT md5('entryUUID-row:' || o.\"Id\"::text)::uuid, o.\"ExternalIdAttributeId\", o.\"Id\", \
                md5('entryUUID:' || o.\"Id\"::text)::uuid::text \
         FROM seed_exportable e JOIN \"ConnectedSystemObjects\" o ON o.\"Id\" = e.cso_id \
         WHERE e.change = 0 AND o.\"ConnectedSystemId\" = $1 AND NOT EXISTS \
           (SELECT 1 FROM \"ConnectedSystemObjectAttributeValues\" v \
            WHERE v.\"ConnectedSystemObjectId\" = o.\"Id\" AND v.\"AttributeId\" = o.\"ExternalIdAttributeId\")",
        cs,
        "writing fake anchors",
    )
    .await?;
    let confirmed = confirm_in(&mut tx, cs).await?;
    tx.commit()
        .await
        .sql_context(|| "committing the export shortcut".into())?;
    Ok((shortcut, confirmed))
}
