//! The SQL the store issues, as static text. Values are always bound (`$n`), arrays with explicit casts;
//! nothing is concatenated at run time.

use super::marker::{marker_lease, marker_on_claim};

/// The lease of the `Executing` row `pe`: the one its claimer recorded in the row's mark
/// (`super::marker`), or, for a row without one (claimed by JIM itself or an older engine), the
/// bound parameter named by `$lease`, in seconds.
macro_rules! owner_lease {
    ($lease:literal) => {
        concat!("COALESCE(", marker_lease!("pe"), ", ", $lease, "::float8)")
    };
}

/// When the lease on the `Executing` row `pe` runs out (by the database clock).
macro_rules! lease_expiry {
    ($lease:literal) => {
        concat!(
            r#"COALESCE(pe."LastAttemptedAt", '-infinity'::timestamptz) + make_interval(secs => "#,
            owner_lease!($lease),
            ")"
        )
    };
}

/// JIM's executable-exports predicate (`ExecutableExportsQuery`, schema.md §5.1) over `pe`, without the
/// connected-system condition, with the engine's lease recovery added: a row left `Executing` whose
/// lease has run out is eligible again, the lease being the one its owner took (see [`owner_lease`]).
/// The database clock is "now".
///
/// The `OFFSET 0` keeps an Update's "has a change still to export" test an index probe per row
/// (`IX_PendingExportAttributeValueChanges_PendingExportId`). Without it PostgreSQL may hash the
/// test instead, reading every change row of every export ever queued, exported ones included, once
/// per claim: on a follow-up round after a provisioning of 5,273 exports that was 2,116 of a claim
/// page's 6,954 buffer hits, and the table only grows.
macro_rules! eligibility {
    ($lease:literal) => {
        concat!(
            r#"(pe."Status" IN (0, 4, 1)
           OR (pe."Status" = 2
               AND "#,
            lease_expiry!($lease),
            r#" < now()))
      AND (pe."NextRetryAt" IS NULL OR pe."NextRetryAt" <= now())
      AND pe."ErrorCount" < pe."MaxRetries"
      AND (pe."ChangeType" <> 1 OR EXISTS (
            SELECT 1 FROM "PendingExportAttributeValueChanges" c
            WHERE c."PendingExportId" = pe."Id" AND c."Status" IN (0, 2)
            OFFSET 0))
      AND NOT (pe."ChangeType" = 2 AND pe."Status" = 4)
      AND NOT (pe."ChangeType" = 0 AND pe."Status" = 4)"#
        )
    };
}

/// The claim statement, up to the keyset condition. `$2` selects the pass (`HasUnresolvedReferences`),
/// `$4` is the page size; the claims bind the run id as `$5` and, with a cursor, `$6`/`$7`; the peeks the
/// cursor as `$5`/`$6`.
macro_rules! claim_head {
    () => {
        concat!(
            r#"WITH cand AS (
    SELECT pe."Id", pe."Status" AS prev_status, pe."LastAttemptedAt" AS prev_attempted,
           pe."LastErrorStackTrace" AS prev_trace
    FROM "PendingExports" pe
    WHERE pe."ConnectedSystemId" = $1
      AND "#,
            eligibility!("$3"),
            r#"
      AND pe."HasUnresolvedReferences" = $2"#
        )
    };
}

/// Locks the candidates and marks them `Executing` (`claimed` returns the rows as updated).
macro_rules! claim_lock {
    () => {
        concat!(
            r#"
    ORDER BY pe."CreatedAt", pe."Id"
    LIMIT $4
    FOR UPDATE OF pe SKIP LOCKED
),
claimed AS (
    UPDATE "PendingExports" p
    SET "Status" = 2, "LastAttemptedAt" = now(),
        "LastErrorStackTrace" = "#,
            marker_on_claim!("p", "$3", "$5"),
            r#"
    WHERE p."Id" = ANY(ARRAY(SELECT "Id" FROM cand))
    RETURNING p."Id", p."ConnectedSystemId", p."ConnectedSystemObjectId", p."ChangeType", p."Status",
              p."ErrorCount", p."MaxRetries", p."LastAttemptedAt", p."NextRetryAt", p."LastErrorMessage",
              p."LastErrorStackTrace", p."SourceMetaverseObjectId", p."HasUnresolvedReferences", p."CreatedAt",
              p."ProvisioningSyncRuleId", p."QueuedByRunProfileExecutionItemId"
),"#
        )
    };
}

/// Reads the candidates without locking or marking them (a dry run's read-only look at the queue).
macro_rules! peek_select {
    () => {
        r#"
    ORDER BY pe."CreatedAt", pe."Id"
    LIMIT $4
),
claimed AS (
    SELECT p."Id", p."ConnectedSystemId", p."ConnectedSystemObjectId", p."ChangeType", p."Status",
              p."ErrorCount", p."MaxRetries",
              -- the load decodes it as a claim token; a dry run never uses it
              COALESCE(p."LastAttemptedAt", now()) AS "LastAttemptedAt", p."NextRetryAt", p."LastErrorMessage",
              p."LastErrorStackTrace", p."SourceMetaverseObjectId", p."HasUnresolvedReferences", p."CreatedAt",
              p."ProvisioningSyncRuleId", p."QueuedByRunProfileExecutionItemId"
    FROM "PendingExports" p
    WHERE p."Id" = ANY(ARRAY(SELECT "Id" FROM cand))
),
"#
    };
}

