//! Follow-up changes on confirmed objects, staged as JIM stages them: one pending export per CSO
//! (JIM's unique index allows no more), `Update` with per-attribute changes, references as MVO ids,
//! `Delete` with no changes.
//!
//! Choices are deterministic: the seed, the round's `seed` and the database state (which objects are
//! confirmed, what values their CSOs hold) decide them. Current values come from the CSOs, as JIM
//! compares the metaverse with them, so several rounds can be staged one after another.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use fastrand::Rng;
use jim_export::model::{
    DEFAULT_MAX_RETRIES, PendingExportAttributeChangeType as AvcType, PendingExportChangeType,
    PendingExportStatus,
};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::SeededSystem;
use super::copy::{CopyWriter, copy_in};
use super::data::{TITLES, uuid};
use super::expected::DirectoryState;
use super::load::{AVC_COLUMNS, AvcValue, avc};
use crate::error::{Result, SqlContext, TestkitError};

/// A follow-up change of one object, chosen explicitly by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// Update user `user`'s `title` and `mail`.
    UpdateAttributes {
        /// User index.
        user: usize,
    },
    /// Rename user `user`: a new `uid` and the DN's RDN with it.
    Rename {
        /// User index.
        user: usize,
    },
    /// Move user `user` to `ou=Alumni` (or back to `ou=People` when it is in `ou=Alumni`).
    Move {
        /// User index.
        user: usize,
    },
    /// Point user `user`'s `manager` at user `manager`.
    ChangeManager {
        /// User index.
        user: usize,
        /// The new manager's user index.
        manager: usize,
    },
    /// Add users to group `group`.
    AddMembers {
        /// Group index.
        group: usize,
        /// User indices (users that are members already are skipped).
        users: Vec<usize>,
    },
    /// Remove users from group `group`.
    RemoveMembers {
        /// Group index.
        group: usize,
        /// User indices (users that are not members are skipped).
        users: Vec<usize>,
    },
    /// Delete user `user` (and remove it from its groups when
    /// [`FollowUps::remove_deleted_from_groups`] is set).
    DeleteUser {
        /// User index.
        user: usize,
    },
    /// Delete group `group`.
    DeleteGroup {
        /// Group index.
        group: usize,
    },
}

/// What a round of follow-up changes stages: counts of randomly chosen objects per kind, plus
/// explicit choices. Every chosen object is confirmed (CSO `Normal`) and has no pending export, and
/// each object gets one kind of change (users referenced by member or manager changes are not
/// otherwise changed in the same round, unless [`FollowUps::reference_moved_users`] lets them be
/// renamed or moved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUps {
    /// Salt for this round's choices and ids; use a different one per round.
    pub seed: u64,
    /// Users whose `title` and `mail` change.
    pub attribute_updates: usize,
    /// Users renamed (new `uid`, new RDN).
    pub renames: usize,
    /// Users moved to another OU.
    pub moves: usize,
    /// Users whose `manager` changes.
    pub manager_changes: usize,
    /// Groups that gain members.
    pub member_add_groups: usize,
    /// Groups that lose members.
    pub member_remove_groups: usize,
    /// Members added to, or removed from, each of those groups.
    pub members_per_group: usize,
    /// Users deleted.
    pub user_deletes: usize,
    /// Groups deleted.
    pub group_deletes: usize,
    /// Stage `member` removals of deleted users in the groups that hold them (JIM does, since the
    /// MVO's references go with it; OpenLDAP without refint keeps stale members otherwise).
    pub remove_deleted_from_groups: bool,
    /// Let member and manager changes name users that the same round renames or moves (never
    /// deleted ones): the engine must then write their new DNs, and remove a renamed member by the
    /// DN the group holds. Off by default, which keeps the benchmark's rounds as they were.
    pub reference_moved_users: bool,
    /// Explicit changes, applied before the random ones.
    pub explicit: Vec<FollowUp>,
    /// `CreatedAt` of the first staged export (later ones follow 1 ms apart); `None` = now.
    pub staged_at: Option<DateTime<Utc>>,
}

impl Default for FollowUps {
    fn default() -> Self {
        Self {
            seed: 1,
            attribute_updates: 0,
            renames: 0,
            moves: 0,
            manager_changes: 0,
            member_add_groups: 0,
            member_remove_groups: 0,
            members_per_group: 3,
            user_deletes: 0,
            group_deletes: 0,
            remove_deleted_from_groups: true,
            reference_moved_users: false,
            explicit: Vec::new(),
            staged_at: None,
        }
    }
}

impl FollowUps {
    /// `n` objects of every kind (group deletes: `n / 4`, at least one when `n > 0`).
    pub fn mixed(n: usize) -> Self {
        Self {
            attribute_updates: n,
            renames: n,
            moves: n,
            manager_changes: n,
            member_add_groups: n,
            member_remove_groups: n,
            user_deletes: n,
            group_deletes: if n == 0 { 0 } else { (n / 4).max(1) },
            ..Self::default()
        }
    }
}

/// Which seeded object a staged export is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeedObject {
    /// User by index.
    User(usize),
    /// Group by index.
    Group(usize),
}

