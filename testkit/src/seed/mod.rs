//! Deterministic seed data: exactly what JIM's staging writes for an OpenLDAP target before an export
//! run, sized by JIM's scale templates, plus JIM's confirming import and follow-up changes.
//!
//! # What a seed writes
//!
//! [`seed`] writes into a database holding JIM's schema (e.g. [`crate::Postgres::jim_database`]):
//!
//! - **Configuration**: the `JIM LDAP Connector` row of `ConnectorDefinitions` (reused when present)
//!   and its twenty `ConnectorDefinitionSettings` (schema.md §2.10); a `ConnectedSystems` row
//!   (`UnresolvedReferenceHandling` 0 Error) with one `ConnectedSystemSettingValues` row per setting
//!   (`Export Concurrency` 16, `Modify Batch Size` 1000, `Delete Behaviour` Delete,
//!   `Group Placeholder Member DN` cn=placeholder, a fake `$JIM$v1$` password payload, ...); a
//!   partition for the suffix with containers `ou=People`, `ou=Groups` and `ou=Alumni` (the target of
//!   follow-up moves); an export run profile (`RunType` 5); object types `inetOrgPerson` and
//!   `groupOfNames`. Both types have `distinguishedName` (Text, single-valued, secondary external
//!   id), `entryUUID` (Text, external id, read-only) and `objectClass` (multi-valued). Users add the
//!   Scenario 8 OpenLDAP user attributes `uid`, `employeeNumber`, `givenName`, `sn`, `displayName`,
//!   `cn`, `mail`, `title`, `departmentNumber`, `o` (single-valued Text) and `manager` (Reference,
//!   single-valued); groups add `cn`, `description` and `member` (Reference, multi-valued). References
//!   declare the user type as their target. JIM stages by the declared plurality; the text
//!   attributes are declared single-valued (the stock schema marks most of them multi-valued) so a
//!   changed value is staged as one `Update` (LDAP replace).
//! - **One MVO per object** (`TypeId` 1 users, 2 groups: fixed numbers, the fixture has no
//!   `MetaverseObjectTypes`), `Origin` Projected, `CachedDisplayName` = `displayName` or `cn`.
//! - **One CSO per object**, `Status` 2 PendingProvisioning, `JoinType` 2 Provisioned, joined to its
//!   MVO, with `ExternalIdAttributeId` = `entryUUID` and `SecondaryExternalIdAttributeId` =
//!   `distinguishedName`, and one attribute value: its DN (JIM gives a PendingProvisioning CSO its DN
//!   up front, export-semantics §2.3 step 4; no `entryUUID` yet).
//! - **One Create pending export per object** (`Status` 0, `ErrorCount` 0, `MaxRetries` 5,
//!   `SourceMetaverseObjectId` = the MVO, `ProvisioningSyncRuleId` NULL because the fixture has no
//!   `SyncRules`, `QueuedByRunProfileExecutionItemId` a random id), users first, then groups, in
//!   `CreatedAt` order ([`CreatedAt`] chooses distinct, shared or identical timestamps).
//!   `HasUnresolvedReferences` is true exactly when a change carries a reference: every group, and
//!   users with a manager.
//! - **One attribute change per value**: `distinguishedName` (Update), `objectClass` (Add of
//!   `inetOrgPerson` / `groupOfNames`), each single-valued attribute (Update), each member (Add). A
//!   reference holds the referenced **MVO id** in `UnresolvedReferenceValue` with every typed slot
//!   NULL. `Status` 0, `ExportAttemptCount` 0.
//!
//! # The data
//!
//! Users follow Scenario 8's OpenLDAP populator (tests-and-scale §2.4): user `i` has
//! `uid = first.last<i>` (names from two lists of twenty), `cn` = `displayName` = `First Last (S8-i)`,
//! `employeeNumber = S8-i`, `mail = <uid>@<suffix's domain>`, one of ten titles round-robin,
//! `departmentNumber` = department `i mod 10`, `o` = company `i mod 5`, DN
//! `uid=<uid>,ou=People,<suffix>`. About one user in ten (chosen by the seed) has a `manager`: a user
//! with a lower index.
//!
//! Groups are `cn=<Prefix>-<Name>,ou=Groups,<suffix>` with a `description`, created per category in
//! the populator's order: companies (`i mod 5`, at most five), departments (the first ten keyed by
//! `i mod 10`, the rest tier-sized), locations, projects, all-staff, divisions, applications,
//! distribution lists, roles. Tier-sized groups take a contiguous, wrapping slice of the users,
//! starting at `index × stride mod users` (strides 19, 29, 11, 31, 17, 23, 13; all-staff at 0), sized
//! by the category's tier table indexed by `index mod len` (fractions of the user count for
//! all-staff, divisions and locations, floored; absolute sizes capped at the user count otherwise),
//! plus the group's initial member (user `index mod users`; for keyed groups the first user with
//! the key), which `groupOfNames` needs. The tier tables are JIM's (`Get-LongTailGroupSize`):
//!
//! | category | tiers |
//! |---|---|
//! | all-staff | 100 %, 80 % |
//! | division | 25, 20, 18, 15, 12, 10, 8, 7, 6, 5 % |
//! | location | 10, 8, 6, 5, 4, 3, 2.5, 2, 1.5, 1.2, 1, 0.8, 0.6, 0.4, 0.2 % |
//! | department | 3000, 2500, 2000, 1500, 1200, 1000, 800, 600, 500, 400, 300, 250, 200 |
//! | application | 300, 200, 150, 100, 80, 60, 50, 40, 30, 25, 20, 15, 10 |
//! | project | 30, 25, 20, 18, 15, 12, 10, 8, 7, 6, 5, 8, 10, 50, 5 |
//! | distribution list | 150, 120, 100, 80, 60, 50, 40, 30, 25, 20, 15, 12, 10 |
//! | role | 500, 300, 200, 150, 100, 80, 60, 50, 40, 30, 25, 20 |
//!
//! Resulting sizes (users / groups / memberships): Nano 3 / 6 / 10; Micro 10 / 12 / 60; Small
//! 100 / 31 / 490; Medium 1,000 / 118 / 3,758; MediumLarge 5,000 / 273 / 16,096; Large
//! 10,000 / 527 / 37,994 (530 declared, the populator has five company keys);
//! Scale100k50Groups 100,000 / 50 / 233,491; Scale1m80Groups 1,000,000 / 70 / 2,330,848;
//! Scale200k10kGroups 200,000 / 9,984 / 1,624,626.
//!
//! **Scale100k5kGroups** has 100,000 users, **5,027 groups and 751,767 memberships**, in exactly
//! JIM's measured size buckets (<50: 3,698; 50–199: 1,022; 200–999: 232; 1,000–4,999: 49;
//! 5,000–19,999: 22; 20,000–49,999: 2; ≥50,000: 2). JIM measured 751,768 memberships: one more.
//! Under these rules the initial member already lies inside the slice of nine tier-sized groups
//! (both all-staff groups, the first long-tail department and the first location, project,
//! division, application, distribution list and role); one of them counting its initial member
//! separately would give JIM's figure, so the populator revision JIM measured most likely differed
//! there. The bucket counts are unaffected.
//!
//! # Determinism
//!
//! Every id comes from a random stream (`fastrand::Rng::with_seed`) keyed by the seed and the
//! object's kind and index, so a seed, template and suffix always give identical rows, ids
//! included, and any object's ids are computable on their own ([`SeededSystem::user`]). MVO ids
//! depend on the seed only, so a second system (another suffix, [`SeedOptions::metaverse_objects`]
//! off) can be provisioned from the same MVOs. Timestamps derive from [`SeedOptions::base_time`].
//!
//! # Size and speed
//!
//! Rows stream through binary `COPY` in ~1 MiB chunks, generated on a blocking thread while
//! PostgreSQL stores the previous chunk; each table is a fresh pass over the objects, so memory does
//! not grow with the template. Tables load in foreign-key order, each over
//! [`SeedOptions::parallelism`] connections (ranges of objects, one transaction each). As a
//! superuser the load skips PostgreSQL's per-row foreign-key triggers
//! ([`SeedOptions::skip_foreign_key_triggers`]); that halves the time and the rows are identical
//! either way. [`SeededSystem::timings`] reports each phase. Measured on the 2-core development
//! machine while other builds shared it (load average 3 to 9): Scale100k5kGroups (105,027
//! objects, 1,981,990 changes) in 29 to 36 s; Scale1m80Groups (1,000,070 objects, 14,431,433
//! changes) in about 6 minutes (366 s), with a peak RSS of 53 MB for the seeding process.
//! PostgreSQL's per-row work (heap and three index insertions per change) is the bound; a 2 GB
//! `shared_buffers` instead of the test cluster's 256 MB changed little.
//!
//! # Active Directory targets
//!
//! [`seed_ad`] (with [`SeedOptions::active_directory`], [`Target::ActiveDirectory`]) stages the same
//! template in the shape of Scenario 8's Samba AD target: `user` / `group`, `objectGUID` (Guid) and
//! `distinguishedName` anchors, `sAMAccountName`, `userPrincipalName`, `userAccountControl` 514,
//! `member`, `manager` and `managedBy`, and DNs that need every kind of escaping (see the `ad`
//! module). [`stage_ad_exports`] stages explicit follow-ups on it and [`confirm_ad_exported`]
//! confirms as [`confirm_exported`] does.
//!
//! # After the seed
//!
//! [`confirm_exported`] does what JIM's confirming import does with exported rows;
//! [`confirm_all_as_exported`] pretends the engine exported everything first; [`stage_follow_ups`]
//! stages a round of updates, renames, moves, membership and manager changes and deletes, and
//! returns what it staged; [`SeededSystem::expected_directory`] and [`StagedFollowUps::apply`] give
//! the directory content a correct export produces.