/// The DN change JIM has staged for the CSO `$cso` that no export has made yet, if any: the Update
/// pending export of that CSO (at most one per CSO, `IX_PendingExports_ConnectedSystemObjectId_Unique`)
/// and its change of the CSO's DN attribute (the secondary anchor) still to be sent (`Pending` or
/// `ExportedNotConfirmed`), whatever the export's own status: due, waiting for a retry, in flight in
/// another run or given up (`Failed`), the rename is still to come. Columns `rename_pe`,
/// `rename_attr`, `rename_to`, and `rename_names`: the objects the renaming export's own reference
/// changes name, comma-separated (CSO ids where resolved, else the MVO ids JIM stored), so that two
/// exports which rename their objects and name each other are not each deferred for the other on
/// every run. Index probes only: the CSO's export, the CSO, the export's changes.
macro_rules! pending_rename {
    ($cso:literal) => {
        concat!(
            r#"SELECT r."Id" AS rename_pe, rc."AttributeId" AS rename_attr, rc."StringValue" AS rename_to,
               array_to_string(ARRAY(
                   SELECT COALESCE(sc."ResolvedReferenceCsoId"::text, sc."UnresolvedReferenceValue")
                   FROM "PendingExportAttributeValueChanges" sc
                   WHERE sc."PendingExportId" = r."Id"
                     AND (sc."ResolvedReferenceCsoId" IS NOT NULL OR sc."UnresolvedReferenceValue" IS NOT NULL)
               ), ',') AS rename_names
        FROM "PendingExports" r
        JOIN "ConnectedSystemObjects" ro ON ro."Id" = r."ConnectedSystemObjectId"
        JOIN "PendingExportAttributeValueChanges" rc
          ON rc."PendingExportId" = r."Id" AND rc."AttributeId" = ro."SecondaryExternalIdAttributeId"
        WHERE r."ConnectedSystemObjectId" = "#,
            $cso,
            r#" AND r."ChangeType" = 1
          AND rc."Status" IN (0, 2) AND rc."StringValue" IS NOT NULL
        OFFSET 0"#
        )
    };
}

/// How many rows of a group-sized attribute the claim reads before it turns to named probes
/// ([`SAMPLE_ROWS`] as SQL text; see `load_tail!`).
macro_rules! sample_rows {
    () => {
        "500"
    };
}

/// How many rows of an attribute whose changes are all reference Adds and Removes the claim reads
/// in index order (more when the export has more changes on it, see `load_tail!`). Fewer back means
/// the attribute was read whole; this many means it holds more, and the changes' own rows are looked
/// up by value.
pub(crate) const SAMPLE_ROWS: usize = 500;