/// The kinds of change a staged export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FollowUpKind {
    /// `title` and `mail` updated.
    AttributeUpdate,
    /// New `uid` and RDN.
    Rename,
    /// New parent OU.
    Move,
    /// New `manager`.
    ManagerChange,
    /// `member` values added.
    MemberAdds,
    /// `member` values removed (chosen, or because the member was deleted).
    MemberRemoves,
    /// The object is deleted.
    Delete,
}

/// The value of a staged change, with what the directory will hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StagedValue {
    /// A text value (`StringValue`).
    Text(String),
    /// A reference staged as the MVO id; `dn` is the DN the engine resolves it to.
    Reference {
        /// The referenced MVO (`UnresolvedReferenceValue`).
        mvo_id: Uuid,
        /// The referenced object's DN when staged.
        dn: String,
    },
}

/// One staged attribute change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedChange {
    /// `PendingExportAttributeValueChanges.Id`.
    pub id: Uuid,
    /// LDAP attribute name.
    pub attribute: String,
    /// `Add`, `Update` or `Remove`.
    pub change_type: AvcType,
    /// The value.
    pub value: StagedValue,
}

/// One staged pending export and what it should do to the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedExport {
    /// `PendingExports.Id`.
    pub pending_export_id: Uuid,
    /// The CSO.
    pub cso_id: Uuid,
    /// The source MVO.
    pub mvo_id: Uuid,
    /// The seeded object.
    pub object: SeedObject,
    /// `Update` or `Delete`.
    pub change_type: PendingExportChangeType,
    /// Whether any change is a reference (`HasUnresolvedReferences`).
    pub has_unresolved_references: bool,
    /// The object's DN when staged.
    pub dn: String,
    /// The DN after a rename or move.
    pub new_dn: Option<String>,
    /// What the export does.
    pub kinds: Vec<FollowUpKind>,
    /// Its attribute changes (none for a Delete).
    pub changes: Vec<StagedChange>,
}

impl StagedExport {
    /// The DN the entry has after the export (`None` once deleted).
    pub fn final_dn(&self) -> Option<&str> {
        match self.change_type {
            PendingExportChangeType::Delete => None,
            _ => Some(self.new_dn.as_deref().unwrap_or(&self.dn)),
        }
    }
}

/// What [`super::stage_follow_ups`] staged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagedFollowUps {
    /// One entry per pending export, in `CreatedAt` order.
    pub exports: Vec<StagedExport>,
}

impl StagedFollowUps {
    /// Number of staged pending exports.
    pub fn pending_exports(&self) -> usize {
        self.exports.len()
    }

    /// Number of staged attribute changes.
    pub fn attribute_changes(&self) -> usize {
        self.exports.iter().map(|e| e.changes.len()).sum()
    }

    /// Staged exports carrying `kind`.
    pub fn of_kind(&self, kind: FollowUpKind) -> impl Iterator<Item = &StagedExport> {
        self.exports.iter().filter(move |e| e.kinds.contains(&kind))
    }

    /// The staged export of `object`, if any.
    pub fn export_of(&self, object: SeedObject) -> Option<&StagedExport> {
        self.exports.iter().find(|e| e.object == object)
    }

    /// Applies what the exports should do to an expected directory state. Renames and moves keep
    /// other entries' references to the old DN (OpenLDAP without refint does not rewrite them), but a
    /// reference added or set in the same round to an object the round renames or moves names its new
    /// DN: the object is there by the time the reference is written.
    pub fn apply(&self, state: &mut DirectoryState) {
        let moved: HashMap<Uuid, &str> = self
            .exports
            .iter()
            .filter_map(|e| Some((e.mvo_id, e.new_dn.as_deref()?)))
            .collect();
        for e in &self.exports {
            if e.change_type == PendingExportChangeType::Delete {
                state.entries.remove(&e.dn);
                continue;
            }
            let dn = e.final_dn().unwrap_or(&e.dn).to_string();
            if dn != e.dn {
                state.rename(&e.dn, &dn);
            }
            for c in &e.changes {
                if c.attribute == "distinguishedName" {
                    continue;
                }
                let value = match &c.value {
                    StagedValue::Text(s) => s.clone(),
                    StagedValue::Reference { mvo_id, dn } => match moved.get(mvo_id) {
                        Some(new_dn) if c.change_type != AvcType::Remove => new_dn.to_string(),
                        _ => dn.clone(),
                    },
                };
                match c.change_type {
                    AvcType::Update => state.replace(&dn, &c.attribute, [value]),
                    AvcType::Add => state.add(&dn, &c.attribute, value),
                    AvcType::Remove => state.remove(&dn, &c.attribute, &value),
                    AvcType::RemoveAll => state.replace(&dn, &c.attribute, []),
                }
            }
        }
    }
}

/// The database view of one CSO.
#[derive(Debug, Clone, Default)]
struct CsoState {
    confirmed_and_free: bool,
    dn: Option<String>,
    /// Text values by attribute name (first value).
    text: HashMap<String, String>,
    /// The current manager's MVO.
    manager: Option<Uuid>,
}

