//! A small row builder for the store's integration tests: inserts exactly the JIM rows a case needs
//! (a connected system with user and group types, CSOs, MVOs, pending exports and their changes) into a
//! fresh database with JIM's schema, and reads rows back whole for exact comparisons.

use crate::{JimDatabase, Postgres};
use chrono::{DateTime, Duration, TimeZone, Utc};
use jim_export::config::RunOptions;
use jim_export::model::ValueSlots;
use jim_export::store::{ExportQueue, Store};
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// Attribute ids of the fixture's connected system.
#[derive(Debug, Clone, Copy)]
pub struct Attrs {
    /// user `distinguishedName` (Text, secondary anchor).
    pub dn: i32,
    /// user `objectGUID` (Guid, primary anchor).
    pub guid: i32,
    /// user `mail` (Text, multi-valued).
    pub mail: i32,
    /// user `description` (Text, single-valued).
    pub description: i32,
    /// user `manager` (Reference).
    pub manager: i32,
    /// user `cost` (Decimal).
    pub cost: i32,
    /// group `distinguishedName`.
    pub group_dn: i32,
    /// group `objectGUID`.
    pub group_guid: i32,
    /// group `member` (Reference, multi-valued).
    pub member: i32,
}

/// One test's database, connected system and store.
pub struct Fixture {
    /// The test's own JIM database.
    pub db: JimDatabase,
    /// A pool on `db`, for inserting and reading rows.
    pub pool: PgPool,
    /// The engine's store on `db`.
    pub store: Store,
    /// The connected system's id.
    pub cs: i32,
    /// The user object type's id.
    pub user_type: i32,
    /// The group object type's id.
    pub group_type: i32,
    /// The attribute ids of both object types.
    pub attrs: Attrs,
    counter: std::sync::atomic::AtomicI64,
}

/// The base instant of generated `CreatedAt` values.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

// JIM's enum values as its tables store them, for raw rows (`jim_export::model` has them typed).

/// `PendingExportChangeType::Create`.
pub const CREATE: i32 = 0;
/// `PendingExportChangeType::Update`.
pub const UPDATE: i32 = 1;
/// `PendingExportChangeType::Delete`.
pub const DELETE: i32 = 2;

/// `PendingExportStatus::Pending`.
pub const PENDING: i32 = 0;
/// `PendingExportStatus::ExportNotConfirmed`.
pub const EXPORT_NOT_CONFIRMED: i32 = 1;
/// `PendingExportStatus::Executing`.
pub const EXECUTING: i32 = 2;
/// `PendingExportStatus::Failed`.
pub const FAILED: i32 = 3;
/// `PendingExportStatus::Exported`.
pub const EXPORTED: i32 = 4;

/// `PendingExportAttributeChangeType::Add`.
pub const ADD: i32 = 0;
/// `PendingExportAttributeChangeType::Update` (sets a single-valued attribute).
pub const SET: i32 = 1;
/// `PendingExportAttributeChangeType::Remove`.
pub const REMOVE: i32 = 2;
/// `PendingExportAttributeChangeType::RemoveAll`.
pub const REMOVE_ALL: i32 = 3;

/// `PendingExportAttributeChangeStatus::Pending`.
pub const AVC_PENDING: i32 = 0;
/// `PendingExportAttributeChangeStatus::ExportedPendingConfirmation`.
pub const AVC_EXPORTED_PENDING_CONFIRMATION: i32 = 1;
/// `PendingExportAttributeChangeStatus::ExportedNotConfirmed`.
pub const AVC_EXPORTED_NOT_CONFIRMED: i32 = 2;
/// `PendingExportAttributeChangeStatus::Failed`.
pub const AVC_FAILED: i32 = 3;

