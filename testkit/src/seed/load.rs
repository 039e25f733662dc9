//! The bulk load: MVOs, PendingProvisioning CSOs with their DN value, Create pending exports and their
//! attribute changes, streamed with binary `COPY` in dependency order. Each table is one pass over the
//! objects that regenerates them from the seed, so memory stays flat at any template size.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jim_export::model::{
    ConnectedSystemObjectJoinType, ConnectedSystemObjectStatus, DEFAULT_MAX_RETRIES,
    MetaverseObjectOrigin, MetaverseObjectStatus, PendingExportAttributeChangeStatus as AvcStatus,
    PendingExportAttributeChangeType as AvcType, PendingExportChangeType, PendingExportStatus,
};
use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres as Pg;
use uuid::Uuid;

use super::CreatedAt;
use super::copy::{Closed, CopyWriter, copy_in};
use super::data::{ObjectIds, Spaces, UserValues, group_dn, uuid};
use super::system::{GROUP_OBJECT_TYPE, SystemIds, USER_OBJECT_TYPE};
use super::template::GroupLayout;
use crate::error::{Result, SqlContext, TestkitError};

/// `MetaverseObjects.TypeId` of users. The fixture has no `MetaverseObjectTypes` table (the foreign
/// key is left out), so fixed numbers stand in for JIM's built-in types.
pub const METAVERSE_USER_TYPE_ID: i32 = 1;
/// `MetaverseObjects.TypeId` of groups.
pub const METAVERSE_GROUP_TYPE_ID: i32 = 2;

/// Attribute ids the row generators need, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct HotIds {
    pub cs: i32,
    pub partition: i32,
    pub user_type: i32,
    pub group_type: i32,
    pub user_dn: i32,
    pub user_entry_uuid: i32,
    pub user_object_class: i32,
    /// In the order of [`UserValues::text_attributes`].
    pub user_text: [i32; 10],
    pub user_manager: i32,
    pub group_dn: i32,
    pub group_entry_uuid: i32,
    pub group_object_class: i32,
    pub group_cn: i32,
    pub group_description: i32,
    pub group_member: i32,
}

impl HotIds {
    pub fn new(ids: &SystemIds) -> Result<Self> {
        let user = |name: &str| {
            ids.user_attributes.get(name).copied().ok_or_else(|| {
                TestkitError::Seed(format!("{USER_OBJECT_TYPE} has no attribute {name}"))
            })
        };
        let group = |name: &str| {
            ids.group_attributes.get(name).copied().ok_or_else(|| {
                TestkitError::Seed(format!("{GROUP_OBJECT_TYPE} has no attribute {name}"))
            })
        };
        let probe = UserValues {
            index: 0,
            uid: String::new(),
            given_name: "",
            sn: "",
            display_name: String::new(),
            mail: String::new(),
            title: "",
            department: "",
            company: "",
            employee_number: String::new(),
            manager: None,
        };
        let mut user_text = [0; 10];
        for (slot, (name, _)) in user_text.iter_mut().zip(probe.text_attributes()) {
            *slot = user(name)?;
        }
        Ok(Self {
            cs: ids.connected_system_id,
            partition: ids.partition_id,
            user_type: ids.user_type_id,
            group_type: ids.group_type_id,
            user_dn: user("distinguishedName")?,
            user_entry_uuid: user("entryUUID")?,
            user_object_class: user("objectClass")?,
            user_text,
            user_manager: user("manager")?,
            group_dn: group("distinguishedName")?,
            group_entry_uuid: group("entryUUID")?,
            group_object_class: group("objectClass")?,
            group_cn: group("cn")?,
            group_description: group("description")?,
            group_member: group("member")?,
        })
    }
}

/// Everything a row generator needs, shared by the producer threads.
#[derive(Debug)]
pub(crate) struct Plan {
    pub spaces: Spaces,
    pub layout: GroupLayout,
    pub suffix: String,
    pub domain: String,
    pub hot: HotIds,
    pub base_time: DateTime<Utc>,
    pub created_at: CreatedAt,
    pub metaverse: bool,
    /// Load with `session_replication_role = replica`, which skips the per-row foreign-key
    /// triggers (the rows are consistent by construction).
    pub skip_foreign_key_triggers: bool,
}