/// Loads the claimed (or peeked) rows with their attribute value changes and the CSO context, as one
/// result set of four row kinds (0 = pending export + CSO header, 1 = attribute value change, 2 = CSO
/// attribute value, 3 = a DN change still to be made for an object a resolved reference change names,
/// `pending_rename!`: the renaming export in the `Id` column, the DN attribute, the referenced CSO,
/// the objects the renaming export names in `T1` and the new DN in `StringValue`'s). The CSO values returned are those of the anchor attributes and of every attribute
/// the export's changes touch. Column layout: see `claim::col`. A change row of a reference an
/// earlier run resolved also carries the DN its object has now, when that differs from the change's
/// value (the object was renamed or moved since: `ClaimedExport::moved_targets`); a CSO probe per
/// such change, none for any other. Every lookup is an index probe per
/// claimed row (`LATERAL` subqueries kept apart by `OFFSET 0`, `= ANY(ARRAY(..))`), so the plan does
/// not depend on statistics that go stale while a run inserts CSO values by the hundred thousand:
/// flattened into joins, the lookups became hash joins over a sequential scan of the whole table, a
/// cost that grows with the table on every page.
///
/// A Create's CSO is read whole, in one probe, and its values filtered: it holds what JIM staged
/// for the provisioning (the DN) and what an earlier attempt of the same Create wrote, so little
/// beyond what is needed, while probing each of a Create's dozen attributes took a dozen index
/// descents for one row (half the claim's buffer hits). Any other CSO may hold thousands of values
/// (a group's members) of which an update needs a few, so it is probed attribute by attribute.
///
/// An attribute whose changes in the export are all reference Adds and Removes (a group's members,
/// as a rule) is read whole only while it is small: the claim reads up to [`SAMPLE_ROWS`] of its rows,
/// or two more than the export has changes on it if that is more (`n.sample`). A sample that comes
/// back short is the whole attribute. A full one means the attribute is large, and then the rows the
/// changes can match, all that optimistic apply (`super::apply`) looks at for an Add or a Remove, are
/// looked up by value in a second statement ([`PROBE`], for changes resolved at claim time) or in the
/// resolution query ([`RESOLVE`], for the others, once it has learned the referenced CSO). Either
/// way the planner's placeholder rule counts right: a short sample is every row, a full one more rows
/// than the export removes. Reading the attribute whole cost a 500,000-member group's every row on
/// each page that touched it; the sample keeps a small group's read one index range, cheaper than a
/// probe per change. Deciding in the claim which samples came back full cost a small group more than
/// the sample itself (materializing it and counting it: 0.2-0.3 ms of PostgreSQL time per export at
/// 200 members, `bench_groups`), so the claim streams the sample and the engine counts it.
macro_rules! load_tail {
    () => {
        concat!(r#"head AS MATERIALIZED (
    SELECT c.*, cand.prev_status, cand.prev_attempted, cand.prev_trace,
           o."Id" AS o_id, o."TypeId" AS o_type, o."ExternalIdAttributeId" AS o_ext,
           o."SecondaryExternalIdAttributeId" AS o_sec, o."Status" AS o_status, o."JoinType" AS o_join,
           o."ConnectedSystemId" AS o_cs, o."MetaverseObjectId" AS o_mvo
    FROM claimed c
    JOIN cand ON cand."Id" = c."Id"
    LEFT JOIN LATERAL (
        SELECT * FROM "ConnectedSystemObjects" x WHERE x."Id" = c."ConnectedSystemObjectId" OFFSET 0
    ) o ON true
),
changes AS MATERIALIZED (
    SELECT a.*
    FROM head h
    CROSS JOIN LATERAL (
        SELECT * FROM "PendingExportAttributeValueChanges" x WHERE x."PendingExportId" = h."Id" OFFSET 0
    ) a
),
needed AS MATERIALIZED (
    SELECT pe_id, cso_id, attr, bool_or(whole) AS whole, GREATEST("#, sample_rows!(), r#", count(*) + 2) AS sample
    FROM (
        SELECT h."Id" AS pe_id, h.o_id AS cso_id, h.o_ext AS attr, true AS whole FROM head h
        WHERE h.o_id IS NOT NULL AND h."ChangeType" <> 0
        UNION ALL
        SELECT h."Id", h.o_id, h.o_sec, true FROM head h
        WHERE h.o_id IS NOT NULL AND h."ChangeType" <> 0 AND h.o_sec IS NOT NULL
        UNION ALL
        SELECT h."Id", h.o_id, ch."AttributeId",
               NOT (ch."ChangeType" IN (0, 2)
                    AND (ch."ResolvedReferenceCsoId" IS NOT NULL OR ch."UnresolvedReferenceValue" IS NOT NULL))
        FROM changes ch JOIN head h ON h."Id" = ch."PendingExportId"
        WHERE h.o_id IS NOT NULL AND h."ChangeType" <> 0
    ) t
    GROUP BY pe_id, cso_id, attr
),
cso_values AS (
    SELECT n.pe_id, v.*
    FROM needed n
    CROSS JOIN LATERAL (
        SELECT * FROM "ConnectedSystemObjectAttributeValues" x
        WHERE x."ConnectedSystemObjectId" = n.cso_id AND x."AttributeId" = n.attr
        OFFSET 0
    ) v
    WHERE n.whole
    UNION ALL
    SELECT n.pe_id, v.*
    FROM needed n
    CROSS JOIN LATERAL (
        SELECT * FROM "ConnectedSystemObjectAttributeValues" x
        WHERE x."ConnectedSystemObjectId" = n.cso_id AND x."AttributeId" = n.attr
        LIMIT n.sample
    ) v
    WHERE NOT n.whole
    UNION ALL
    SELECT h."Id", v.*
    FROM head h
    CROSS JOIN LATERAL (
        SELECT * FROM "ConnectedSystemObjectAttributeValues" x
        WHERE x."ConnectedSystemObjectId" = h.o_id
        OFFSET 0
    ) v
    WHERE h."ChangeType" = 0
      AND (v."AttributeId" IN (h.o_ext, h.o_sec)
           OR (h."Id", v."AttributeId") IN (SELECT ch."PendingExportId", ch."AttributeId" FROM changes ch))
)
SELECT 0::int4, h."Id", h."Id",
       h."ConnectedSystemId", h."ChangeType", h."Status", h."ErrorCount", h."MaxRetries",
       h."ProvisioningSyncRuleId", h.prev_status, h.o_type, h.o_ext, h.o_sec, h.o_status, h.o_join, h.o_cs,
       h."ConnectedSystemObjectId", h."SourceMetaverseObjectId", h."QueuedByRunProfileExecutionItemId", h.o_mvo,
       h."LastAttemptedAt", h."NextRetryAt", h."CreatedAt", h.prev_attempted,
       h."LastErrorMessage", h."LastErrorStackTrace",
       h."HasUnresolvedReferences", h.o_id IS NOT NULL,
       NULL::text, NULL::timestamptz, NULL::int4, NULL::int8, NULL::numeric, NULL::bytea, NULL::uuid, NULL::bool,
       h.prev_trace
FROM head h
UNION ALL
SELECT 1, a."PendingExportId", a."Id",
       a."AttributeId", a."ChangeType", a."Status", a."ExportAttemptCount", NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL,
       a."ResolvedReferenceCsoId", NULL, NULL, NULL,
       a."LastExportedAt", NULL, NULL, NULL,
       a."UnresolvedReferenceValue", a."LastImportedValue",
       NULL, NULL,
       a."StringValue", a."DateTimeValue", a."IntValue", a."LongValue", a."DecimalValue", a."ByteValue",
       a."GuidValue", a."BoolValue",
       CASE WHEN a."ResolvedReferenceCsoId" IS NOT NULL AND a."UnresolvedReferenceValue" IS NULL
                 AND a."Status" <> 1 AND a."StringValue" IS NOT NULL
            THEN (SELECT v."StringValue"
                  FROM "ConnectedSystemObjects" o
                  JOIN "ConnectedSystemObjectAttributeValues" v
                    ON v."ConnectedSystemObjectId" = o."Id" AND v."AttributeId" = o."SecondaryExternalIdAttributeId"
                  WHERE o."Id" = a."ResolvedReferenceCsoId" AND v."StringValue" IS DISTINCT FROM a."StringValue"
                  LIMIT 1)
       END
FROM changes a
UNION ALL
SELECT 3, a."PendingExportId", r.rename_pe,
       r.rename_attr, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL,
       a."ResolvedReferenceCsoId", NULL, NULL, NULL,
       NULL, NULL, NULL, NULL,
       r.rename_names, NULL,
       NULL, NULL,
       r.rename_to, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM (SELECT DISTINCT c."PendingExportId", c."ResolvedReferenceCsoId" FROM changes c
      WHERE c."ResolvedReferenceCsoId" IS NOT NULL AND c."UnresolvedReferenceValue" IS NULL
        AND c."Status" <> 1 AND c."ChangeType" IN (0, 1)) a
CROSS JOIN LATERAL ("#, pending_rename!(r#"a."ResolvedReferenceCsoId""#), r#") r
UNION ALL
SELECT 2, v.pe_id, v."Id",
       v."AttributeId", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL,
       v."ReferenceValueId", NULL, NULL, NULL,
       NULL, NULL, NULL, NULL,
       v."UnresolvedReferenceValue", NULL,
       NULL, NULL,
       v."StringValue", v."DateTimeValue", v."IntValue", v."LongValue", v."DecimalValue", v."ByteValue",
       v."GuidValue", v."BoolValue", NULL
FROM cso_values v"#)
    };
}