mod ad;
mod confirm;
mod copy;
mod data;
mod expected;
mod follow_ups;
mod load;
mod system;
mod template;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgPool;

pub use ad::{
    AdChange, AdExport, AdGroup, AdUser, AdValue, SeededAdSystem, confirm_ad_exported,
    confirm_all_ad_as_exported, seed_ad, stage_ad_exports,
};
pub use confirm::{ConfirmReport, ExportShortcutReport};
pub use data::{ObjectIds, UserValues};
pub use expected::{DirectoryState, Entry};
pub use follow_ups::{
    FollowUp, FollowUpKind, FollowUps, SeedObject, StagedChange, StagedExport, StagedFollowUps,
    StagedValue,
};
pub use load::{METAVERSE_GROUP_TYPE_ID, METAVERSE_USER_TYPE_ID, SeedTimings};
pub use system::{
    FAKE_PASSWORD_PAYLOAD, GROUP_OBJECT_TYPE, LDAP_CONNECTOR_NAME, SystemIds, USER_OBJECT_TYPE,
};
pub use template::{
    Category, GroupLayout, GroupRule, GroupScale, Membership, Template, size_buckets,
};

use crate::error::{Result, SqlContext, TestkitError};
use data::{Spaces, group_dn, mail_domain, manager_count, membership_count};
use load::{HotIds, Plan};