impl Plan {
    pub fn users(&self) -> usize {
        self.layout.users()
    }

    pub fn objects(&self) -> usize {
        self.layout.users() + self.layout.groups()
    }

    /// `PendingExports.CreatedAt` (and the CSO's `Created`) of object `k` (users, then groups).
    pub fn staged_at(&self, k: usize) -> DateTime<Utc> {
        staged_at(self.base_time, self.created_at, self.users(), k)
    }

    /// When the MVOs were projected: an hour before staging began.
    pub fn projected_at(&self) -> DateTime<Utc> {
        self.base_time - chrono::Duration::hours(1)
    }
}

/// `CreatedAt` of object `k` (users `0..users`, then groups) under `mode`, from `base`.
pub(crate) fn staged_at(
    base: DateTime<Utc>,
    mode: CreatedAt,
    users: usize,
    k: usize,
) -> DateTime<Utc> {
    let instant = match mode {
        CreatedAt::Increasing => k,
        CreatedAt::Identical => 0,
        CreatedAt::Shared(n) => {
            let n = n.max(1) as usize;
            // Groups start a fresh run, so every user is staged no later than any group.
            if k < users {
                k / n
            } else {
                users.div_ceil(n) + (k - users) / n
            }
        }
    };
    base + chrono::Duration::milliseconds(instant as i64)
}

/// Time spent on each part of a seed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedTimings {
    /// Connector definition, connected system, settings, containers, object types, attributes.
    pub configuration: Duration,
    /// `MetaverseObjects`.
    pub metaverse_objects: Duration,
    /// `ConnectedSystemObjects`.
    pub connected_system_objects: Duration,
    /// The CSOs' DN values and the pending exports (loaded side by side).
    pub dn_values_and_pending_exports: Duration,
    /// `PendingExportAttributeValueChanges`.
    pub attribute_changes: Duration,
    /// `ANALYZE` of the loaded tables.
    pub analyze: Duration,
    /// Everything.
    pub total: Duration,
}

/// Rows the load wrote, by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Loaded {
    pub metaverse_objects: u64,
    pub connected_system_objects: u64,
    pub cso_values: u64,
    pub pending_exports: u64,
    pub attribute_changes: u64,
}

type Conn = PoolConnection<Pg>;

async fn acquire(pool: &PgPool) -> Result<Conn> {
    pool.acquire()
        .await
        .sql_context(|| "acquiring a connection for the seed load".into())
}

/// Which object an index `k` of the load order is.
enum Obj {
    User(usize),
    Group(usize),
}

fn object(plan: &Plan, k: usize) -> Obj {
    if k < plan.users() {
        Obj::User(k)
    } else {
        Obj::Group(k - plan.users())
    }
}

pub(crate) const MVO_COLUMNS: [&str; 8] = [
    "Id",
    "Created",
    "TypeId",
    "Status",
    "DeletionInitiatedByType",
    "Origin",
    "CachedDisplayName",
    "ScopeReviewPending",
];

fn produce_mvos(
    plan: &Plan,
    range: Range<usize>,
    w: &mut CopyWriter,
) -> std::result::Result<(), Closed> {
    let projected = plan.projected_at();
    for k in range.clone() {
        let (id, type_id, name) = match object(plan, k) {
            Obj::User(i) => (
                plan.spaces.user_mvo(i),
                METAVERSE_USER_TYPE_ID,
                UserValues::new(&plan.spaces, &plan.domain, i).display_name,
            ),
            Obj::Group(g) => {
                let Some(rule) = plan.layout.group(g) else {
                    continue;
                };
                (plan.spaces.group_mvo(g), METAVERSE_GROUP_TYPE_ID, rule.cn())
            }
        };
        w.row(MVO_COLUMNS.len() as i16)?;
        w.uuid(id);
        w.timestamptz(projected);
        w.i32(type_id);
        w.i32(MetaverseObjectStatus::Normal.as_i32());
        w.i32(0); // DeletionInitiatedByType: NotSet
        w.i32(MetaverseObjectOrigin::Projected.as_i32());
        w.text(&name);
        w.bool(false);
    }
    Ok(())
}