impl Fixture {
    /// A fresh database with one LDAP-like connected system (user and group types).
    pub async fn new() -> Fixture {
        let pg = Postgres::shared().await.expect("PostgreSQL for tests");
        let db = pg.jim_database().await.expect("a JIM database");
        let pool = db.pool.clone();
        let store = Store::from_pool(pool.clone());
        let mut fx = Fixture {
            db,
            pool,
            store,
            cs: 0,
            user_type: 0,
            group_type: 0,
            attrs: Attrs {
                dn: 0,
                guid: 0,
                mail: 0,
                description: 0,
                manager: 0,
                cost: 0,
                group_dn: 0,
                group_guid: 0,
                member: 0,
            },
            counter: std::sync::atomic::AtomicI64::new(0),
        };
        fx.cs = fx.connected_system("OpenLDAP").await;
        fx.user_type = fx.object_type(fx.cs, "user").await;
        fx.group_type = fx.object_type(fx.cs, "group").await;
        fx.attrs.dn = fx
            .attribute(fx.user_type, "distinguishedName", 1, 0, false, true)
            .await;
        fx.attrs.guid = fx
            .attribute(fx.user_type, "objectGUID", 6, 0, true, false)
            .await;
        fx.attrs.mail = fx.attribute(fx.user_type, "mail", 1, 1, false, false).await;
        fx.attrs.description = fx
            .attribute(fx.user_type, "description", 1, 0, false, false)
            .await;
        fx.attrs.manager = fx
            .attribute(fx.user_type, "manager", 5, 0, false, false)
            .await;
        fx.attrs.cost = fx.attribute(fx.user_type, "cost", 9, 0, false, false).await;
        fx.attrs.group_dn = fx
            .attribute(fx.group_type, "distinguishedName", 1, 0, false, true)
            .await;
        fx.attrs.group_guid = fx
            .attribute(fx.group_type, "objectGUID", 6, 0, true, false)
            .await;
        fx.attrs.member = fx
            .attribute(fx.group_type, "member", 5, 1, false, false)
            .await;
        fx
    }

    /// Run options with a lease of `lease_seconds`.
    pub fn options(lease_seconds: u64) -> RunOptions {
        RunOptions {
            lease_seconds,
            ..RunOptions::default()
        }
    }

    /// A queue on the fixture's system with the default lease.
    pub async fn queue(&self) -> ExportQueue {
        self.store
            .open(self.cs, &RunOptions::default())
            .await
            .expect("open the queue")
    }