async fn cso_states(pool: &PgPool, cs: i32, ids: &[Uuid]) -> Result<HashMap<Uuid, CsoState>> {
    let rows = sqlx::query(
        "SELECT o.\"Id\", o.\"Status\" = 0 AND NOT EXISTS \
           (SELECT 1 FROM \"PendingExports\" p WHERE p.\"ConnectedSystemObjectId\" = o.\"Id\") AS free \
         FROM \"ConnectedSystemObjects\" o WHERE o.\"Id\" = ANY($1) AND o.\"ConnectedSystemId\" = $2",
    )
    .bind(ids)
    .bind(cs)
    .fetch_all(pool)
    .await
    .sql_context(|| "reading follow-up candidates".into())?;
    let mut out: HashMap<Uuid, CsoState> = rows
        .iter()
        .map(|r| {
            (
                r.get::<Uuid, _>("Id"),
                CsoState {
                    confirmed_and_free: r.get::<Option<bool>, _>("free").unwrap_or(false),
                    ..CsoState::default()
                },
            )
        })
        .collect();
    let values = sqlx::query(
        "SELECT v.\"ConnectedSystemObjectId\" AS cso, a.\"Name\" AS name, a.\"IsSecondaryExternalId\" AS is_dn, \
                v.\"StringValue\" AS s, r.\"MetaverseObjectId\" AS ref_mvo \
         FROM \"ConnectedSystemObjectAttributeValues\" v \
         JOIN \"ConnectedSystemAttributes\" a ON a.\"Id\" = v.\"AttributeId\" \
         LEFT JOIN \"ConnectedSystemObjects\" r ON r.\"Id\" = v.\"ReferenceValueId\" \
         WHERE v.\"ConnectedSystemObjectId\" = ANY($1) AND a.\"Name\" <> 'member' \
         ORDER BY v.\"Id\"",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .sql_context(|| "reading follow-up candidates' values".into())?;
    for r in values {
        let cso: Uuid = r.get("cso");
        let Some(state) = out.get_mut(&cso) else {
            continue;
        };
        let name: String = r.get("name");
        let s: Option<String> = r.get("s");
        if r.get::<bool, _>("is_dn") {
            state.dn = s.clone();
        }
        if name == "manager" {
            state.manager = r.get("ref_mvo");
        } else if let Some(s) = s {
            state.text.entry(name).or_insert(s);
        }
    }
    Ok(out)
}

/// A group member as the directory holds it: its MVO and its DN.
#[derive(Debug, Clone)]
struct Member {
    mvo: Uuid,
    /// The member's current DN, when the group's value still matches it.
    dn: Option<String>,
}

async fn group_members(
    pool: &PgPool,
    member_attribute: i32,
    groups: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Member>>> {
    let rows = sqlx::query(
        "SELECT v.\"ConnectedSystemObjectId\" AS grp, r.\"MetaverseObjectId\" AS mvo, \
                v.\"UnresolvedReferenceValue\" AS held, dn.\"StringValue\" AS dn \
         FROM \"ConnectedSystemObjectAttributeValues\" v \
         JOIN \"ConnectedSystemObjects\" r ON r.\"Id\" = v.\"ReferenceValueId\" \
         LEFT JOIN \"ConnectedSystemObjectAttributeValues\" dn \
           ON dn.\"ConnectedSystemObjectId\" = r.\"Id\" AND dn.\"AttributeId\" = r.\"SecondaryExternalIdAttributeId\" \
         WHERE v.\"ConnectedSystemObjectId\" = ANY($1) AND v.\"AttributeId\" = $2 \
         ORDER BY v.\"Id\"",
    )
    .bind(groups)
    .bind(member_attribute)
    .fetch_all(pool)
    .await
    .sql_context(|| "reading group members".into())?;
    let mut out: HashMap<Uuid, Vec<Member>> = HashMap::new();
    for r in rows {
        let Some(mvo) = r.get::<Option<Uuid>, _>("mvo") else {
            continue;
        };
        let held: Option<String> = r.get("held");
        let dn: Option<String> = r.get("dn");
        let current = match (&held, &dn) {
            (Some(h), Some(d)) if h.eq_ignore_ascii_case(d) => Some(d.clone()),
            _ => None,
        };
        out.entry(r.get("grp"))
            .or_default()
            .push(Member { mvo, dn: current });
    }
    Ok(out)
}

/// Groups holding any of `users` (by CSO) as a member.
async fn groups_holding(
    pool: &PgPool,
    member_attribute: i32,
    users: &[Uuid],
) -> Result<Vec<(Uuid, Uuid)>> {
    let rows = sqlx::query(
        "SELECT v.\"ConnectedSystemObjectId\" AS grp, v.\"ReferenceValueId\" AS member \
         FROM \"ConnectedSystemObjectAttributeValues\" v \
         WHERE v.\"ReferenceValueId\" = ANY($1) AND v.\"AttributeId\" = $2 ORDER BY v.\"Id\"",
    )
    .bind(users)
    .bind(member_attribute)
    .fetch_all(pool)
    .await
    .sql_context(|| "finding the groups of deleted users".into())?;
    Ok(rows
        .iter()
        .map(|r| (r.get("grp"), r.get("member")))
        .collect())
}

/// Picks `count` distinct random indices below `total`, skipping `taken`, that pass `eligible`
/// (checked in batches against the database). Fails when too few are eligible.
async fn pick<F, Fut>(
    rng: &mut Rng,
    total: usize,
    count: usize,
    taken: &HashSet<usize>,
    what: &str,
    mut eligible: F,
) -> Result<Vec<usize>>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<usize>>>,
{
    let mut picked = Vec::with_capacity(count);
    let mut drawn: HashSet<usize> = HashSet::new();
    let mut rounds = 0u32;
    while picked.len() < count {
        let available = total.saturating_sub(taken.len() + drawn.len());
        if available == 0 {
            return Err(TestkitError::Seed(format!(
                "follow-ups: only {} of {count} {what} are confirmed and free of pending exports",
                picked.len()
            )));
        }
        // Batches grow when few candidates turn out eligible.
        let want = (((count - picked.len()) * 2).max(16) << rounds.min(16)).min(available);
        rounds += 1;
        let mut batch = Vec::with_capacity(want);
        // Random draws while the space is sparse; a scan from a random start once it is dense.
        let mut tries = 0;
        while batch.len() < want && tries < want * 8 {
            tries += 1;
            let i = rng.usize(0..total);
            if !taken.contains(&i) && drawn.insert(i) {
                batch.push(i);
            }
        }
        if batch.len() < want {
            let start = rng.usize(0..total);
            for k in 0..total {
                let i = (start + k) % total;
                if batch.len() >= want {
                    break;
                }
                if !taken.contains(&i) && drawn.insert(i) {
                    batch.push(i);
                }
            }
        }
        let ok: HashSet<usize> = eligible(batch.clone()).await?.into_iter().collect();
        picked.extend(batch.into_iter().filter(|i| ok.contains(i)));
    }
    picked.truncate(count);
    Ok(picked)
}

#[derive(Debug, Default)]
struct Builder {
    exports: BTreeMap<SeedObject, StagedExport>,
}

impl Builder {
    fn export(&mut self, s: &SeededSystem, object: SeedObject, dn: &str) -> &mut StagedExport {
        self.exports.entry(object).or_insert_with(|| {
            let ids = match object {
                SeedObject::User(i) => s.spaces.user_ids(i).0,
                SeedObject::Group(g) => s.spaces.group_ids(g).0,
            };
            StagedExport {
                pending_export_id: Uuid::nil(),
                cso_id: ids.cso,
                mvo_id: ids.mvo,
                object,
                change_type: PendingExportChangeType::Update,
                has_unresolved_references: false,
                dn: dn.to_string(),
                new_dn: None,
                kinds: Vec::new(),
                changes: Vec::new(),
            }
        })
    }
}

fn change(attribute: &str, change_type: AvcType, value: StagedValue) -> StagedChange {
    StagedChange {
        id: Uuid::nil(),
        attribute: attribute.to_string(),
        change_type,
        value,
    }
}

fn text(attribute: &str, value: String) -> StagedChange {
    change(attribute, AvcType::Update, StagedValue::Text(value))
}

fn push_kind(e: &mut StagedExport, kind: FollowUpKind) {
    if !e.kinds.contains(&kind) {
        e.kinds.push(kind);
    }
}

fn parent(dn: &str) -> &str {
    dn.split_once(',').map_or("", |(_, p)| p)
}

fn rdn_value(dn: &str) -> &str {
    dn.split(',')
        .next()
        .and_then(|rdn| rdn.split_once('='))
        .map_or("", |(_, v)| v)
}

fn missing(what: &str, index: usize) -> TestkitError {
    TestkitError::Seed(format!(
        "follow-ups: {what} {index} is not confirmed or already has a pending export"
    ))
}

/// Stages a round of follow-ups (see [`super::stage_follow_ups`]).
pub(crate) async fn stage(
    pool: &PgPool,
    s: &SeededSystem,
    spec: &FollowUps,
) -> Result<StagedFollowUps> {
    let cs = s.connected_system_id();
    let users = s.users();
    let groups = s.groups();
    let mut rng = s.spaces.follow_up_rng(spec.seed);
    let domain = s.domain.clone();
    let suffix = s.suffix().to_string();
    let member_attribute = s.group_attribute_id("member")?;

    // Explicit choices claim their objects first.
    let mut user_kind: BTreeMap<usize, FollowUp> = BTreeMap::new();
    let mut group_plan: BTreeMap<usize, (Vec<usize>, Vec<usize>, bool)> = BTreeMap::new();
    for f in &spec.explicit {
        match f {
            FollowUp::UpdateAttributes { user }
            | FollowUp::Rename { user }
            | FollowUp::Move { user }
            | FollowUp::ChangeManager { user, .. }
            | FollowUp::DeleteUser { user } => {
                let bad_manager =
                    matches!(f, FollowUp::ChangeManager { manager, .. } if *manager >= users);
                if *user >= users || bad_manager {
                    return Err(TestkitError::Seed(format!(
                        "follow-ups: user {user} (or its new manager) is out of range"
                    )));
                }
                if user_kind.insert(*user, f.clone()).is_some() {
                    return Err(TestkitError::Seed(format!(
                        "follow-ups: user {user} is chosen twice (one pending export per object)"
                    )));
                }
            }
            FollowUp::AddMembers { group, users: u }
            | FollowUp::RemoveMembers { group, users: u } => {
                if *group >= groups || u.iter().any(|&i| i >= users) {
                    return Err(TestkitError::Seed(format!(
                        "follow-ups: group {group} or one of its users is out of range"
                    )));
                }
                let entry = group_plan.entry(*group).or_default();
                if matches!(f, FollowUp::AddMembers { .. }) {
                    entry.0.extend(u);
                } else {
                    entry.1.extend(u);
                }
            }
            FollowUp::DeleteGroup { group } => {
                if *group >= groups {
                    return Err(TestkitError::Seed(format!(
                        "follow-ups: group {group} is out of range"
                    )));
                }
                group_plan.entry(*group).or_default().2 = true;
            }
        }
    }

    // Random users, all confirmed and free.
    let user_eligible = |batch: Vec<usize>| async move {
        let ids: Vec<Uuid> = batch.iter().map(|&i| s.spaces.user_ids(i).0.cso).collect();
        let states = cso_states(pool, cs, &ids).await?;
        Ok(batch
            .into_iter()
            .zip(ids)
            .filter(|(_, id)| states.get(id).is_some_and(|st| st.confirmed_and_free))
            .map(|(i, _)| i)
            .collect())
    };
    let taken: HashSet<usize> = user_kind.keys().copied().collect();
    let wanted = spec.user_deletes
        + spec.renames
        + spec.moves
        + spec.attribute_updates
        + spec.manager_changes;
    let picked = pick(&mut rng, users, wanted, &taken, "users", user_eligible).await?;
    let mut it = picked.into_iter();
    for (n, make) in [
        (spec.user_deletes, 0u8),
        (spec.renames, 1),
        (spec.moves, 2),
        (spec.attribute_updates, 3),
        (spec.manager_changes, 4),
    ] {
        for user in it.by_ref().take(n) {
            let f = match make {
                0 => FollowUp::DeleteUser { user },
                1 => FollowUp::Rename { user },
                2 => FollowUp::Move { user },
                3 => FollowUp::UpdateAttributes { user },
                // usize::MAX: pick the manager below, once the round's busy users are known.
                _ => FollowUp::ChangeManager {
                    user,
                    manager: usize::MAX,
                },
            };
            user_kind.insert(user, f);
        }
    }

    // Random groups.
    let group_eligible = |batch: Vec<usize>| async move {
        let ids: Vec<Uuid> = batch.iter().map(|&g| s.spaces.group_ids(g).0.cso).collect();
        let states = cso_states(pool, cs, &ids).await?;
        Ok(batch
            .into_iter()
            .zip(ids)
            .filter(|(_, id)| states.get(id).is_some_and(|st| st.confirmed_and_free))
            .map(|(g, _)| g)
            .collect())
    };
    let taken_groups: HashSet<usize> = group_plan.keys().copied().collect();
    let wanted = spec.group_deletes + spec.member_add_groups + spec.member_remove_groups;
    let picked = pick(
        &mut rng,
        groups,
        wanted,
        &taken_groups,
        "groups",
        group_eligible,
    )
    .await?;
    let mut it = picked.into_iter();
    for g in it.by_ref().take(spec.group_deletes) {
        group_plan.entry(g).or_default().2 = true;
    }
    let add_groups: Vec<usize> = it.by_ref().take(spec.member_add_groups).collect();
    let remove_groups: Vec<usize> = it.take(spec.member_remove_groups).collect();

    // Current state of every chosen object.
    let mut object_ids: Vec<Uuid> = user_kind
        .keys()
        .map(|&i| s.spaces.user_ids(i).0.cso)
        .collect();
    let chosen_groups: Vec<usize> = group_plan
        .keys()
        .copied()
        .chain(add_groups.iter().copied())
        .chain(remove_groups.iter().copied())
        .collect();
    let group_csos: Vec<Uuid> = chosen_groups
        .iter()
        .map(|&g| s.spaces.group_ids(g).0.cso)
        .collect();
    object_ids.extend(&group_csos);
    let states = cso_states(pool, cs, &object_ids).await?;
    let state_of = |cso: &Uuid| states.get(cso).filter(|st| st.confirmed_and_free);
    let members = group_members(pool, member_attribute, &group_csos).await?;

    // Users changed in this round are not referenced by other changes of the round (but for the
    // renamed and moved ones, when the round asks for those).
    let busy: HashSet<usize> = user_kind
        .iter()
        .filter(|(_, f)| {
            !(spec.reference_moved_users
                && matches!(f, FollowUp::Rename { .. } | FollowUp::Move { .. }))
        })
        .map(|(&u, _)| u)
        .collect();
    let busy_mvos: HashSet<Uuid> = busy.iter().map(|&u| s.spaces.user_mvo(u)).collect();
    let mut b = Builder::default();

    for (&user, f) in &user_kind {
        let cso = s.spaces.user_ids(user).0.cso;
        let st = state_of(&cso).ok_or_else(|| missing("user", user))?;
        let dn = st.dn.clone().ok_or_else(|| missing("user", user))?;
        let object = SeedObject::User(user);
        match f {
            FollowUp::DeleteUser { .. } => {
                let e = b.export(s, object, &dn);
                e.change_type = PendingExportChangeType::Delete;
                push_kind(e, FollowUpKind::Delete);
            }
            FollowUp::Rename { .. } => {
                let uid = st
                    .text
                    .get("uid")
                    .cloned()
                    .unwrap_or_else(|| rdn_value(&dn).into());
                let new_uid = format!("{uid}.r{}", rng.u32(1000..10000));
                let new_dn = format!("uid={new_uid},{}", parent(&dn));
                let e = b.export(s, object, &dn);
                e.new_dn = Some(new_dn.clone());
                e.changes.push(text("distinguishedName", new_dn));
                e.changes.push(text("uid", new_uid));
                push_kind(e, FollowUpKind::Rename);
            }
            FollowUp::Move { .. } => {
                let people = format!("ou=People,{suffix}");
                let target = if parent(&dn).eq_ignore_ascii_case(&people) {
                    format!("ou=Alumni,{suffix}")
                } else {
                    people
                };
                let new_dn = format!("uid={},{target}", rdn_value(&dn));
                let e = b.export(s, object, &dn);
                e.new_dn = Some(new_dn.clone());
                e.changes.push(text("distinguishedName", new_dn));
                push_kind(e, FollowUpKind::Move);
            }
            FollowUp::UpdateAttributes { .. } => {
                let current = st.text.get("title").map(String::as_str).unwrap_or("");
                let at = TITLES.iter().position(|t| *t == current).unwrap_or(0);
                let title = TITLES[(at + 1 + rng.usize(0..TITLES.len() - 1)) % TITLES.len()];
                let mail = st.text.get("mail").cloned().unwrap_or_default();
                let local = mail.split('@').next().unwrap_or("user");
                let new_mail = format!("{local}.u{}@{domain}", rng.u32(1000..10000));
                let e = b.export(s, object, &dn);
                e.changes.push(text("title", title.to_string()));
                e.changes.push(text("mail", new_mail));
                push_kind(e, FollowUpKind::AttributeUpdate);
            }
            FollowUp::ChangeManager { manager, .. } => {
                let current = st.manager;
                let candidates: Vec<usize> = if *manager == usize::MAX {
                    // Random users that are not changed this round and are neither the current
                    // manager nor the user itself; the first that still exists wins.
                    (0..10_000)
                        .map(|_| rng.usize(0..users))
                        .filter(|&m| {
                            m != user && !busy.contains(&m) && Some(s.spaces.user_mvo(m)) != current
                        })
                        .take(32)
                        .collect()
                } else {
                    vec![*manager]
                };
                let dns = existing_user_dns(pool, s, &candidates).await?;
                let Some((chosen, mdn)) = candidates
                    .iter()
                    .find_map(|m| dns.get(m).map(|d| (*m, d.clone())))
                else {
                    return Err(TestkitError::Seed(format!(
                        "follow-ups: no manager with a CSO found for user {user}"
                    )));
                };
                let e = b.export(s, object, &dn);
                e.changes.push(change(
                    "manager",
                    AvcType::Update,
                    StagedValue::Reference {
                        mvo_id: s.spaces.user_mvo(chosen),
                        dn: mdn,
                    },
                ));
                e.has_unresolved_references = true;
                push_kind(e, FollowUpKind::ManagerChange);
            }
            FollowUp::AddMembers { .. }
            | FollowUp::RemoveMembers { .. }
            | FollowUp::DeleteGroup { .. } => {}
        }
    }

    // Groups: deletes, then member adds and removes (explicit and random).
    let group_dn = |g: usize| -> Result<String> {
        let cso = s.spaces.group_ids(g).0.cso;
        state_of(&cso)
            .and_then(|st| st.dn.clone())
            .ok_or_else(|| missing("group", g))
    };
    for (&g, (adds, removes, delete)) in &group_plan {
        let dn = group_dn(g)?;
        let object = SeedObject::Group(g);
        if *delete {
            let e = b.export(s, object, &dn);
            e.change_type = PendingExportChangeType::Delete;
            push_kind(e, FollowUpKind::Delete);
            continue;
        }
        let held = members
            .get(&s.spaces.group_ids(g).0.cso)
            .cloned()
            .unwrap_or_default();
        let held_mvos: HashSet<Uuid> = held.iter().map(|m| m.mvo).collect();
        let mut add_refs = Vec::new();
        for &u in adds {
            let mvo = s.spaces.user_mvo(u);
            if held_mvos.contains(&mvo) || add_refs.iter().any(|(x, _)| *x == u) {
                continue;
            }
            add_refs.push((u, mvo));
        }
        let mut remove_refs = Vec::new();
        for &u in removes {
            let mvo = s.spaces.user_mvo(u);
            if let Some(m) = held.iter().find(|m| m.mvo == mvo)
                && let Some(mdn) = &m.dn
                && !remove_refs.iter().any(|(x, _)| *x == mvo)
            {
                remove_refs.push((mvo, mdn.clone()));
            }
        }
        let add_dns = existing_user_dns(
            pool,
            s,
            &add_refs.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
        )
        .await?;
        let e = b.export(s, object, &dn);
        for (u, mvo) in &add_refs {
            let Some(mdn) = add_dns.get(u) else {
                continue;
            };
            e.changes.push(change(
                "member",
                AvcType::Add,
                StagedValue::Reference {
                    mvo_id: *mvo,
                    dn: mdn.clone(),
                },
            ));
            push_kind(e, FollowUpKind::MemberAdds);
        }
        for (mvo, mdn) in remove_refs {
            e.changes.push(change(
                "member",
                AvcType::Remove,
                StagedValue::Reference {
                    mvo_id: mvo,
                    dn: mdn,
                },
            ));
            push_kind(e, FollowUpKind::MemberRemoves);
        }
        e.has_unresolved_references |= !e.changes.is_empty();
    }
    let per = spec.members_per_group;
    for &g in &add_groups {
        let dn = group_dn(g)?;
        let held: HashSet<Uuid> = members
            .get(&s.spaces.group_ids(g).0.cso)
            .map(|v| v.iter().map(|m| m.mvo).collect())
            .unwrap_or_default();
        // Random users outside the group and not changed this round; those that still exist.
        let mut candidates: Vec<usize> = Vec::new();
        for _ in 0..(per * 50 + 100) {
            if candidates.len() >= per * 4 + 16 {
                break;
            }
            let u = rng.usize(0..users);
            if !busy.contains(&u)
                && !held.contains(&s.spaces.user_mvo(u))
                && !candidates.contains(&u)
            {
                candidates.push(u);
            }
        }
        let existing = existing_user_dns(pool, s, &candidates).await?;
        let chosen: Vec<((usize, Uuid), String)> = candidates
            .into_iter()
            .filter_map(|u| {
                existing
                    .get(&u)
                    .map(|d| ((u, s.spaces.user_mvo(u)), d.clone()))
            })
            .take(per)
            .collect();
        let e = b.export(s, SeedObject::Group(g), &dn);
        for ((_, mvo), mdn) in chosen {
            e.changes.push(change(
                "member",
                AvcType::Add,
                StagedValue::Reference {
                    mvo_id: mvo,
                    dn: mdn,
                },
            ));
            e.has_unresolved_references = true;
            push_kind(e, FollowUpKind::MemberAdds);
        }
    }
    for &g in &remove_groups {
        let dn = group_dn(g)?;
        let held = members
            .get(&s.spaces.group_ids(g).0.cso)
            .cloned()
            .unwrap_or_default();
        // Keep at least one member: groupOfNames needs one.
        let mut candidates: Vec<&Member> = held
            .iter()
            .filter(|m| m.dn.is_some() && !busy_mvos.contains(&m.mvo))
            .collect();
        let n = per.min(held.len().saturating_sub(1)).min(candidates.len());
        rng.shuffle(&mut candidates);
        let e = b.export(s, SeedObject::Group(g), &dn);
        for m in candidates.into_iter().take(n) {
            e.changes.push(change(
                "member",
                AvcType::Remove,
                StagedValue::Reference {
                    mvo_id: m.mvo,
                    dn: m.dn.clone().unwrap_or_default(),
                },
            ));
            e.has_unresolved_references = true;
            push_kind(e, FollowUpKind::MemberRemoves);
        }
    }

    // Deleted users leave their groups (unless the group goes too).
    if spec.remove_deleted_from_groups {
        let deleted: Vec<(usize, Uuid, String)> = b
            .exports
            .values()
            .filter_map(|e| match (e.object, e.change_type) {
                (SeedObject::User(i), PendingExportChangeType::Delete) => {
                    Some((i, e.cso_id, e.dn.clone()))
                }
                _ => None,
            })
            .collect();
        if !deleted.is_empty() {
            let by_cso: HashMap<Uuid, (usize, String)> = deleted
                .iter()
                .map(|(i, c, d)| (*c, (*i, d.clone())))
                .collect();
            let csos: Vec<Uuid> = deleted.iter().map(|(_, c, _)| *c).collect();
            let holders = groups_holding(pool, member_attribute, &csos).await?;
            let group_index: HashMap<Uuid, usize> = (0..groups)
                .map(|g| (s.spaces.group_ids(g).0.cso, g))
                .collect();
            let holder_csos: Vec<Uuid> = holders.iter().map(|(g, _)| *g).collect();
            let holder_states = cso_states(pool, cs, &holder_csos).await?;
            for (gcso, member) in holders {
                let (Some(&g), Some((user, udn))) = (group_index.get(&gcso), by_cso.get(&member))
                else {
                    continue;
                };
                let object = SeedObject::Group(g);
                let deleting = b
                    .exports
                    .get(&object)
                    .is_some_and(|e| e.change_type == PendingExportChangeType::Delete);
                if deleting {
                    continue;
                }
                let planned = b.exports.contains_key(&object);
                let free = holder_states
                    .get(&gcso)
                    .is_some_and(|st| st.confirmed_and_free);
                if !planned && !free {
                    // The group already has a pending export; JIM would merge into it, we leave it.
                    continue;
                }
                let gdn = match b.exports.get(&object) {
                    Some(e) => e.dn.clone(),
                    None => match holder_states.get(&gcso).and_then(|st| st.dn.clone()) {
                        Some(d) => d,
                        None => continue,
                    },
                };
                let e = b.export(s, object, &gdn);
                e.changes.push(change(
                    "member",
                    AvcType::Remove,
                    StagedValue::Reference {
                        mvo_id: s.spaces.user_mvo(*user),
                        dn: udn.clone(),
                    },
                ));
                e.has_unresolved_references = true;
                push_kind(e, FollowUpKind::MemberRemoves);
            }
        }
    }

    // Ids and timestamps in a stable order, then the rows.
    let staged_at = spec.staged_at.unwrap_or_else(Utc::now);
    let mut exports: Vec<StagedExport> = b
        .exports
        .into_values()
        .filter(|e| e.change_type == PendingExportChangeType::Delete || !e.changes.is_empty())
        .collect();
    for e in &mut exports {
        e.pending_export_id = uuid(&mut rng);
        for c in &mut e.changes {
            c.id = uuid(&mut rng);
        }
    }
    write(pool, s, &exports, staged_at, &mut rng).await?;
    Ok(StagedFollowUps { exports })
}

/// Current DNs (from their CSOs) of those of `users` that still have a CSO in the system.
async fn existing_user_dns(
    pool: &PgPool,
    s: &SeededSystem,
    users: &[usize],
) -> Result<HashMap<usize, String>> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = users.iter().map(|&u| s.spaces.user_ids(u).0.cso).collect();
    let states = cso_states(pool, s.connected_system_id(), &ids).await?;
    Ok(users
        .iter()
        .zip(&ids)
        .filter_map(|(u, id)| states.get(id).and_then(|st| st.dn.clone()).map(|d| (*u, d)))
        .collect())
}

const PE_COLUMNS: [&str; 11] = [
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

async fn write(
    pool: &PgPool,
    s: &SeededSystem,
    exports: &[StagedExport],
    staged_at: DateTime<Utc>,
    rng: &mut Rng,
) -> Result<()> {
    if exports.is_empty() {
        return Ok(());
    }
    let cs = s.connected_system_id();
    let attribute_ids: Vec<Vec<i32>> = exports
        .iter()
        .map(|e| {
            e.changes
                .iter()
                .map(|c| match e.object {
                    SeedObject::User(_) => s.user_attribute_id(&c.attribute),
                    SeedObject::Group(_) => s.group_attribute_id(&c.attribute),
                })
                .collect::<Result<Vec<i32>>>()
        })
        .collect::<Result<_>>()?;
    let pe_rows: Vec<(StagedExport, DateTime<Utc>, Uuid)> = exports
        .iter()
        .enumerate()
        .map(|(k, e)| {
            (
                e.clone(),
                staged_at + chrono::Duration::milliseconds(k as i64),
                uuid(rng),
            )
        })
        .collect();
    let avc_rows: Vec<(StagedExport, Vec<i32>)> =
        exports.iter().cloned().zip(attribute_ids).collect();

    let mut tx = pool
        .begin()
        .await
        .sql_context(|| "starting to stage follow-ups".into())?;
    copy_in(
        &mut tx,
        "PendingExports",
        &PE_COLUMNS,
        move |w: &mut CopyWriter| {
            for (e, at, queued_by) in &pe_rows {
                w.row(PE_COLUMNS.len() as i16)?;
                w.uuid(e.pending_export_id);
                w.i32(cs);
                w.uuid(e.cso_id);
                w.i32(e.change_type.as_i32());
                w.i32(PendingExportStatus::Pending.as_i32());
                w.i32(0);
                w.i32(DEFAULT_MAX_RETRIES);
                w.uuid(e.mvo_id);
                w.bool(e.has_unresolved_references);
                w.timestamptz(*at);
                w.uuid(*queued_by);
            }
            Ok(())
        },
    )
    .await?;
    copy_in(
        &mut tx,
        "PendingExportAttributeValueChanges",
        &AVC_COLUMNS,
        move |w: &mut CopyWriter| {
            for (e, attributes) in &avc_rows {
                for (c, attribute) in e.changes.iter().zip(attributes) {
                    let value = match &c.value {
                        StagedValue::Text(t) => AvcValue::Text(t),
                        StagedValue::Reference { mvo_id, .. } => AvcValue::Reference(*mvo_id),
                    };
                    avc(
                        w,
                        c.id,
                        e.pending_export_id,
                        *attribute,
                        value,
                        c.change_type,
                    )?;
                }
            }
            Ok(())
        },
    )
    .await?;
    tx.commit()
        .await
        .sql_context(|| "committing the follow-ups".into())
}