pub(crate) const CSO_COLUMNS: [&str; 12] = [
    "Id",
    "Created",
    "TypeId",
    "ConnectedSystemId",
    "ExternalIdAttributeId",
    "SecondaryExternalIdAttributeId",
    "Status",
    "MetaverseObjectId",
    "JoinType",
    "DateJoined",
    "PartitionId",
    "ScopeReviewPending",
];

fn ids_of(plan: &Plan, k: usize) -> ObjectIds {
    match object(plan, k) {
        Obj::User(i) => plan.spaces.user_ids(i).0,
        Obj::Group(g) => plan.spaces.group_ids(g).0,
    }
}

fn produce_csos(
    plan: &Plan,
    range: Range<usize>,
    w: &mut CopyWriter,
) -> std::result::Result<(), Closed> {
    let h = &plan.hot;
    for k in range.clone() {
        let ids = ids_of(plan, k);
        let (type_id, anchor, secondary) = match object(plan, k) {
            Obj::User(_) => (h.user_type, h.user_entry_uuid, h.user_dn),
            Obj::Group(_) => (h.group_type, h.group_entry_uuid, h.group_dn),
        };
        let at = plan.staged_at(k);
        w.row(CSO_COLUMNS.len() as i16)?;
        w.uuid(ids.cso);
        w.timestamptz(at);
        w.i32(type_id);
        w.i32(h.cs);
        w.i32(anchor);
        w.i32(secondary);
        w.i32(ConnectedSystemObjectStatus::PendingProvisioning.as_i32());
        w.uuid(ids.mvo);
        w.i32(ConnectedSystemObjectJoinType::Provisioned.as_i32());
        w.timestamptz(at);
        w.i32(h.partition);
        w.bool(false);
    }
    Ok(())
}

pub(crate) const CSO_VALUE_COLUMNS: [&str; 4] = [
    "Id",
    "AttributeId",
    "ConnectedSystemObjectId",
    "StringValue",
];

fn produce_cso_dn_values(
    plan: &Plan,
    range: Range<usize>,
    w: &mut CopyWriter,
) -> std::result::Result<(), Closed> {
    for k in range.clone() {
        let ids = ids_of(plan, k);
        let (attribute, dn) = match object(plan, k) {
            Obj::User(i) => (
                plan.hot.user_dn,
                UserValues::new(&plan.spaces, &plan.domain, i).dn(&plan.suffix),
            ),
            Obj::Group(g) => {
                let Some(rule) = plan.layout.group(g) else {
                    continue;
                };
                (plan.hot.group_dn, group_dn(&rule, &plan.suffix))
            }
        };
        w.row(CSO_VALUE_COLUMNS.len() as i16)?;
        w.uuid(ids.cso_dn_value);
        w.i32(attribute);
        w.uuid(ids.cso);
        w.text(&dn);
    }
    Ok(())
}

pub(crate) const PE_COLUMNS: [&str; 11] = [
    "Id",
    "ConnectedSystemId",
    "ConnectedSystemObjectId",
    "ChangeType",
    "Status",
    "ErrorCount",
    "MaxRetries",
    "SourceMetaverseObjectId",
    "HasUnresolvedReferences",
    "CreatedAt",
    "QueuedByRunProfileExecutionItemId",
];

fn produce_pending_exports(
    plan: &Plan,
    range: Range<usize>,
    w: &mut CopyWriter,
) -> std::result::Result<(), Closed> {
    for k in range.clone() {
        let ids = ids_of(plan, k);
        // Every group has at least one member, so every group export carries references; a user's
        // does when it has a manager.
        let references = match object(plan, k) {
            Obj::User(i) => plan.spaces.manager_of(i).is_some(),
            Obj::Group(_) => true,
        };
        w.row(PE_COLUMNS.len() as i16)?;
        w.uuid(ids.pending_export);
        w.i32(plan.hot.cs);
        w.uuid(ids.cso);
        w.i32(PendingExportChangeType::Create.as_i32());
        w.i32(PendingExportStatus::Pending.as_i32());
        w.i32(0);
        w.i32(DEFAULT_MAX_RETRIES);
        w.uuid(ids.mvo);
        w.bool(references);
        w.timestamptz(plan.staged_at(k));
        w.uuid(ids.queued_by);
    }
    Ok(())
}