/// How the pending exports' `CreatedAt` values are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CreatedAt {
    /// Each export 1 ms after the previous one, in object order (users, then groups).
    #[default]
    Increasing,
    /// Runs of this many consecutive exports share one instant (runs 1 ms apart; groups start a
    /// new run), so keyset paging meets ties on `CreatedAt` and falls back to `Id`.
    Shared(u32),
    /// Every export has the same `CreatedAt`: `Id` alone orders them.
    Identical,
}

/// The kind of directory a seeded system targets: it decides the object types, attributes, anchors,
/// containers and DNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// OpenLDAP: `inetOrgPerson` / `groupOfNames`, `entryUUID` anchor ([`seed`]).
    #[default]
    OpenLdap,
    /// Active Directory (Samba AD): `user` / `group`, `objectGUID` anchor ([`seed_ad`]).
    ActiveDirectory,
}

impl Target {
    /// The name used in the seeded system's name and description.
    pub const fn name(self) -> &'static str {
        match self {
            Target::OpenLdap => "OpenLDAP",
            Target::ActiveDirectory => "Samba AD",
        }
    }
}

/// What to seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedOptions {
    /// The scale template.
    pub template: Template,
    /// The kind of directory the system targets.
    pub target: Target,
    /// The seed of every id and random choice.
    pub seed: u64,
    /// The directory suffix (`dc=example,dc=org`); containers and DNs live under it.
    pub suffix: String,
    /// `ConnectedSystems.Name`; `None` gives `OpenLDAP <suffix>`.
    pub system_name: Option<String>,
    /// The `Host` setting.
    pub host: String,
    /// The `Port` setting.
    pub port: u16,
    /// How `CreatedAt` values are spread.
    pub created_at: CreatedAt,
    /// The instant of the first staged export (MVOs are projected an hour earlier).
    pub base_time: DateTime<Utc>,
    /// Create the MVOs. Turn off to seed a second system (another suffix) onto the MVOs of an
    /// earlier seed with the same seed and template.
    pub metaverse_objects: bool,
    /// Connections loading the attribute changes side by side.
    pub parallelism: usize,
    /// Run `ANALYZE` on the loaded tables afterwards.
    pub analyze: bool,
    /// Skip PostgreSQL's per-row foreign-key triggers while loading (`session_replication_role =
    /// replica`, transaction-local), when the role is a superuser; the rows are consistent by
    /// construction and identical either way. The triggers take a row lock on the referenced row
    /// for every inserted row and dominate the load time otherwise.
    pub skip_foreign_key_triggers: bool,
}