/// The rest of the claim statement: lock, mark `Executing`, and return the claimed rows together with
/// their attribute value changes and the CSO context.
macro_rules! claim_tail {
    () => {
        concat!(claim_lock!(), load_tail!())
    };
}

/// Claims the first page of a pass. Binds: `$1` connected system, `$2` pass, `$3` lease seconds, `$4` limit,
/// `$5` the run's id (written into each row's mark, `super::marker`).
pub(crate) const CLAIM_FIRST: &str = concat!(claim_head!(), claim_tail!());

/// Claims the page after a cursor, with the row comparison that becomes an index condition on
/// `IX_PendingExports_ConnectedSystemId_CreatedAt_Id` (schema.md §5.2). Binds as [`CLAIM_FIRST`] plus
/// `$6` cursor `CreatedAt`, `$7` cursor `Id`.
pub(crate) const CLAIM_AFTER: &str = concat!(
    claim_head!(),
    r#"
      AND (pe."CreatedAt", pe."Id") > ($6::timestamptz, $7::uuid)"#,
    claim_tail!()
);

/// A dry run's look at the first page of a pass: [`CLAIM_FIRST`] without locking or marking anything.
pub(crate) const PEEK_FIRST: &str = concat!(claim_head!(), peek_select!(), load_tail!());

/// A dry run's look at the page after a cursor: [`CLAIM_AFTER`] without locking or marking anything.
pub(crate) const PEEK_AFTER: &str = concat!(
    claim_head!(),
    r#"
      AND (pe."CreatedAt", pe."Id") > ($5::timestamptz, $6::uuid)"#,
    peek_select!(),
    load_tail!()
);

/// The connected system, its object types and their attribute definitions, loaded once per run.
pub(crate) const LOAD_SYSTEM: &str = r#"
SELECT s."Name", s."UnresolvedReferenceHandling", t."Id", t."Name",
       a."Id", a."Name", a."Type", a."AttributePlurality", a."IsExternalId", a."IsSecondaryExternalId",
       a."Writability"
FROM "ConnectedSystems" s
LEFT JOIN "ConnectedSystemObjectTypes" t ON t."ConnectedSystemId" = s."Id"
LEFT JOIN "ConnectedSystemAttributes" a ON a."ConnectedSystemObjectTypeId" = t."Id"
WHERE s."Id" = $1
ORDER BY t."Id", a."Id""#;

/// The schema guard: whether the expected migration is recorded, and the latest one that is.
pub(crate) const SCHEMA_CHECK: &str = r#"
SELECT COALESCE(bool_or("MigrationId" = $1), false), max("MigrationId")
FROM "__EFMigrationsHistory""#;

/// The rows of a large attribute that a reference change can match, for each row of a `probes`
/// CTE (exporting CSO `owner`, attribute `attr`, referenced CSO `target`, a DN `dn` or NULL): the
/// exporting CSO's rows of that attribute that name the referenced CSO (`ReferenceValueId`) or,
/// known by nothing but a DN, name that DN (`UnresolvedReferenceValue`). Columns: 1 (the row kind),
/// exporting CSO, referenced CSO, value id, `AttributeId`, the value slots, `ReferenceValueId`,
/// `UnresolvedReferenceValue`. Shared by [`PROBE`] (changes resolved at claim time) and
/// [`RESOLVE`] (changes it resolves).
///
/// A probe's only condition inside its `OFFSET 0` subquery is the value (the CSO, the attribute and
/// a DN-only row's missing id are checked outside it), so the one index the probe can use is the
/// value's, and it descends it. Given the exporting CSO too, PostgreSQL may take
/// `IX_..._CsoId_AttributeId` and read the group whole after all. The DN is compared exactly, not
/// through `IX_CsoAttrVal_Lower_UnresolvedRef`: `lower(..) = ..` implies the predicate of the plain
/// partial index `IX_..._UnresolvedReferenceValue` too, and with statistics from before the member
/// rows existed PostgreSQL scanned that one end to end for each change (the benchmark's first run of
/// this design: 61 million buffer hits in one resolution call). So a DN-only row whose DN differs from
/// the resolved one in letter case alone is not found; both come from the directory, which returns
/// one entry's DN the same way each time.
macro_rules! value_probes {
    () => {
        r#"SELECT 1::int4, w.owner, w.target, v."Id", v."AttributeId",
       v."StringValue", v."GuidValue", v."IntValue", v."LongValue", v."DecimalValue",
       v."DateTimeValue", v."ByteValue", v."BoolValue", v."ReferenceValueId", v."UnresolvedReferenceValue"
FROM (SELECT DISTINCT owner, attr, target FROM probes) w
CROSS JOIN LATERAL (
    SELECT * FROM "ConnectedSystemObjectAttributeValues" x
    WHERE x."ReferenceValueId" = w.target
    OFFSET 0
) v
WHERE v."ConnectedSystemObjectId" = w.owner AND v."AttributeId" = w.attr
UNION ALL
SELECT 1, w.owner, w.target, v."Id", v."AttributeId",
       v."StringValue", v."GuidValue", v."IntValue", v."LongValue", v."DecimalValue",
       v."DateTimeValue", v."ByteValue", v."BoolValue", v."ReferenceValueId", v."UnresolvedReferenceValue"
FROM probes w
CROSS JOIN LATERAL (
    SELECT * FROM "ConnectedSystemObjectAttributeValues" x
    WHERE x."UnresolvedReferenceValue" = w.dn
    OFFSET 0
) v
WHERE w.dn IS NOT NULL
  AND v."ConnectedSystemObjectId" = w.owner AND v."AttributeId" = w.attr
  AND v."ReferenceValueId" IS NULL"#
    };
}