pub(crate) const AVC_COLUMNS: [&str; 8] = [
    "Id",
    "PendingExportId",
    "AttributeId",
    "StringValue",
    "UnresolvedReferenceValue",
    "ChangeType",
    "Status",
    "ExportAttemptCount",
];

/// Writes one pending attribute change: a text value or an unresolved reference (an MVO id).
pub(crate) fn avc(
    w: &mut CopyWriter,
    id: Uuid,
    pending_export: Uuid,
    attribute: i32,
    value: AvcValue<'_>,
    change: AvcType,
) -> std::result::Result<(), Closed> {
    w.row(AVC_COLUMNS.len() as i16)?;
    w.uuid(id);
    w.uuid(pending_export);
    w.i32(attribute);
    match value {
        AvcValue::Text(s) => {
            w.text(s);
            w.null();
        }
        AvcValue::Reference(mvo) => {
            let mut buf = Uuid::encode_buffer();
            w.null();
            w.text(mvo.hyphenated().encode_lower(&mut buf));
        }
    }
    w.i32(change.as_i32());
    w.i32(AvcStatus::Pending.as_i32());
    w.i32(0);
    Ok(())
}

/// The value slot of a staged change.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AvcValue<'a> {
    /// `StringValue`.
    Text(&'a str),
    /// `UnresolvedReferenceValue` = the referenced MVO's id.
    Reference(Uuid),
}