impl Default for SeedOptions {
    fn default() -> Self {
        Self::new(Template::Medium)
    }
}

impl SeedOptions {
    /// Defaults for `template`: seed 1, suffix `dc=example,dc=org`, host `localhost:389`, increasing
    /// timestamps from 2026-01-01T00:00:00Z, MVOs created, two loading connections, `ANALYZE`,
    /// foreign-key triggers skipped where allowed.
    pub fn new(template: Template) -> Self {
        Self {
            template,
            target: Target::OpenLdap,
            seed: 1,
            suffix: "dc=example,dc=org".into(),
            system_name: None,
            host: "localhost".into(),
            port: 389,
            created_at: CreatedAt::Increasing,
            base_time: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            metaverse_objects: true,
            parallelism: 2,
            analyze: true,
            skip_foreign_key_triggers: true,
        }
    }

    /// Defaults for an Active Directory target under `base_dn` (`DC=example,DC=test`): LDAPS on 636
    /// and the `user` / `group` shape of Scenario 8's Samba AD target ([`seed_ad`]).
    pub fn active_directory(template: Template, base_dn: impl Into<String>) -> Self {
        Self {
            target: Target::ActiveDirectory,
            port: 636,
            ..Self::new(template).with_suffix(base_dn)
        }
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the suffix.
    pub fn with_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// Sets how `CreatedAt` values are spread.
    pub fn with_created_at(mut self, created_at: CreatedAt) -> Self {
        self.created_at = created_at;
        self
    }

    /// Sets the `Host` and `Port` settings.
    pub fn with_directory(mut self, host: impl Into<String>, port: u16) -> Self {
        self.host = host.into();
        self.port = port;
        self
    }

    /// Sets whether MVOs are created.
    pub fn with_metaverse_objects(mut self, create: bool) -> Self {
        self.metaverse_objects = create;
        self
    }

    fn validate(&self) -> Result<()> {
        let ok = !self.suffix.trim().is_empty()
            && self.suffix.split(',').all(|rdn| {
                rdn.split_once('=')
                    .is_some_and(|(t, v)| !t.trim().is_empty() && !v.trim().is_empty())
            });
        if !ok {
            return Err(TestkitError::Seed(format!(
                "suffix {:?} is not a DN like dc=example,dc=org",
                self.suffix
            )));
        }
        Ok(())
    }
}

/// Row counts of a seed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedCounts {
    /// Users.
    pub users: u64,
    /// Groups.
    pub groups: u64,
    /// Member values over all groups.
    pub memberships: u64,
    /// Users with a manager.
    pub managers: u64,
    /// `MetaverseObjects` rows written (0 when MVOs were reused).
    pub metaverse_objects: u64,
    /// `ConnectedSystemObjects` rows.
    pub connected_system_objects: u64,
    /// `ConnectedSystemObjectAttributeValues` rows (one DN each).
    pub cso_values: u64,
    /// `PendingExports` rows.
    pub pending_exports: u64,
    /// `PendingExportAttributeValueChanges` rows.
    pub attribute_changes: u64,
    /// Changes carrying a reference (members and managers).
    pub reference_changes: u64,
    /// Pending exports with `HasUnresolvedReferences` (groups and users with a manager).
    pub reference_bearing_exports: u64,
}