    /// Inserts a connector definition and a connected system; returns the system's id.
    pub async fn connected_system(&self, name: &str) -> i32 {
        let def: i32 = sqlx::query_scalar(
            r#"INSERT INTO "ConnectorDefinitions" ("Name", "Created", "CreatedByType", "LastUpdatedByType",
                 "BuiltIn", "SupportsFullImport", "SupportsDeltaImport", "SupportsExport", "SupportsPartitions",
                 "SupportsPartitionContainers", "SupportsSecondaryExternalId", "SupportsUserSelectedExternalId",
                 "SupportsUserSelectedAttributeTypes", "SupportsAutoConfirmExport", "SupportsParallelExport",
                 "SupportsPaging", "SupportsFilePaths", "SupportsPasswordSet", "SchemaStandard",
                 "SupportsPasswordPolicyDiscovery")
               VALUES ('JIM LDAP Connector', now(), 3, 3, true, true, true, true, true, true, true, false, false,
                       false, true, true, false, true, 2, false)
               RETURNING "Id""#,
        )
        .fetch_one(&self.pool)
        .await
        .expect("connector definition");
        sqlx::query_scalar(
            r#"INSERT INTO "ConnectedSystems" ("Name", "Created", "CreatedByType", "LastUpdatedByType", "Status",
                 "ConnectorDefinitionId", "SettingValuesValid", "ObjectMatchingRuleMode",
                 "UnresolvedReferenceHandling", "RequireSecureTransport")
               VALUES ($1, now(), 3, 3, 0, $2, true, 0, 0, false)
               RETURNING "Id""#,
        )
        .bind(name)
        .bind(def)
        .fetch_one(&self.pool)
        .await
        .expect("connected system")
    }

    /// Inserts an object type of `cs`.
    pub async fn object_type(&self, cs: i32, name: &str) -> i32 {
        sqlx::query_scalar(
            r#"INSERT INTO "ConnectedSystemObjectTypes" ("Name", "Created", "ConnectedSystemId", "Selected",
                 "RemoveContributedAttributesOnObsoletion")
               VALUES ($1, now(), $2, true, false) RETURNING "Id""#,
        )
        .bind(name)
        .bind(cs)
        .fetch_one(&self.pool)
        .await
        .expect("object type")
    }

    /// Inserts an attribute definition (data type and plurality as JIM's numbers).
    pub async fn attribute(
        &self,
        object_type: i32,
        name: &str,
        data_type: i32,
        plurality: i32,
        is_external_id: bool,
        is_secondary_external_id: bool,
    ) -> i32 {
        sqlx::query_scalar(
            r#"INSERT INTO "ConnectedSystemAttributes" ("Created", "Name", "Type", "AttributePlurality",
                 "ConnectedSystemObjectTypeId", "Selected", "IsExternalId", "IsSecondaryExternalId",
                 "SelectionLocked", "Writability", "TypeSetByAdministrator")
               VALUES (now(), $1, $2, $3, $4, true, $5, $6, false, 0, false) RETURNING "Id""#,
        )
        .bind(name)
        .bind(data_type)
        .bind(plurality)
        .bind(object_type)
        .bind(is_external_id)
        .bind(is_secondary_external_id)
        .fetch_one(&self.pool)
        .await
        .expect("attribute")
    }

    /// Inserts a metaverse object.
    pub async fn mvo(&self) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            r#"INSERT INTO "MetaverseObjects" ("Id", "Created", "TypeId", "Status", "DeletionInitiatedByType",
                 "Origin", "ScopeReviewPending") VALUES ($1, now(), 1, 0, 0, 0, false)"#,
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .expect("metaverse object");
        id
    }

    /// Inserts a CSO of the fixture's system: a user (`group == false`) or a group, with a DN value when
    /// given, joined to `mvo`, with a non-NULL import hash and fingerprint (so clearing them shows).
    pub async fn cso(&self, group: bool, dn: Option<&str>, mvo: Option<Uuid>, status: i32) -> Uuid {
        let (type_id, ext, sec) = if group {
            (self.group_type, self.attrs.group_guid, self.attrs.group_dn)
        } else {
            (self.user_type, self.attrs.guid, self.attrs.dn)
        };
        let id = self
            .cso_in(self.cs, type_id, ext, Some(sec), mvo, status)
            .await;
        if let Some(dn) = dn {
            self.cso_value(id, sec, ValueSlots::text(dn)).await;
        }
        id
    }

    /// Inserts a CSO with explicit system, type and anchor attributes.
    pub async fn cso_in(
        &self,
        cs: i32,
        type_id: i32,
        ext: i32,
        sec: Option<i32>,
        mvo: Option<Uuid>,
        status: i32,
    ) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            r#"INSERT INTO "ConnectedSystemObjects" ("Id", "Created", "TypeId", "ConnectedSystemId",
                 "ExternalIdAttributeId", "SecondaryExternalIdAttributeId", "Status", "MetaverseObjectId", "JoinType",
                 "ScopeReviewPending", "ImportStateFingerprint", "ImportStateHash")
               VALUES ($1, now(), $2, $3, $4, $5, $6, $7, 2, false, $8, $9)"#,
        )
        .bind(id)
        .bind(type_id)
        .bind(cs)
        .bind(ext)
        .bind(sec)
        .bind(status)
        .bind(mvo)
        .bind(Uuid::new_v4())
        .bind(Uuid::new_v4())
        .execute(&self.pool)
        .await
        .expect("connected system object");
        id
    }

    /// Inserts a CSO attribute value.
    pub async fn cso_value(&self, cso: Uuid, attr: i32, v: ValueSlots) -> Uuid {
        self.cso_value_full(cso, attr, v, None, None).await
    }

    /// Inserts a CSO attribute value with reference columns.
    pub async fn cso_value_full(
        &self,
        cso: Uuid,
        attr: i32,
        v: ValueSlots,
        reference: Option<Uuid>,
        unresolved: Option<&str>,
    ) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            r#"INSERT INTO "ConnectedSystemObjectAttributeValues" ("Id", "AttributeId", "ConnectedSystemObjectId",
                 "StringValue", "DateTimeValue", "IntValue", "LongValue", "ByteValue", "GuidValue", "BoolValue",
                 "ReferenceValueId", "UnresolvedReferenceValue", "DecimalValue")
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"#,
        )
        .bind(id)
        .bind(attr)
        .bind(cso)
        .bind(v.string)
        .bind(v.date_time)
        .bind(v.int)
        .bind(v.long)
        .bind(v.bytes)
        .bind(v.guid)
        .bind(v.boolean)
        .bind(reference)
        .bind(unresolved)
        .bind(v.decimal)
        .execute(&self.pool)
        .await
        .expect("CSO attribute value");
        id
    }

    /// A pending export builder with JIM's defaults: Pending, MaxRetries 5, `CreatedAt` increasing with
    /// every builder made.
    pub fn pe(&self, change_type: i32, cso: Option<Uuid>) -> PeBuilder {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        PeBuilder {
            id: Uuid::new_v4(),
            cs: self.cs,
            cso,
            change_type,
            status: PENDING,
            error_count: 0,
            max_retries: 5,
            last_attempted_at: None,
            next_retry_at: None,
            has_unresolved: false,
            created_at: base_time() + Duration::milliseconds(n),
            source_mvo: None,
        }
    }

    /// Inserts an attribute value change.
    pub async fn avc(
        &self,
        pe: Uuid,
        attr: i32,
        change_type: i32,
        status: i32,
        v: ValueSlots,
    ) -> Uuid {
        self.avc_full(pe, attr, change_type, status, v, None).await
    }

    /// Inserts a reference change holding an MVO id.
    pub async fn avc_ref(&self, pe: Uuid, attr: i32, change_type: i32, mvo: &str) -> Uuid {
        self.avc_full(
            pe,
            attr,
            change_type,
            AVC_PENDING,
            ValueSlots::default(),
            Some(mvo),
        )
        .await
    }

    /// Inserts an attribute value change with every column chosen.
    pub async fn avc_full(
        &self,
        pe: Uuid,
        attr: i32,
        change_type: i32,
        status: i32,
        v: ValueSlots,
        unresolved: Option<&str>,
    ) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            r#"INSERT INTO "PendingExportAttributeValueChanges" ("Id", "PendingExportId", "AttributeId",
                 "StringValue", "DateTimeValue", "IntValue", "LongValue", "ByteValue", "GuidValue", "BoolValue",
                 "UnresolvedReferenceValue", "ChangeType", "Status", "ExportAttemptCount", "DecimalValue")
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14)"#,
        )
        .bind(id)
        .bind(pe)
        .bind(attr)
        .bind(v.string)
        .bind(v.date_time)
        .bind(v.int)
        .bind(v.long)
        .bind(v.bytes)
        .bind(v.guid)
        .bind(v.boolean)
        .bind(unresolved)
        .bind(change_type)
        .bind(status)
        .bind(v.decimal)
        .execute(&self.pool)
        .await
        .expect("attribute value change");
        id
    }

    /// Reads a pending export whole.
    pub async fn pe_row(&self, id: Uuid) -> PeRow {
        let r = sqlx::query(r#"SELECT * FROM "PendingExports" WHERE "Id" = $1"#)
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .expect("pending export row");
        PeRow {
            id: r.get("Id"),
            connected_system_id: r.get("ConnectedSystemId"),
            cso: r.get("ConnectedSystemObjectId"),
            change_type: r.get("ChangeType"),
            status: r.get("Status"),
            error_count: r.get("ErrorCount"),
            max_retries: r.get("MaxRetries"),
            last_attempted_at: r.get("LastAttemptedAt"),
            next_retry_at: r.get("NextRetryAt"),
            last_error_message: r.get("LastErrorMessage"),
            last_error_stack_trace: r.get("LastErrorStackTrace"),
            source_mvo: r.get("SourceMetaverseObjectId"),
            has_unresolved: r.get("HasUnresolvedReferences"),
            created_at: r.get("CreatedAt"),
            provisioning_sync_rule_id: r.get("ProvisioningSyncRuleId"),
            queued_by: r.get("QueuedByRunProfileExecutionItemId"),
        }
    }

    /// Reads an attribute value change whole.
    pub async fn avc_row(&self, id: Uuid) -> AvcRow {
        let r =
            sqlx::query(r#"SELECT * FROM "PendingExportAttributeValueChanges" WHERE "Id" = $1"#)
                .bind(id)
                .fetch_one(&self.pool)
                .await
                .expect("attribute value change row");
        AvcRow {
            status: r.get("Status"),
            change_type: r.get("ChangeType"),
            export_attempt_count: r.get("ExportAttemptCount"),
            last_exported_at: r.get("LastExportedAt"),
            string_value: r.get("StringValue"),
            unresolved_reference_value: r.get("UnresolvedReferenceValue"),
            resolved_reference_cso_id: r.get("ResolvedReferenceCsoId"),
            last_imported_value: r.get("LastImportedValue"),
        }
    }

    /// The values of one attribute of a CSO, ordered by string then reference.
    pub async fn values_of(&self, cso: Uuid, attr: i32) -> Vec<ValueRow> {
        let rows = sqlx::query(
            r#"SELECT "Id", "StringValue", "GuidValue", "IntValue", "ReferenceValueId", "UnresolvedReferenceValue"
               FROM "ConnectedSystemObjectAttributeValues"
               WHERE "ConnectedSystemObjectId" = $1 AND "AttributeId" = $2
               ORDER BY "StringValue", "UnresolvedReferenceValue""#,
        )
        .bind(cso)
        .bind(attr)
        .fetch_all(&self.pool)
        .await
        .expect("CSO values");
        rows.into_iter()
            .map(|r| ValueRow {
                id: r.get(0),
                string: r.get(1),
                guid: r.get(2),
                int: r.get(3),
                reference: r.get(4),
                unresolved: r.get(5),
            })
            .collect()
    }

    /// A CSO's `Status`, `LastUpdated`, `ImportStateHash` and `ImportStateFingerprint`.
    pub async fn cso_state(&self, cso: Uuid) -> CsoState {
        let r = sqlx::query(
            r#"SELECT "Status", "LastUpdated", "ImportStateHash", "ImportStateFingerprint"
               FROM "ConnectedSystemObjects" WHERE "Id" = $1"#,
        )
        .bind(cso)
        .fetch_one(&self.pool)
        .await
        .expect("CSO");
        CsoState {
            status: r.get(0),
            last_updated: r.get(1),
            hash: r.get(2),
            fingerprint: r.get(3),
        }
    }

    /// Executes a statement (test set-up only).
    pub async fn exec(&self, sql: &'static str) {
        sqlx::query(sql)
            .execute(&self.pool)
            .await
            .expect("test SQL");
    }

    /// Executes a statement about one row (`$1`), for test set-up.
    pub async fn exec_id(&self, sql: &'static str, id: Uuid) {
        sqlx::query(sql)
            .bind(id)
            .execute(&self.pool)
            .await
            .expect("test SQL");
    }

    /// Makes a backing-off export due now (as if its retry time had passed).
    pub async fn make_due(&self, id: Uuid) {
        self.exec_id(r#"UPDATE "PendingExports" SET "NextRetryAt" = now() - interval '1 second' WHERE "Id" = $1"#, id)
            .await;
    }

    /// The database clock.
    pub async fn now(&self) -> DateTime<Utc> {
        sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await
            .expect("now()")
    }

    /// How many of the system's rows are `Executing`.
    pub async fn executing_count(&self) -> i64 {
        sqlx::query_scalar(r#"SELECT count(*) FROM "PendingExports" WHERE "Status" = 2"#)
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}

/// A pending export to insert.
#[derive(Debug, Clone)]
pub struct PeBuilder {
    /// `Id`.
    pub id: Uuid,
    /// `ConnectedSystemId`.
    pub cs: i32,
    /// `ConnectedSystemObjectId`.
    pub cso: Option<Uuid>,
    /// `ChangeType`.
    pub change_type: i32,
    /// `Status`.
    pub status: i32,
    /// `ErrorCount`.
    pub error_count: i32,
    /// `MaxRetries`.
    pub max_retries: i32,
    /// `LastAttemptedAt`.
    pub last_attempted_at: Option<DateTime<Utc>>,
    /// `NextRetryAt`.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// `HasUnresolvedReferences`.
    pub has_unresolved: bool,
    /// `CreatedAt`.
    pub created_at: DateTime<Utc>,
    /// `SourceMetaverseObjectId`.
    pub source_mvo: Option<Uuid>,
}

impl PeBuilder {
    /// With status `s`.
    pub fn status(mut self, s: i32) -> Self {
        self.status = s;
        self
    }
    /// With `error_count` errors so far, of `max_retries`.
    pub fn errors(mut self, error_count: i32, max_retries: i32) -> Self {
        self.error_count = error_count;
        self.max_retries = max_retries;
        self
    }
    /// Not to be retried before `at`.
    pub fn next_retry(mut self, at: DateTime<Utc>) -> Self {
        self.next_retry_at = Some(at);
        self
    }
    /// Last attempted at `at`.
    pub fn attempted(mut self, at: DateTime<Utc>) -> Self {
        self.last_attempted_at = Some(at);
        self
    }
    /// Flagged as having unresolved references.
    pub fn unresolved(mut self) -> Self {
        self.has_unresolved = true;
        self
    }
    /// Created at `at` (the claim's order).
    pub fn created(mut self, at: DateTime<Utc>) -> Self {
        self.created_at = at;
        self
    }
    /// For connected system `cs`.
    pub fn system(mut self, cs: i32) -> Self {
        self.cs = cs;
        self
    }

    /// Inserts the row; returns its id.
    pub async fn insert(self, fx: &Fixture) -> Uuid {
        sqlx::query(
            r#"INSERT INTO "PendingExports" ("Id", "ConnectedSystemId", "ConnectedSystemObjectId", "ChangeType",
                 "Status", "ErrorCount", "MaxRetries", "LastAttemptedAt", "NextRetryAt", "LastErrorMessage",
                 "LastErrorStackTrace", "SourceMetaverseObjectId", "HasUnresolvedReferences", "CreatedAt",
                 "ProvisioningSyncRuleId", "QueuedByRunProfileExecutionItemId")
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'earlier error', 'earlier trace', $10, $11, $12, NULL, $13)"#,
        )
        .bind(self.id)
        .bind(self.cs)
        .bind(self.cso)
        .bind(self.change_type)
        .bind(self.status)
        .bind(self.error_count)
        .bind(self.max_retries)
        .bind(self.last_attempted_at)
        .bind(self.next_retry_at)
        .bind(self.source_mvo)
        .bind(self.has_unresolved)
        .bind(self.created_at)
        .bind(Uuid::new_v4())
        .execute(&fx.pool)
        .await
        .expect("pending export");
        self.id
    }
}

/// A whole `PendingExports` row.
#[derive(Debug, Clone, PartialEq)]
pub struct PeRow {
    /// `Id`.
    pub id: Uuid,
    /// `ConnectedSystemId`.
    pub connected_system_id: i32,
    /// `ConnectedSystemObjectId`.
    pub cso: Option<Uuid>,
    /// `ChangeType`.
    pub change_type: i32,
    /// `Status`.
    pub status: i32,
    /// `ErrorCount`.
    pub error_count: i32,
    /// `MaxRetries`.
    pub max_retries: i32,
    /// `LastAttemptedAt`.
    pub last_attempted_at: Option<DateTime<Utc>>,
    /// `NextRetryAt`.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// `LastErrorMessage`.
    pub last_error_message: Option<String>,
    /// `LastErrorStackTrace`.
    pub last_error_stack_trace: Option<String>,
    /// `SourceMetaverseObjectId`.
    pub source_mvo: Option<Uuid>,
    /// `HasUnresolvedReferences`.
    pub has_unresolved: bool,
    /// `CreatedAt`.
    pub created_at: DateTime<Utc>,
    /// `ProvisioningSyncRuleId`.
    pub provisioning_sync_rule_id: Option<i32>,
    /// `QueuedByRunProfileExecutionItemId`.
    pub queued_by: Option<Uuid>,
}

/// The mutable columns of a `PendingExportAttributeValueChanges` row (and its change type).
#[derive(Debug, Clone, PartialEq)]
pub struct AvcRow {
    /// `Status`.
    pub status: i32,
    /// `ChangeType`.
    pub change_type: i32,
    /// `ExportAttemptCount`.
    pub export_attempt_count: i32,
    /// `LastExportedAt`.
    pub last_exported_at: Option<DateTime<Utc>>,
    /// `StringValue`.
    pub string_value: Option<String>,
    /// `UnresolvedReferenceValue`.
    pub unresolved_reference_value: Option<String>,
    /// `ResolvedReferenceCsoId`.
    pub resolved_reference_cso_id: Option<Uuid>,
    /// `LastImportedValue`.
    pub last_imported_value: Option<String>,
}

/// Some columns of a CSO attribute value.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueRow {
    /// `Id`.
    pub id: Uuid,
    /// `StringValue`.
    pub string: Option<String>,
    /// `GuidValue`.
    pub guid: Option<Uuid>,
    /// `IntValue`.
    pub int: Option<i32>,
    /// `ReferenceValueId`.
    pub reference: Option<Uuid>,
    /// `UnresolvedReferenceValue`.
    pub unresolved: Option<String>,
}

/// The CSO columns export must or must not change.
#[derive(Debug, Clone, PartialEq)]
pub struct CsoState {
    /// `Status`.
    pub status: i32,
    /// `LastUpdated`.
    pub last_updated: Option<DateTime<Utc>>,
    /// `ImportStateHash`.
    pub hash: Option<Uuid>,
    /// `ImportStateFingerprint`.
    pub fingerprint: Option<Uuid>,
}