fn produce_changes(
    plan: &Plan,
    range: Range<usize>,
    w: &mut CopyWriter,
) -> std::result::Result<(), Closed> {
    let h = &plan.hot;
    for k in range {
        match object(plan, k) {
            Obj::User(i) => {
                let (ids, mut r) = plan.spaces.user_ids(i);
                let pe = ids.pending_export;
                let u = UserValues::new(&plan.spaces, &plan.domain, i);
                let dn = u.dn(&plan.suffix);
                avc(
                    w,
                    uuid(&mut r),
                    pe,
                    h.user_dn,
                    AvcValue::Text(&dn),
                    AvcType::Update,
                )?;
                avc(
                    w,
                    uuid(&mut r),
                    pe,
                    h.user_object_class,
                    AvcValue::Text(USER_OBJECT_TYPE),
                    AvcType::Add,
                )?;
                for (attribute, (_, value)) in h.user_text.iter().zip(u.text_attributes()) {
                    avc(
                        w,
                        uuid(&mut r),
                        pe,
                        *attribute,
                        AvcValue::Text(value),
                        AvcType::Update,
                    )?;
                }
                if let Some(m) = u.manager {
                    let target = plan.spaces.user_mvo(m);
                    avc(
                        w,
                        uuid(&mut r),
                        pe,
                        h.user_manager,
                        AvcValue::Reference(target),
                        AvcType::Update,
                    )?;
                }
            }
            Obj::Group(g) => {
                let Some(rule) = plan.layout.group(g) else {
                    continue;
                };
                let (ids, mut r) = plan.spaces.group_ids(g);
                let pe = ids.pending_export;
                let dn = group_dn(&rule, &plan.suffix);
                avc(
                    w,
                    uuid(&mut r),
                    pe,
                    h.group_dn,
                    AvcValue::Text(&dn),
                    AvcType::Update,
                )?;
                avc(
                    w,
                    uuid(&mut r),
                    pe,
                    h.group_object_class,
                    AvcValue::Text(GROUP_OBJECT_TYPE),
                    AvcType::Add,
                )?;
                avc(
                    w,
                    uuid(&mut r),
                    pe,
                    h.group_cn,
                    AvcValue::Text(&rule.cn()),
                    AvcType::Update,
                )?;
                avc(
                    w,
                    uuid(&mut r),
                    pe,
                    h.group_description,
                    AvcValue::Text(&rule.description()),
                    AvcType::Update,
                )?;
                for u in rule.members() {
                    avc(
                        w,
                        uuid(&mut r),
                        pe,
                        h.group_member,
                        AvcValue::Reference(plan.spaces.user_mvo(u)),
                        AvcType::Add,
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// Attribute changes per object, for splitting the change load into balanced ranges.
fn change_weight(plan: &Plan, k: usize) -> u64 {
    match object(plan, k) {
        Obj::User(_) => 12,
        Obj::Group(g) => 4 + plan.layout.group(g).map_or(0, |r| r.member_count() as u64),
    }
}

/// Splits the objects into `parts` contiguous ranges with about equal numbers of changes.
fn balanced_ranges(plan: &Plan, parts: usize) -> Vec<Range<usize>> {
    let n = plan.objects();
    let parts = parts.clamp(1, n.max(1));
    let total: u64 = (0..n).map(|k| change_weight(plan, k)).sum();
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    let mut acc = 0u64;
    for k in 0..n {
        acc += change_weight(plan, k);
        let goal = total * (ranges.len() as u64 + 1) / parts as u64;
        if acc >= goal && ranges.len() + 1 < parts {
            ranges.push(start..k + 1);
            start = k + 1;
        }
    }
    ranges.push(start..n);
    ranges
}

/// One `COPY` in its own transaction; with `skip_foreign_key_triggers`, `SET LOCAL` keeps the
/// replica role from outliving it, whatever happens.
async fn copy_table<F>(
    pool: PgPool,
    plan: &Plan,
    table: &'static str,
    columns: &'static [&'static str],
    produce: F,
) -> Result<u64>
where
    F: FnOnce(&mut CopyWriter) -> std::result::Result<(), Closed> + Send + 'static,
{
    let mut conn = acquire(&pool).await?;
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .sql_context(|| format!("starting the load of {table}"))?;
    if plan.skip_foreign_key_triggers {
        sqlx::query("SET LOCAL session_replication_role = replica")
            .execute(&mut *tx)
            .await
            .sql_context(|| "skipping foreign-key triggers for the load".into())?;
    }
    let rows = copy_in(&mut tx, table, columns, produce).await?;
    tx.commit()
        .await
        .sql_context(|| format!("committing the load of {table}"))?;
    Ok(rows)
}

/// Produces the rows of one table for a range of objects.
type Producer = fn(&Plan, Range<usize>, &mut CopyWriter) -> std::result::Result<(), Closed>;

/// Loads one table over one connection per range, side by side.
async fn copy_ranges(
    pool: &PgPool,
    plan: &Arc<Plan>,
    table: &'static str,
    columns: &'static [&'static str],
    produce: Producer,
    ranges: Vec<Range<usize>>,
) -> Result<u64> {
    let mut tasks = tokio::task::JoinSet::new();
    for range in ranges {
        let (pool, plan) = (pool.clone(), plan.clone());
        tasks.spawn(async move {
            let p = plan.clone();
            copy_table(pool, &plan, table, columns, move |w| produce(&p, range, w)).await
        });
    }
    let mut rows = 0;
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(n)) => rows += n,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(join) => {
                first_error.get_or_insert(TestkitError::Seed(format!("loading {table}: {join}")));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

/// Splits the objects into `parts` ranges of about equal size.
fn even_ranges(plan: &Plan, parts: usize) -> Vec<Range<usize>> {
    let n = plan.objects();
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|p| n * p / parts..n * (p + 1) / parts)
        .collect()
}

/// Whether the current role may skip foreign-key triggers (`session_replication_role` is a
/// superuser setting unless granted).
pub(crate) async fn may_skip_foreign_key_triggers(pool: &PgPool) -> Result<bool> {
    let superuser: Option<bool> =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_optional(pool)
            .await
            .sql_context(|| "checking the role's privileges".into())?;
    Ok(superuser.unwrap_or(false))
}

/// Loads every object. Tables whose foreign keys point at each other load in order, each `COPY`
/// committing on its own; every table loads over `parallelism` connections side by side.
pub(crate) async fn load(
    pool: &PgPool,
    plan: Arc<Plan>,
    parallelism: usize,
    timings: &mut SeedTimings,
) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    let even = even_ranges(&plan, parallelism);

    let t = Instant::now();
    if plan.metaverse {
        loaded.metaverse_objects = copy_ranges(
            pool,
            &plan,
            "MetaverseObjects",
            &MVO_COLUMNS,
            produce_mvos,
            even.clone(),
        )
        .await?;
    }
    timings.metaverse_objects = t.elapsed();

    let t = Instant::now();
    loaded.connected_system_objects = copy_ranges(
        pool,
        &plan,
        "ConnectedSystemObjects",
        &CSO_COLUMNS,
        produce_csos,
        even.clone(),
    )
    .await?;
    timings.connected_system_objects = t.elapsed();

    let t = Instant::now();
    let (values, exports) = tokio::try_join!(
        copy_ranges(
            pool,
            &plan,
            "ConnectedSystemObjectAttributeValues",
            &CSO_VALUE_COLUMNS,
            produce_cso_dn_values,
            even.clone(),
        ),
        copy_ranges(
            pool,
            &plan,
            "PendingExports",
            &PE_COLUMNS,
            produce_pending_exports,
            even,
        ),
    )?;
    loaded.cso_values = values;
    loaded.pending_exports = exports;
    timings.dn_values_and_pending_exports = t.elapsed();

    let t = Instant::now();
    loaded.attribute_changes = copy_ranges(
        pool,
        &plan,
        "PendingExportAttributeValueChanges",
        &AVC_COLUMNS,
        produce_changes,
        balanced_ranges(&plan, parallelism),
    )
    .await?;
    timings.attribute_changes = t.elapsed();
    Ok(loaded)
}

/// Refreshes planner statistics of the loaded tables, so plans over the fresh rows are realistic.
pub(crate) async fn analyze(pool: &PgPool) -> Result<()> {
    sqlx::raw_sql(
        "ANALYZE \"MetaverseObjects\", \"ConnectedSystemObjects\", \
         \"ConnectedSystemObjectAttributeValues\", \"PendingExports\", \
         \"PendingExportAttributeValueChanges\"",
    )
    .execute(pool)
    .await
    .sql_context(|| "analyzing the seeded tables".into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::template::Template;

    fn plan(template: Template, created_at: CreatedAt) -> Plan {
        Plan {
            spaces: Spaces::new(1, "dc=example,dc=org"),
            layout: template.layout(),
            suffix: "dc=example,dc=org".into(),
            domain: "example.org".into(),
            hot: HotIds {
                cs: 1,
                partition: 1,
                user_type: 1,
                group_type: 2,
                user_dn: 1,
                user_entry_uuid: 2,
                user_object_class: 3,
                user_text: [4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
                user_manager: 14,
                group_dn: 15,
                group_entry_uuid: 16,
                group_object_class: 17,
                group_cn: 18,
                group_description: 19,
                group_member: 20,
            },
            base_time: DateTime::<Utc>::default(),
            created_at,
            metaverse: true,
            skip_foreign_key_triggers: false,
        }
    }

    #[test]
    fn ranges_cover_every_object_once() {
        let p = plan(Template::Medium, CreatedAt::Increasing);
        for parts in [1, 2, 3, 7] {
            for ranges in [even_ranges(&p, parts), balanced_ranges(&p, parts)] {
                assert_eq!(ranges.len(), parts);
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[parts - 1].end, p.objects());
                assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
            }
        }
    }

    #[test]
    fn shared_timestamps_never_mix_users_and_groups() {
        let p = plan(Template::Small, CreatedAt::Shared(7));
        let users = p.users();
        assert!(p.staged_at(users - 1) < p.staged_at(users));
        assert_eq!(p.staged_at(0), p.staged_at(6));
        assert!(p.staged_at(6) < p.staged_at(7));
        let p = plan(Template::Small, CreatedAt::Identical);
        assert_eq!(p.staged_at(0), p.staged_at(p.objects() - 1));
        let p = plan(Template::Small, CreatedAt::Increasing);
        assert!((1..p.objects()).all(|k| p.staged_at(k - 1) < p.staged_at(k)));
    }
}