/// A seeded user: its ids, DN and values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededUser {
    /// Ids of its rows.
    pub ids: ObjectIds,
    /// Its DN as staged.
    pub dn: String,
    /// Its attribute values.
    pub values: UserValues,
}

/// A seeded group: its ids, DN, rule and values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededGroup {
    /// Index among the template's groups.
    pub index: usize,
    /// Ids of its rows.
    pub ids: ObjectIds,
    /// Its DN as staged.
    pub dn: String,
    /// `cn`.
    pub cn: String,
    /// `description`.
    pub description: String,
    /// Its category and membership rule.
    pub rule: GroupRule,
}

impl SeededGroup {
    /// Its members' user indices, in staging order.
    pub fn members(&self) -> impl Iterator<Item = usize> + '_ {
        self.rule.members()
    }

    /// Number of members.
    pub fn member_count(&self) -> usize {
        self.rule.member_count()
    }
}

/// A seeded connected system: ids, counts, timings, and every object's ids and values on demand.
#[derive(Debug, Clone)]
pub struct SeededSystem {
    /// The options it was seeded with.
    pub options: SeedOptions,
    /// Ids of its configuration rows and attribute definitions.
    pub ids: SystemIds,
    /// Row counts.
    pub counts: SeedCounts,
    /// Time per phase.
    pub timings: SeedTimings,
    spaces: Spaces,
    layout: GroupLayout,
    domain: String,
}

/// Largest template (users + groups) [`SeededSystem::expected_directory`] builds in memory.
pub const EXPECTED_DIRECTORY_MAX_OBJECTS: usize = 250_000;

impl SeededSystem {
    /// `ConnectedSystems.Id`.
    pub fn connected_system_id(&self) -> i32 {
        self.ids.connected_system_id
    }

    /// The suffix.
    pub fn suffix(&self) -> &str {
        &self.options.suffix
    }

    /// The template.
    pub fn template(&self) -> Template {
        self.options.template
    }

    /// Number of users.
    pub fn users(&self) -> usize {
        self.layout.users()
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.layout.groups()
    }

    /// The group layout.
    pub fn layout(&self) -> &GroupLayout {
        &self.layout
    }

    /// `ConnectedSystemObjectTypes.Id` of users.
    pub fn user_type_id(&self) -> i32 {
        self.ids.user_type_id
    }

    /// `ConnectedSystemObjectTypes.Id` of groups.
    pub fn group_type_id(&self) -> i32 {
        self.ids.group_type_id
    }

    /// `ConnectedSystemAttributes.Id` of a user attribute, by LDAP name.
    pub fn user_attribute_id(&self, name: &str) -> Result<i32> {
        self.ids.user_attributes.get(name).copied().ok_or_else(|| {
            TestkitError::Seed(format!("{USER_OBJECT_TYPE} has no attribute {name}"))
        })
    }

    /// `ConnectedSystemAttributes.Id` of a group attribute, by LDAP name.
    pub fn group_attribute_id(&self, name: &str) -> Result<i32> {
        self.ids.group_attributes.get(name).copied().ok_or_else(|| {
            TestkitError::Seed(format!("{GROUP_OBJECT_TYPE} has no attribute {name}"))
        })
    }

    /// The DNs of the containers the system manages (`ou=People`, `ou=Groups`, `ou=Alumni`), for
    /// creating them in a test directory.
    pub fn containers(&self) -> Vec<String> {
        system::CONTAINERS
            .iter()
            .map(|(ou, _)| format!("ou={ou},{}", self.suffix()))
            .collect()
    }