/// Reference resolution for a page: each MVO's CSO in the target system with the values of its anchor
/// attributes (`$3`, the attributes flagged `IsSecondaryExternalId` or `IsExternalId`), as rows of kind
/// 0. An MVO without a row has no CSO there; a CSO whose anchor columns are all NULL has no anchor yet.
///
/// Rows of kind 2 are the DN changes still to be made for those CSOs (`pending_rename!`): the MVO,
/// the CSO, the renaming export in the value id's column, the DN attribute, the new DN in
/// `StringValue`'s and the objects the renaming export names in `UnresolvedReferenceValue`'s.
///
/// Rows of kind 1 are what the claim could not load for an unresolved change (`load_tail!`): for each
/// (exporting CSO `$4`, attribute `$5`, referenced MVO `$6`), the rows `value_probes!` finds for
/// the MVO's CSO and each of its anchors holding a string. Columns: kind, MVO or exporting CSO,
/// referenced CSO, value id, `AttributeId`, the value slots, `ReferenceValueId`,
/// `UnresolvedReferenceValue`.
pub(crate) const RESOLVE: &str = concat!(
    r#"
WITH t AS MATERIALIZED (
    SELECT m.id AS mvo, o."Id" AS cso
    FROM unnest($2::uuid[]) AS m(id)
    CROSS JOIN LATERAL (
        SELECT x."Id" FROM "ConnectedSystemObjects" x
        WHERE x."ConnectedSystemId" = $1 AND x."MetaverseObjectId" = m.id
        OFFSET 0
    ) o
),
anchors AS MATERIALIZED (
    SELECT t.mvo, t.cso, v.*
    FROM t
    LEFT JOIN LATERAL (
        SELECT y.* FROM "ConnectedSystemObjectAttributeValues" y
        WHERE y."ConnectedSystemObjectId" = t.cso AND y."AttributeId" = ANY($3::int4[])
        OFFSET 0
    ) v ON true
),
renames AS MATERIALIZED (
    SELECT t.mvo, t.cso, r.*
    FROM t
    CROSS JOIN LATERAL ("#,
    pending_rename!(r#"t.cso"#),
    r#") r
),
w AS (
    SELECT DISTINCT owner, attr, mvo FROM unnest($4::uuid[], $5::int4[], $6::uuid[]) AS w(owner, attr, mvo)
),
probes AS MATERIALIZED (
    SELECT w.owner, w.attr, t.cso AS target, NULL::text AS dn FROM w JOIN t ON t.mvo = w.mvo
    UNION ALL
    SELECT w.owner, w.attr, a.cso, a."StringValue"
    FROM w JOIN anchors a ON a.mvo = w.mvo
    WHERE a."StringValue" IS NOT NULL
)
SELECT 0::int4, a.mvo, a.cso, a."Id", a."AttributeId",
       a."StringValue", a."GuidValue", a."IntValue", a."LongValue", a."DecimalValue",
       NULL::timestamptz, NULL::bytea, NULL::bool, NULL::uuid, NULL::text
FROM anchors a
UNION ALL
SELECT 2, r.mvo, r.cso, r.rename_pe, r.rename_attr,
       r.rename_to, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, r.rename_names
FROM renames r
UNION ALL
"#,
    value_probes!()
);

/// The rows of large attributes the claim did not read (`load_tail!`) that resolved reference
/// changes can match: for each (exporting CSO `$1`, attribute `$2`, referenced CSO `$3`, the
/// change's DN `$4` or NULL), the rows `value_probes!` finds. Columns as [`RESOLVE`]'s rows of
/// kind 1.
pub(crate) const PROBE: &str = concat!(
    r#"
WITH probes AS MATERIALIZED (
    SELECT DISTINCT owner, attr, target, dn FROM unnest($1::uuid[], $2::int4[], $3::uuid[], $4::text[])
        AS w(owner, attr, target, dn)
)
"#,
    value_probes!()
);

/// Renews the lease of held rows (`$1` ids, `$2` the mark the run's claim wrote on each, its lease
/// token): `LastAttemptedAt = now()` on each row still `Executing` with that mark. Sending it twice does
/// no harm.
pub(crate) const RENEW: &str = r#"
UPDATE "PendingExports" t
SET "LastAttemptedAt" = now()
FROM unnest($1::uuid[], $2::text[]) AS h(id, token)
WHERE t."Id" = h.id AND t."Status" = 2 AND t."LastErrorStackTrace" = h.token
RETURNING t."Id""#;

/// Returns held rows (`$1` ids, `$2` the marks the claim wrote, their lease tokens) to the status
/// (`$3`) and `LastAttemptedAt` (`$4`) they had before the claim; rows recovered from an expired lease
/// go back to Pending. `$5` is each row's `LastErrorStackTrace` afterwards: the
/// pre-claim value for a row the directory never saw, the claim's mark for one it may have
/// (`super::marker`).
pub(crate) const RELEASE: &str = r#"
UPDATE "PendingExports" t
SET "Status" = CASE WHEN h.prev = 2 THEN 0 ELSE h.prev END,
    "LastAttemptedAt" = h.prev_attempted,
    "LastErrorStackTrace" = h.trace
FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::timestamptz[], $5::text[])
    AS h(id, token, prev, prev_attempted, trace)
WHERE t."Id" = h.id AND t."Status" = 2 AND t."LastErrorStackTrace" = h.token
RETURNING t."Id""#;

/// Persists the outcomes of one flush in one statement (data-modifying CTEs over `UNNEST` arrays).
///
/// Per export (`$1`-`$5`, `$29`): id, lease token (the mark the claim wrote), kind (0 succeeded, 1 failed, 2 deferred), error
/// message, whether the object now exists (a Create whose add went through before a later failure), and
/// its `LastErrorStackTrace` afterwards (the engine's mark, `super::marker`, or what JIM had there).
/// Per attribute value change (`$6`-`$11`): id, export id, written, resolved, resolved value, resolved CSO.
/// CSO attribute values to delete (`$12`, `$13` = owning export), and to update or insert
/// (`$14`-`$28`); the CSOs whose values change (`$30`, `$31` = owning export), whose import hash is
/// cleared. Every child write is limited to exports whose lease held (`pe_upd`), so a row another
/// engine took over is left alone as a whole. Nothing but the exports' new state is returned: each
/// row a statement returns costs the server a projection, so the counts are taken from the arrays.
pub(crate) const PERSIST: &str = r#"
WITH pe_in AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::text[], $5::bool[], $29::text[])
        AS x(id, token, kind, msg, object_exists, trace)
),
avc_in AS (
    SELECT * FROM unnest($6::uuid[], $7::uuid[], $8::bool[], $9::bool[], $10::text[], $11::uuid[])
        AS y(id, pe, written, resolved, sval, rcso)
),
-- The exports' change rows as they are now (JIM may have added one during the run), fetched by index:
-- as a join against the whole table the planner chose a sequential scan of it on every flush.
avc_now AS MATERIALIZED (
    SELECT c."Id", c."PendingExportId", c."Status",
           (c."UnresolvedReferenceValue" IS NOT NULL AND c."UnresolvedReferenceValue" <> '') AS unresolved
    FROM "PendingExportAttributeValueChanges" c
    WHERE c."PendingExportId" = ANY($1::uuid[])
),
state AS MATERIALIZED (
    SELECT x.id, x.token, x.kind, x.msg, x.object_exists, x.trace,
           COALESCE(bool_or(a."Status" IN (0, 2) AND NOT COALESCE(y.written, false)
                            AND a.unresolved AND NOT COALESCE(y.resolved, false)), false) AS rem_unresolved,
           COALESCE(bool_or(a."Status" IN (0, 2) AND NOT COALESCE(y.written, false)
                            AND NOT (a.unresolved AND NOT COALESCE(y.resolved, false))), false) AS rem_pending,
           COALESCE(bool_or(a.unresolved AND NOT COALESCE(y.resolved, false)), false) AS unresolved_after
    FROM pe_in x
    LEFT JOIN avc_now a ON a."PendingExportId" = x.id
    LEFT JOIN avc_in y ON y.id = a."Id" AND y.pe = x.id
    GROUP BY x.id, x.token, x.kind, x.msg, x.object_exists, x.trace
),
pe_upd AS (
    UPDATE "PendingExports" t SET
        "Status" = CASE
            WHEN s.kind = 0 AND t."ChangeType" = 2 THEN 4
            WHEN s.kind = 0 AND NOT s.rem_unresolved AND NOT s.rem_pending THEN 4
            WHEN s.kind = 1 AND t."ErrorCount" + 1 >= t."MaxRetries" THEN 3
            ELSE 0 END,
        "ChangeType" = CASE
            WHEN t."ChangeType" = 0 AND s.kind = 0 AND (s.rem_unresolved OR s.rem_pending) THEN 1
            WHEN t."ChangeType" = 0 AND s.kind = 1 AND s.object_exists THEN 1
            ELSE t."ChangeType" END,
        "ErrorCount" = CASE WHEN s.kind = 1 THEN t."ErrorCount" + 1 ELSE t."ErrorCount" END,
        "LastAttemptedAt" = CASE
            WHEN s.kind = 0 AND (t."ChangeType" = 2 OR NOT (s.rem_unresolved OR s.rem_pending))
                THEN t."LastAttemptedAt"
            ELSE now() END,
        "NextRetryAt" = CASE
            WHEN s.kind = 1 THEN now() + make_interval(
                mins => LEAST(1 << LEAST(GREATEST(t."ErrorCount" + 1, 0), 6), 60))
            WHEN s.kind = 2 THEN now() + interval '5 minutes'
            WHEN t."ChangeType" = 2 THEN t."NextRetryAt"
            WHEN s.rem_unresolved THEN now() + interval '5 minutes'
            WHEN s.rem_pending THEN now()
            ELSE t."NextRetryAt" END,
        "LastErrorMessage" = CASE WHEN s.kind = 1 THEN s.msg ELSE t."LastErrorMessage" END,
        "LastErrorStackTrace" = s.trace,
        "HasUnresolvedReferences" = CASE
            WHEN s.kind = 2 THEN true
            WHEN s.kind = 0 AND t."ChangeType" <> 2 AND s.rem_unresolved THEN true
            ELSE s.unresolved_after END
    -- Driven from `state`, one primary-key probe per export: with an `"Id" = ANY($1)` here the
    -- planner scanned the exports first and compared each with every row of `state`.
    FROM state s
    WHERE t."Id" = s.id AND t."Status" = 2 AND t."LastErrorStackTrace" = s.token
    RETURNING t."Id", t."Status", t."ChangeType", t."ErrorCount", t."HasUnresolvedReferences",
              t."NextRetryAt", t."ConnectedSystemObjectId"
),
avc_upd AS (
    UPDATE "PendingExportAttributeValueChanges" a SET
        "Status" = CASE WHEN y.written AND a."Status" IN (0, 2) THEN 1 ELSE a."Status" END,
        "ExportAttemptCount" = CASE WHEN y.written AND a."Status" IN (0, 2)
            THEN a."ExportAttemptCount" + 1 ELSE a."ExportAttemptCount" END,
        "LastExportedAt" = CASE WHEN y.written AND a."Status" IN (0, 2) THEN now() ELSE a."LastExportedAt" END,
        "StringValue" = CASE WHEN y.resolved THEN y.sval ELSE a."StringValue" END,
        "UnresolvedReferenceValue" = CASE WHEN y.resolved THEN NULL ELSE a."UnresolvedReferenceValue" END,
        "ResolvedReferenceCsoId" = CASE WHEN y.resolved THEN y.rcso ELSE a."ResolvedReferenceCsoId" END
    FROM avc_in y
    WHERE a."Id" = y.id AND a."PendingExportId" = y.pe AND y.pe IN (SELECT "Id" FROM pe_upd)
),
cv_del AS (
    DELETE FROM "ConnectedSystemObjectAttributeValues" v
    USING unnest($12::uuid[], $13::uuid[]) AS d(id, pe)
    WHERE v."Id" = d.id AND d.pe IN (SELECT "Id" FROM pe_upd)
),
cv_in AS MATERIALIZED (
    SELECT * FROM unnest($14::uuid[], $15::uuid[], $16::uuid[], $17::int4[], $18::bool[], $19::text[],
                         $20::timestamptz[], $21::int4[], $22::int8[], $23::numeric[], $24::bytea[],
                         $25::uuid[], $26::bool[], $27::uuid[], $28::text[])
        AS i(id, pe, cso, attr, is_new, sval, dval, ival, lval, decval, bval, gval, boolval, ref, unresolved)
    WHERE i.pe IN (SELECT "Id" FROM pe_upd)
),
-- The CSOs still there (JIM may delete one during the run; its values are then skipped rather than
-- failing the flush on the foreign key), looked up once each rather than once per value.
cso_alive AS MATERIALIZED (
    SELECT o."Id" FROM "ConnectedSystemObjects" o
    WHERE o."Id" = ANY(ARRAY(SELECT DISTINCT cso FROM cv_in))
),
cv_upd AS (
    UPDATE "ConnectedSystemObjectAttributeValues" v SET
        "StringValue" = i.sval, "DateTimeValue" = i.dval, "IntValue" = i.ival, "LongValue" = i.lval,
        "DecimalValue" = i.decval, "ByteValue" = i.bval, "GuidValue" = i.gval, "BoolValue" = i.boolval,
        "ReferenceValueId" = r."Id", "UnresolvedReferenceValue" = i.unresolved
    FROM cv_in i
    LEFT JOIN "ConnectedSystemObjects" r ON r."Id" = i.ref
    WHERE NOT i.is_new AND v."Id" = i.id
),
cv_ins AS (
    INSERT INTO "ConnectedSystemObjectAttributeValues"
        ("Id", "AttributeId", "ConnectedSystemObjectId", "StringValue", "DateTimeValue", "IntValue",
         "LongValue", "ByteValue", "GuidValue", "BoolValue", "ReferenceValueId", "UnresolvedReferenceValue",
         "DecimalValue")
    SELECT i.id, i.attr, i.cso, i.sval, i.dval, i.ival, i.lval, i.bval, i.gval, i.boolval, r."Id",
           i.unresolved, i.decval
    FROM cv_in i
    LEFT JOIN "ConnectedSystemObjects" r ON r."Id" = i.ref
    -- `IS TRUE` keeps the test a hashed subplan: as a semi-join the planner, which sees ten rows
    -- on each side, chose a nested loop comparing every value with every CSO (60,000 comparisons
    -- per flush of 100 exports, a quarter of this part's time).
    WHERE i.is_new AND (i.cso IN (SELECT "Id" FROM cso_alive)) IS TRUE
),
cso_upd AS (
    -- A hash already clear is left alone: rewriting it would write a new row version and an entry in
    -- each of the table's eight indexes for nothing (the usual case for a CSO JIM just created).
    UPDATE "ConnectedSystemObjects" o
    SET "ImportStateHash" = NULL, "ImportStateFingerprint" = NULL
    FROM unnest($30::uuid[], $31::uuid[]) AS t(cso, pe)
    WHERE o."Id" = t.cso AND t.pe IN (SELECT "Id" FROM pe_upd)
      AND (o."ImportStateHash" IS NOT NULL OR o."ImportStateFingerprint" IS NOT NULL)
)
SELECT p."Id", p."Status", p."ChangeType", p."ErrorCount", p."HasUnresolvedReferences", p."NextRetryAt"
FROM pe_upd p"#;

/// The exports due for a run (`$1` system, `$2` lease seconds, `$3` the run's mark pattern,
/// `super::marker::run_pattern`): those eligible now and those the run has already claimed. The
/// run counts beside its first claim; whichever state the count's snapshot sees a row the claim
/// takes in, the row counts once.
pub(crate) const COUNT_DUE: &str = concat!(
    r#"
SELECT count(*)
FROM "PendingExports" pe
WHERE pe."ConnectedSystemId" = $1
  AND (("#,
    eligibility!("$2"),
    r#")
       OR (pe."Status" = 2 AND pe."LastErrorStackTrace" LIKE $3))"#
);

/// Summary of one connected system's queue for operators (`$1` system, `$2` lease seconds).
pub(crate) const QUEUE_SUMMARY: &str = concat!(
    r#"
SELECT pe."Status", pe."ChangeType", count(*),
       count(*) FILTER (WHERE pe."NextRetryAt" IS NULL OR pe."NextRetryAt" <= now()),
       count(*) FILTER (WHERE pe."NextRetryAt" > now()),
       count(*) FILTER (WHERE pe."Status" = 2 AND "#,
    lease_expiry!("$2"),
    r#" < now()),
       count(*) FILTER (WHERE pe."HasUnresolvedReferences"),
       count(*) FILTER (WHERE "#,
    eligibility!("$2"),
    r#"),
       min(pe."LastAttemptedAt") FILTER (WHERE pe."Status" = 3)
FROM "PendingExports" pe
WHERE pe."ConnectedSystemId" = $1
GROUP BY pe."Status", pe."ChangeType"
ORDER BY pe."Status", pe."ChangeType""#
);

/// Returns rows stranded in `Executing` for longer than `$2` seconds to Pending (operator action). Their
/// `LastErrorStackTrace` stays: a row a crashed run claimed keeps the mark that says its export may
/// have reached the directory (`super::marker`).
pub(crate) const RELEASE_STRANDED: &str = r#"
UPDATE "PendingExports" pe
SET "Status" = 0
WHERE pe."ConnectedSystemId" = $1 AND pe."Status" = 2
  AND COALESCE(pe."LastAttemptedAt", '-infinity'::timestamptz) < now() - make_interval(secs => $2::float8)"#;

/// Resets Failed exports to Pending with a clean error state (operator action; JIM's
/// `RetryFailedExportsAsync`, set-based).
/// The engine's mark stays (the failed attempts may have reached the directory).
pub(crate) const RESET_FAILED: &str = r#"
UPDATE "PendingExports" pe
SET "Status" = 0, "ErrorCount" = 0, "NextRetryAt" = NULL, "LastErrorMessage" = NULL,
    "LastErrorStackTrace" = CASE WHEN pe."LastErrorStackTrace" LIKE 'jim-export: lease %'
                                 THEN pe."LastErrorStackTrace" END
WHERE pe."ConnectedSystemId" = $1 AND pe."Status" = 3"#;

/// What a watch needs between passes (`$1` system, `$2` lease seconds): whether anything is eligible
/// now, and in how many seconds the next row becomes due (the earliest future `NextRetryAt` of a row
/// that is otherwise waiting, or the expiry of a lease on an `Executing` row), NULL when none will.
pub(crate) const WATCH_PROBE: &str = concat!(
    r#"
SELECT EXISTS (SELECT 1 FROM "PendingExports" pe WHERE pe."ConnectedSystemId" = $1 AND "#,
    eligibility!("$2"),
    r#"),
       (SELECT EXTRACT(EPOCH FROM min(due.at) - now())::float8 FROM (
            SELECT min(pe."NextRetryAt") AS at FROM "PendingExports" pe
            WHERE pe."ConnectedSystemId" = $1 AND pe."Status" IN (0, 4, 1)
              AND pe."NextRetryAt" > now() AND pe."ErrorCount" < pe."MaxRetries"
            UNION ALL
            SELECT min("#,
    lease_expiry!("$2"),
    r#") FROM "PendingExports" pe
            WHERE pe."ConnectedSystemId" = $1 AND pe."Status" = 2) due)"#
);

/// Returns to Pending every row still `Executing` under a mark of this run (`$2`, the pattern of
/// `super::marker::run_pattern`) that the run does not hold (`$3` the ids it holds): rows a claim
/// marked whose answer never arrived. Their mark stays, so their next attempt reads the directory
/// first.
pub(crate) const RELEASE_UNHELD: &str = r#"
UPDATE "PendingExports" pe
SET "Status" = 0
WHERE pe."ConnectedSystemId" = $1 AND pe."Status" = 2 AND pe."LastErrorStackTrace" LIKE $2
  AND pe."Id" <> ALL($3::uuid[])"#;

/// The state of rows a persist may have written before its answer was lost (`$1` ids): those no longer
/// `Executing` were (a row `Executing` again under another engine's mark was not, and is left out).
pub(crate) const PERSISTED_STATE: &str = r#"
SELECT t."Id", t."Status", t."ChangeType", t."ErrorCount", t."HasUnresolvedReferences", t."NextRetryAt"
FROM "PendingExports" t
WHERE t."Id" = ANY($1::uuid[]) AND t."Status" <> 2"#;

/// A CSO of the system (`$1`) other than `$5` whose primary anchor (`$2`, the attributes flagged
/// `IsExternalId`) is the value `$3` (as text, compared as stored and upper-cased) or `$4` (as a
/// GUID). Text anchors use `IX_ConnectedSystemObjectAttributeValues_AttributeId_StringValue`; GUID
/// anchors have no index, so this runs only when a re-attempt is about to adopt an entry.
pub(crate) const ANCHOR_HOLDER: &str = r#"
SELECT v."ConnectedSystemObjectId"
FROM "ConnectedSystemObjectAttributeValues" v
JOIN "ConnectedSystemObjects" o ON o."Id" = v."ConnectedSystemObjectId"
WHERE v."AttributeId" = ANY($2::int4[]) AND o."ConnectedSystemId" = $1
  AND (v."StringValue" = $3 OR v."StringValue" = upper($3) OR v."GuidValue" = $4::uuid)
  AND o."Id" IS DISTINCT FROM $5::uuid
LIMIT 1"#;

#[cfg(test)]
mod tests {
    use super::{CLAIM_AFTER, CLAIM_FIRST, PEEK_AFTER, PEEK_FIRST, SAMPLE_ROWS};

    /// The claim's SQL and the resolution's choice of probes must agree on the sample size.
    #[test]
    fn the_sample_size_is_one_number() {
        assert_eq!(sample_rows!().parse::<usize>().unwrap(), SAMPLE_ROWS);
        let sample = format!("GREATEST({SAMPLE_ROWS}, count(*) + 2)");
        for sql in [CLAIM_FIRST, CLAIM_AFTER, PEEK_FIRST, PEEK_AFTER] {
            assert!(sql.contains(&sample));
        }
    }
}