    /// User `i` (ids, DN, values), or `None` past the end.
    pub fn user(&self, i: usize) -> Option<SeededUser> {
        (i < self.users()).then(|| {
            let values = UserValues::new(&self.spaces, &self.domain, i);
            SeededUser {
                ids: self.spaces.user_ids(i).0,
                dn: values.dn(self.suffix()),
                values,
            }
        })
    }

    /// Group `g` (ids, DN, rule), or `None` past the end.
    pub fn group(&self, g: usize) -> Option<SeededGroup> {
        let rule = self.layout.group(g)?;
        Some(SeededGroup {
            index: g,
            ids: self.spaces.group_ids(g).0,
            dn: group_dn(&rule, self.suffix()),
            cn: rule.cn(),
            description: rule.description(),
            rule,
        })
    }

    /// The MVO id of user `i` (what references to it hold when staged).
    pub fn user_mvo_id(&self, i: usize) -> uuid::Uuid {
        self.spaces.user_mvo(i)
    }

    /// The `CreatedAt` of the pending export of object `k` (users `0..users`, then groups).
    pub fn staged_at(&self, k: usize) -> DateTime<Utc> {
        load::staged_at(
            self.options.base_time,
            self.options.created_at,
            self.users(),
            k,
        )
    }

    /// The directory content a correct export of the seed produces: every user and group entry with
    /// the staged attributes (`manager` and `member` as DNs). Built in memory, so it is refused above
    /// [`EXPECTED_DIRECTORY_MAX_OBJECTS`] objects.
    pub fn expected_directory(&self) -> Result<DirectoryState> {
        let objects = self.users() + self.groups();
        if objects > EXPECTED_DIRECTORY_MAX_OBJECTS {
            return Err(TestkitError::Seed(format!(
                "expected_directory builds {objects} entries in memory; the limit is \
                 {EXPECTED_DIRECTORY_MAX_OBJECTS}"
            )));
        }
        let mut state = DirectoryState::default();
        let user_dns: Vec<String> = (0..self.users())
            .map(|i| UserValues::new(&self.spaces, &self.domain, i).dn(self.suffix()))
            .collect();
        for i in 0..self.users() {
            let u = UserValues::new(&self.spaces, &self.domain, i);
            let mut entry = Entry::new();
            entry.insert("objectClass".into(), [USER_OBJECT_TYPE.to_string()].into());
            for (name, value) in u.text_attributes() {
                entry.insert(name.into(), [value.to_string()].into());
            }
            if let Some(m) = u.manager {
                entry.insert("manager".into(), [user_dns[m].clone()].into());
            }
            state.entries.insert(user_dns[i].clone(), entry);
        }
        for rule in self.layout.iter() {
            let mut entry = Entry::new();
            entry.insert("objectClass".into(), [GROUP_OBJECT_TYPE.to_string()].into());
            entry.insert("cn".into(), [rule.cn()].into());
            entry.insert("description".into(), [rule.description()].into());
            entry.insert(
                "member".into(),
                rule.members().map(|u| user_dns[u].clone()).collect(),
            );
            state.entries.insert(group_dn(&rule, self.suffix()), entry);
        }
        Ok(state)
    }
}

/// Seeds one connected system with the template's objects, staged for their initial provisioning.
pub async fn seed(pool: &PgPool, options: &SeedOptions) -> Result<SeededSystem> {
    options.validate()?;
    if options.target != Target::OpenLdap {
        return Err(TestkitError::Seed(
            "seed() stages an OpenLDAP target; use seed_ad() for Active Directory".into(),
        ));
    }
    let started = Instant::now();
    let mut timings = SeedTimings::default();
    let mut options = options.clone();
    if options.system_name.is_none() {
        options.system_name = Some(format!("OpenLDAP {}", options.suffix));
    }

    let t = Instant::now();
    let mut conn = pool
        .acquire()
        .await
        .sql_context(|| "acquiring a connection for the seed".into())?;
    let ids = system::create(&mut conn, &options).await?;
    drop(conn);
    timings.configuration = t.elapsed();

    let spaces = Spaces::new(options.seed, &options.suffix);
    let layout = options.template.layout();
    let domain = mail_domain(&options.suffix);
    let plan = Arc::new(Plan {
        spaces,
        layout: layout.clone(),
        suffix: options.suffix.clone(),
        domain: domain.clone(),
        hot: HotIds::new(&ids)?,
        base_time: options.base_time,
        created_at: options.created_at,
        metaverse: options.metaverse_objects,
        skip_foreign_key_triggers: options.skip_foreign_key_triggers
            && load::may_skip_foreign_key_triggers(pool).await?,
    });
    let loaded = load::load(pool, plan, options.parallelism, &mut timings).await?;
    if options.analyze {
        let t = Instant::now();
        load::analyze(pool).await?;
        timings.analyze = t.elapsed();
    }
    timings.total = started.elapsed();

    let users = layout.users() as u64;
    let groups = layout.groups() as u64;
    let memberships = membership_count(&layout);
    let managers = manager_count(&spaces, layout.users());
    let counts = SeedCounts {
        users,
        groups,
        memberships,
        managers,
        metaverse_objects: loaded.metaverse_objects,
        connected_system_objects: loaded.connected_system_objects,
        cso_values: loaded.cso_values,
        pending_exports: loaded.pending_exports,
        attribute_changes: loaded.attribute_changes,
        reference_changes: memberships + managers,
        reference_bearing_exports: groups + managers,
    };
    let expected_changes = users * 12 + managers + groups * 4 + memberships;
    if loaded.attribute_changes != expected_changes || loaded.pending_exports != users + groups {
        return Err(TestkitError::Seed(format!(
            "loaded {} pending exports and {} changes; expected {} and {expected_changes}",
            loaded.pending_exports,
            loaded.attribute_changes,
            users + groups
        )));
    }
    Ok(SeededSystem {
        options,
        ids,
        counts,
        timings,
        spaces,
        layout,
        domain,
    })
}

/// Does what JIM's confirming import does for the exports the engine wrote (export-semantics
/// §2.14), treating the directory as holding what was sent:
///
/// - exported Deletes (`Status` 4): the pending export, its changes and the CSO are deleted
///   (references to the CSO nulled first);
/// - every change in `ExportedPendingConfirmation` of a Create or Update is confirmed: the CSO's
///   values are made to match (an Update replaces the attribute, Add and Remove add or drop the
///   value; references keep the referenced CSO in `ReferenceValueId` and its DN in
///   `UnresolvedReferenceValue`) and the change is deleted;
/// - a pending export with nothing left is deleted; one with changes left gets JIM's recomputed
///   status, and a Create whose DN was confirmed becomes an Update;
/// - the CSOs of confirmed exports move from PendingProvisioning to Normal.
///
/// The anchor the engine wrote back (`entryUUID`) stays as it is. Runs in one transaction.
pub async fn confirm_exported(pool: &PgPool, system: &SeededSystem) -> Result<ConfirmReport> {
    confirm::confirm(pool, system.connected_system_id()).await
}

/// Pretends the engine exported every pending export of the system successfully (references
/// resolved to DNs, changes `ExportedPendingConfirmation`, exports `Exported`, a fake `entryUUID`
/// derived from the CSO id for each created object), then confirms as [`confirm_exported`] does:
/// a way to stage follow-ups without a directory.
pub async fn confirm_all_as_exported(
    pool: &PgPool,
    system: &SeededSystem,
) -> Result<(ExportShortcutReport, ConfirmReport)> {
    confirm::mark_all_exported(pool, system.connected_system_id()).await
}

/// Stages a round of follow-up changes on confirmed objects (one pending export per CSO) and returns
/// what was staged, with the DNs the engine will resolve references to.
pub async fn stage_follow_ups(
    pool: &PgPool,
    system: &SeededSystem,
    follow_ups: &FollowUps,
) -> Result<StagedFollowUps> {
    follow_ups::stage(pool, system, follow_ups).await
}
