//! Seed data for an Active Directory target (Samba AD), in the shape of Scenario 8's Samba AD target
//! (`tests-and-scale.md` §2.3-§2.4): object types `user` and `group`, `objectGUID` (Guid) as the
//! primary anchor and `distinguishedName` as the secondary one, and Scenario 8's exported attributes.
//!
//! # What a seed writes
//!
//! [`seed_ad`] writes the configuration rows as [`super::seed`] does (same connector definition and
//! settings, with LDAPS on, `Create containers as needed?` on and Export Concurrency 4, JIM's Samba
//! value), containers `OU=Users,OU=CorpManaged`, `OU=Entitlements,OU=CorpManaged` and
//! `OU=Leavers,OU=CorpManaged` under the suffix, then per object one MVO, one PendingProvisioning CSO
//! holding its DN, and one Create pending export with one change per value:
//!
//! - users: `distinguishedName`, `objectClass` (`user`), `sAMAccountName`, `userPrincipalName`,
//!   `givenName`, `sn`, `displayName`, `cn`, `mail`, `title`, `department`, `company` (Text),
//!   `userAccountControl` 514 (Number: a normal account, disabled, since AD refuses to enable an
//!   account without a password) and, for some users, `manager` (a reference to a lower user);
//! - groups: `distinguishedName`, `objectClass` (`group`), `sAMAccountName`, `cn`, `displayName`,
//!   `description`, `groupType` (Number, JIM's mix of security/distribution scopes), `mail` for
//!   mail-enabled groups, one `member` Add per member and, for about 70 % of groups, `managedBy`.
//!
//! References hold the referenced MVO id, so groups (and users with a manager) are the
//! reference-bearing exports that must wait for their users' Creates, as Scenario 8 stages them.
//!
//! # The data
//!
//! Users and groups come from the same template layout as the OpenLDAP seed (names, titles,
//! departments, companies, group categories and memberships); only the shape differs. DNs follow
//! Scenario 8's Samba expressions, `CN=<EscapeDN(displayName)>,OU=Users,OU=CorpManaged,<suffix>` and
//! `CN=<EscapeDN(cn)>,OU=Entitlements,OU=CorpManaged,<suffix>`. Display names vary by user index
//! (`i mod 7`) so that DNs need every kind of escaping: a comma (`Last, First`), a plus, a leading
//! `#`, a leading space, non-ASCII letters, and quotes, angle brackets, a semicolon and a backslash;
//! every sixth group's name has a comma and a non-ASCII letter. `sAMAccountName` and
//! `userPrincipalName` must be unique in the whole domain, so when the suffix starts below the
//! domain (`OU=t1,DC=example,DC=test`) that first RDN's value prefixes them: several systems can
//! then share one domain controller.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use jim_export::model::{
    AttributeDataType, AttributePlurality, AttributeWritability, ConnectedSystemObjectJoinType,
    ConnectedSystemObjectStatus, DEFAULT_MAX_RETRIES, MetaverseObjectOrigin, MetaverseObjectStatus,
    PendingExportAttributeChangeStatus as AvcStatus, PendingExportAttributeChangeType as AvcType,
    PendingExportChangeType, PendingExportStatus,
};
use jim_export::plan::escape_value;
use sqlx::PgPool;
use uuid::Uuid;

use super::confirm::{self, ConfirmReport};
use super::copy::{CopyWriter, copy_in};
use super::data::{ObjectIds, Spaces, UserValues, mail_domain, uuid};
use super::expected::{DirectoryState, Entry};
use super::follow_ups::SeedObject;
use super::load::{
    CSO_COLUMNS, CSO_VALUE_COLUMNS, METAVERSE_GROUP_TYPE_ID, METAVERSE_USER_TYPE_ID, MVO_COLUMNS,
    PE_COLUMNS, staged_at,
};
use super::system::{self, AttrDef, DN, OBJECT_CLASS, SettingValue, SystemIds, text};
use super::{SeedCounts, SeedOptions, Target};
use crate::error::{Result, SqlContext, TestkitError};

/// The `ConnectedSystemObjectTypes.Name` of seeded AD users.
pub const USER_OBJECT_TYPE: &str = "user";
/// The `ConnectedSystemObjectTypes.Name` of seeded AD groups.
pub const GROUP_OBJECT_TYPE: &str = "group";

/// `userAccountControl` of a created account: NORMAL_ACCOUNT (0x200) | ACCOUNTDISABLE (0x2).
pub const DISABLED_ACCOUNT: i32 = 514;

/// The containers of an AD system (relative to the suffix), their names and descriptions.
pub(crate) const CONTAINERS: [(&str, &str, &str); 3] = [
    ("OU=Users,OU=CorpManaged", "Users", "Managed users"),
    (
        "OU=Entitlements,OU=CorpManaged",
        "Entitlements",
        "Managed groups",
    ),
    (
        "OU=Leavers,OU=CorpManaged",
        "Leavers",
        "Users moved out by follow-up changes",
    ),
];

const OBJECT_GUID: AttrDef = AttrDef {
    class_name: None,
    data_type: AttributeDataType::Guid,
    writability: AttributeWritability::ReadOnly,
    external_id: true,
    ..text("objectGUID", "top")
};

const fn number(name: &'static str, class_name: &'static str) -> AttrDef {
    AttrDef {
        data_type: AttributeDataType::Number,
        ..text(name, class_name)
    }
}

const fn reference(name: &'static str, class_name: &'static str, multi: bool) -> AttrDef {
    AttrDef {
        data_type: AttributeDataType::Reference,
        plurality: if multi {
            AttributePlurality::MultiValued
        } else {
            AttributePlurality::SingleValued
        },
        references_users: true,
        ..text(name, class_name)
    }
}

/// User attributes: the anchors, Scenario 8's Samba user attributes, `otherTelephone` (multi-valued,
/// for value adds and removes), `manager`, `userAccountControl`, `accountExpires` (LongNumber, JIM's
/// protected attribute), `objectClass`. The seed stages no `accountExpires`; follow-ups may.
pub(crate) const USER_ATTRIBUTES: [AttrDef; 17] = [
    DN,
    OBJECT_GUID,
    text("sAMAccountName", "securityPrincipal"),
    text("userPrincipalName", "user"),
    text("givenName", "user"),
    text("sn", "person"),
    text("displayName", "user"),
    text("cn", "top"),
    text("mail", "user"),
    text("title", "user"),
    text("department", "user"),
    text("company", "user"),
    AttrDef {
        plurality: AttributePlurality::MultiValued,
        ..text("otherTelephone", "organizationalPerson")
    },
    reference("manager", "user", false),
    number("userAccountControl", "user"),
    AttrDef {
        data_type: AttributeDataType::LongNumber,
        ..text("accountExpires", "user")
    },
    OBJECT_CLASS,
];

/// Group attributes: the anchors, Scenario 8's Samba group attributes, `objectClass`.
pub(crate) const GROUP_ATTRIBUTES: [AttrDef; 11] = [
    DN,
    OBJECT_GUID,
    text("sAMAccountName", "securityPrincipal"),
    text("cn", "top"),
    text("displayName", "group"),
    text("description", "top"),
    number("groupType", "group"),
    text("mail", "group"),
    reference("member", "group", true),
    reference("managedBy", "group", false),
    OBJECT_CLASS,
];

/// The values an AD system holds for the settings that differ from the OpenLDAP seed.
pub(crate) fn setting_value(name: &str, o: &SeedOptions) -> Option<SettingValue> {
    Some(match name {
        "Use Secure Connection (LDAPS)?" => SettingValue::Checkbox(true),
        "Username" => SettingValue::Text(format!("Administrator@{}", mail_domain(&o.suffix))),
        "Export Concurrency" => SettingValue::Int(4),
        "Create containers as needed?" => SettingValue::Checkbox(true),
        _ => return None,
    })
}

/// Characters `sAMAccountName` may not hold.
const SAM_FORBIDDEN: &[char] = &[
    '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '@',
];

/// `groupType` values: JIM's mix (`Test-GroupHelpers.ps1`), by `g mod 20`, and whether the group is
/// mail-enabled.
fn group_type(g: usize) -> (i32, bool) {
    const SECURITY: u32 = 0x8000_0000;
    let (scope, security, mail) = match g % 20 {
        0..=5 => (8, true, true),    // 30 % universal security, mail-enabled
        6..=10 => (8, true, false),  // 25 % universal security
        11..=13 => (2, true, false), // 15 % global security
        14 => (4, true, false),      // 5 % domain-local security
        15..=18 => (8, false, true), // 20 % universal distribution, mail-enabled
        _ => (2, false, true),       // 5 % global distribution, mail-enabled
    };
    let bits = if security { SECURITY | scope } else { scope };
    (bits as i32, mail)
}

/// A seeded AD user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdUser {
    /// Index (0-based).
    pub index: usize,
    /// Ids of its rows.
    pub ids: ObjectIds,
    /// Its DN as staged (`CN=<escaped displayName>,OU=Users,OU=CorpManaged,<suffix>`).
    pub dn: String,
    /// `sAMAccountName`.
    pub sam_account_name: String,
    /// `userPrincipalName`: `<sAMAccountName>@<domain>`.
    pub user_principal_name: String,
    /// `givenName`.
    pub given_name: String,
    /// `sn`.
    pub sn: String,
    /// `displayName` and `cn`.
    pub display_name: String,
    /// `mail`.
    pub mail: String,
    /// `title`.
    pub title: String,
    /// `department`.
    pub department: String,
    /// `company`.
    pub company: String,
    /// The manager's user index.
    pub manager: Option<usize>,
}

impl AdUser {
    /// The single-valued text attributes in staging order, by LDAP name.
    pub fn text_attributes(&self) -> [(&'static str, &str); 10] {
        [
            ("sAMAccountName", &self.sam_account_name),
            ("userPrincipalName", &self.user_principal_name),
            ("givenName", &self.given_name),
            ("sn", &self.sn),
            ("displayName", &self.display_name),
            ("cn", &self.display_name),
            ("mail", &self.mail),
            ("title", &self.title),
            ("department", &self.department),
            ("company", &self.company),
        ]
    }
}

/// A seeded AD group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdGroup {
    /// Index among the template's groups.
    pub index: usize,
    /// Ids of its rows.
    pub ids: ObjectIds,
    /// Its DN as staged.
    pub dn: String,
    /// `cn` and `displayName`.
    pub cn: String,
    /// `sAMAccountName`.
    pub sam_account_name: String,
    /// `description`.
    pub description: String,
    /// `groupType`.
    pub group_type: i32,
    /// `mail`, for mail-enabled groups.
    pub mail: Option<String>,
    /// Members' user indices, in staging order.
    pub members: Vec<usize>,
    /// `managedBy`'s user index.
    pub managed_by: Option<usize>,
}

impl AdGroup {
    /// The single-valued text attributes in staging order, by LDAP name (`mail` when set).
    pub fn text_attributes(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![
            ("sAMAccountName", self.sam_account_name.as_str()),
            ("cn", &self.cn),
            ("displayName", &self.cn),
            ("description", &self.description),
        ];
        if let Some(m) = &self.mail {
            out.push(("mail", m));
        }
        out
    }
}

/// A seeded AD connected system.
#[derive(Debug, Clone)]
pub struct SeededAdSystem {
    /// The options it was seeded with.
    pub options: SeedOptions,
    /// Ids of its configuration rows and attribute definitions.
    pub ids: SystemIds,
    /// Row counts.
    pub counts: SeedCounts,
    /// The users, by index.
    pub users: Vec<AdUser>,
    /// The groups, by index.
    pub groups: Vec<AdGroup>,
    spaces: Spaces,
}

impl SeededAdSystem {
    /// `ConnectedSystems.Id`.
    pub fn connected_system_id(&self) -> i32 {
        self.ids.connected_system_id
    }

    /// The suffix everything lives under.
    pub fn suffix(&self) -> &str {
        &self.options.suffix
    }

    /// `OU=Users,OU=CorpManaged,<suffix>`.
    pub fn users_ou(&self) -> String {
        format!("{},{}", CONTAINERS[0].0, self.suffix())
    }

    /// `OU=Entitlements,OU=CorpManaged,<suffix>`.
    pub fn groups_ou(&self) -> String {
        format!("{},{}", CONTAINERS[1].0, self.suffix())
    }

    /// `OU=Leavers,OU=CorpManaged,<suffix>`: not created by the seed, the target of follow-up moves.
    pub fn leavers_ou(&self) -> String {
        format!("{},{}", CONTAINERS[2].0, self.suffix())
    }

    /// `ConnectedSystemAttributes.Id` of a user attribute.
    pub fn user_attribute_id(&self, name: &str) -> Result<i32> {
        self.ids.user_attributes.get(name).copied().ok_or_else(|| {
            TestkitError::Seed(format!("{USER_OBJECT_TYPE} has no attribute {name}"))
        })
    }

    /// `ConnectedSystemAttributes.Id` of a group attribute.
    pub fn group_attribute_id(&self, name: &str) -> Result<i32> {
        self.ids.group_attributes.get(name).copied().ok_or_else(|| {
            TestkitError::Seed(format!("{GROUP_OBJECT_TYPE} has no attribute {name}"))
        })
    }

    /// The MVO id of user `i` (what references to it hold when staged).
    pub fn user_mvo_id(&self, i: usize) -> Uuid {
        self.spaces.user_mvo(i)
    }

    /// The ids of a seeded object.
    pub fn object_ids(&self, object: SeedObject) -> ObjectIds {
        match object {
            SeedObject::User(i) => self.spaces.user_ids(i).0,
            SeedObject::Group(g) => self.spaces.group_ids(g).0,
        }
    }

    /// The directory content a correct initial export produces (`objectClass` left out: the server
    /// adds the superior classes), numbers as decimal text and references as DNs.
    pub fn expected_directory(&self) -> DirectoryState {
        let mut state = DirectoryState::default();
        for u in &self.users {
            let mut entry = Entry::new();
            for (name, value) in u.text_attributes() {
                entry.insert(name.into(), [value.to_string()].into());
            }
            entry.insert(
                "userAccountControl".into(),
                [DISABLED_ACCOUNT.to_string()].into(),
            );
            if let Some(m) = u.manager {
                entry.insert("manager".into(), [self.users[m].dn.clone()].into());
            }
            state.entries.insert(u.dn.clone(), entry);
        }
        for g in &self.groups {
            let mut entry = Entry::new();
            for (name, value) in g.text_attributes() {
                entry.insert(name.into(), [value.to_string()].into());
            }
            entry.insert("groupType".into(), [g.group_type.to_string()].into());
            let members: BTreeSet<String> = g
                .members
                .iter()
                .map(|&u| self.users[u].dn.clone())
                .collect();
            if !members.is_empty() {
                entry.insert("member".into(), members);
            }
            if let Some(m) = g.managed_by {
                entry.insert("managedBy".into(), [self.users[m].dn.clone()].into());
            }
            state.entries.insert(g.dn.clone(), entry);
        }
        state
    }
}

/// The prefix of account names: the value of the suffix's first RDN when it is not a `DC=`.
fn account_prefix(suffix: &str) -> Option<String> {
    let first = suffix.split(',').next()?;
    let (ty, value) = first.split_once('=')?;
    (!ty.trim().eq_ignore_ascii_case("dc")).then(|| {
        value
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect()
    })
}

/// The display name of user `i`: `i mod 7` picks a form whose DN needs escaping (0 needs none).
fn display_name(first: &str, last: &str, i: usize) -> String {
    match i % 7 {
        1 => format!("{last}, {first} (S8-{i})"),
        2 => format!("{first} + {last} (S8-{i})"),
        3 => format!("#{first} {last} (S8-{i})"),
        4 => format!(" {first} {last} (S8-{i})"),
        5 => format!("{first}ë Ørsted-{last} (S8-{i})"),
        6 => format!("{first} \"Nick\" <{last}>; Jr\\ (S8-{i})"),
        _ => format!("{first} {last} (S8-{i})"),
    }
}

fn build_users(o: &SeedOptions, spaces: &Spaces, domain: &str, users: usize) -> Vec<AdUser> {
    let prefix = account_prefix(&o.suffix);
    let ou = format!("{},{}", CONTAINERS[0].0, o.suffix);
    (0..users)
        .map(|i| {
            let v = UserValues::new(spaces, domain, i);
            let sam = match &prefix {
                Some(p) => format!("{p}.{}", v.uid),
                None => v.uid.clone(),
            };
            let display = display_name(v.given_name, v.sn, i);
            // About one user in four reports to a lower one, so small templates have managers.
            let manager = v.manager.or_else(|| (i % 4 == 3).then_some(i / 2));
            AdUser {
                index: i,
                ids: spaces.user_ids(i).0,
                dn: format!("CN={},{ou}", escape_value(&display)),
                user_principal_name: format!("{sam}@{domain}"),
                mail: format!("{sam}@{domain}"),
                sam_account_name: sam,
                given_name: v.given_name.to_string(),
                sn: v.sn.to_string(),
                display_name: display,
                title: v.title.to_string(),
                department: v.department.to_string(),
                company: v.company.to_string(),
                manager,
            }
        })
        .collect()
}

fn build_groups(o: &SeedOptions, spaces: &Spaces, domain: &str) -> Vec<AdGroup> {
    let prefix = account_prefix(&o.suffix);
    let ou = format!("{},{}", CONTAINERS[1].0, o.suffix);
    let layout = o.template.layout();
    let users = layout.users();
    layout
        .iter()
        .map(|rule| {
            let g = rule.index;
            let cn = if g % 6 == 5 {
                format!("{}, Zürich", rule.cn())
            } else {
                rule.cn()
            };
            let base: String = cn.chars().filter(|c| !SAM_FORBIDDEN.contains(c)).collect();
            let sam = match &prefix {
                Some(p) => format!("{p}.{base}"),
                None => base,
            };
            let (group_type, mail_enabled) = group_type(g);
            let mail = mail_enabled.then(|| {
                let local: String = sam
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                    .collect();
                format!("{}@{domain}", local.to_ascii_lowercase())
            });
            AdGroup {
                index: g,
                ids: spaces.group_ids(g).0,
                dn: format!("CN={},{ou}", escape_value(&cn)),
                description: rule.description(),
                cn,
                sam_account_name: sam,
                group_type,
                mail,
                members: rule.members().collect(),
                managed_by: (g % 10 < 7).then(|| (g * 7 + 3) % users),
            }
        })
        .collect()
}

/// Attribute ids the change rows need.
struct AdIds {
    user: BTreeMap<String, i32>,
    group: BTreeMap<String, i32>,
}

impl AdIds {
    fn user(&self, name: &str) -> Result<i32> {
        self.user.get(name).copied().ok_or_else(|| {
            TestkitError::Seed(format!("{USER_OBJECT_TYPE} has no attribute {name}"))
        })
    }

    fn group(&self, name: &str) -> Result<i32> {
        self.group.get(name).copied().ok_or_else(|| {
            TestkitError::Seed(format!("{GROUP_OBJECT_TYPE} has no attribute {name}"))
        })
    }
}

/// The value of a staged AD change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdValue {
    /// No value (a clear for `Update`, nothing for `RemoveAll`).
    None,
    /// `StringValue`.
    Text(String),
    /// `IntValue` (Number attributes such as `userAccountControl`).
    Int(i32),
    /// `LongValue` (LongNumber attributes such as `accountExpires`).
    Long(i64),
    /// A reference to seeded user `i` (`UnresolvedReferenceValue` = its MVO id).
    User(usize),
    /// A reference to any MVO, e.g. one with no CSO in the system (never resolvable).
    Mvo(Uuid),
}

/// One staged attribute change of an AD export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdChange {
    /// LDAP attribute name (one of the object type's attributes).
    pub attribute: String,
    /// `Add`, `Update`, `Remove` or `RemoveAll`.
    pub change_type: AvcType,
    /// The value.
    pub value: AdValue,
}

/// A pending export to stage on a seeded AD object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdExport {
    /// The object.
    pub object: SeedObject,
    /// `Create`, `Update` or `Delete`.
    pub change_type: PendingExportChangeType,
    /// Its changes.
    pub changes: Vec<AdChange>,
}

impl AdExport {
    /// An `Update` of `object` with no changes yet.
    pub fn update(object: SeedObject) -> Self {
        Self {
            object,
            change_type: PendingExportChangeType::Update,
            changes: Vec::new(),
        }
    }

    /// A `Delete` of `object`.
    pub fn delete(object: SeedObject) -> Self {
        Self {
            object,
            change_type: PendingExportChangeType::Delete,
            changes: Vec::new(),
        }
    }

    /// Adds a change.
    pub fn with(mut self, attribute: &str, change_type: AvcType, value: AdValue) -> Self {
        self.changes.push(AdChange {
            attribute: attribute.to_string(),
            change_type,
            value,
        });
        self
    }

    /// Whether any change is a reference.
    pub fn has_references(&self) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(c.value, AdValue::User(_) | AdValue::Mvo(_)))
    }
}

const AD_AVC_COLUMNS: [&str; 9] = [
    "Id",
    "PendingExportId",
    "AttributeId",
    "StringValue",
    "IntValue",
    "UnresolvedReferenceValue",
    "ChangeType",
    "Status",
    "ExportAttemptCount",
];

/// One change row: (id, pending export, attribute, value, change type).
type ChangeRow = (Uuid, Uuid, i32, AdValueRow, AvcType);

/// A change's value as written: text, number or referenced MVO.
#[derive(Debug, Clone)]
enum AdValueRow {
    Text(String),
    Int(i32),
    Reference(Uuid),
}

fn write_change(
    w: &mut CopyWriter,
    row: &ChangeRow,
) -> std::result::Result<(), super::copy::Closed> {
    let (id, pe, attribute, value, change) = row;
    w.row(AD_AVC_COLUMNS.len() as i16)?;
    w.uuid(*id);
    w.uuid(*pe);
    w.i32(*attribute);
    match value {
        AdValueRow::Text(s) => {
            w.text(s);
            w.null();
            w.null();
        }
        AdValueRow::Int(i) => {
            w.null();
            w.i32(*i);
            w.null();
        }
        AdValueRow::Reference(mvo) => {
            w.null();
            w.null();
            w.text(&mvo.hyphenated().to_string());
        }
    }
    w.i32(change.as_i32());
    w.i32(AvcStatus::Pending.as_i32());
    w.i32(0);
    Ok(())
}

/// Seeds one AD connected system with the template's objects, staged for their initial
/// provisioning (see the module documentation). `options.target` must be
/// [`Target::ActiveDirectory`] (see [`SeedOptions::active_directory`]).
pub async fn seed_ad(pool: &PgPool, options: &SeedOptions) -> Result<SeededAdSystem> {
    if options.target != Target::ActiveDirectory {
        return Err(TestkitError::Seed(
            "seed_ad() needs SeedOptions with target ActiveDirectory".into(),
        ));
    }
    options.validate()?;
    let mut options = options.clone();
    if options.system_name.is_none() {
        options.system_name = Some(format!("Samba AD {}", options.suffix));
    }
    let mut conn = pool
        .acquire()
        .await
        .sql_context(|| "acquiring a connection for the AD seed".into())?;
    let ids = system::create(&mut conn, &options).await?;
    drop(conn);

    let spaces = Spaces::new(options.seed, &options.suffix);
    let domain = mail_domain(&options.suffix);
    let layout = options.template.layout();
    let users = build_users(&options, &spaces, &domain, layout.users());
    let groups = build_groups(&options, &spaces, &domain);
    let attr = AdIds {
        user: ids.user_attributes.clone(),
        group: ids.group_attributes.clone(),
    };

    // Rows per table, in load order: users first, then groups (their `CreatedAt` order).
    let n_users = users.len();
    let at = |k: usize| staged_at(options.base_time, options.created_at, n_users, k);
    let projected = options.base_time - chrono::Duration::hours(1);
    let mut mvos = Vec::new();
    let mut csos = Vec::new();
    let mut dn_values = Vec::new();
    let mut exports = Vec::new();
    let mut changes: Vec<ChangeRow> = Vec::new();
    let text = |s: &str| AdValueRow::Text(s.to_string());
    for u in &users {
        let (_, mut r) = spaces.user_ids(u.index);
        let k = u.index;
        let pe = u.ids.pending_export;
        mvos.push((u.ids.mvo, METAVERSE_USER_TYPE_ID, u.display_name.clone()));
        csos.push((
            u.ids,
            ids.user_type_id,
            attr.user("objectGUID")?,
            attr.user("distinguishedName")?,
            at(k),
        ));
        dn_values.push((
            u.ids.cso_dn_value,
            attr.user("distinguishedName")?,
            u.ids.cso,
            u.dn.clone(),
        ));
        exports.push((u.ids, u.manager.is_some(), at(k)));
        let mut push = |name: &str, value: AdValueRow, change: AvcType| -> Result<()> {
            changes.push((uuid(&mut r), pe, attr.user(name)?, value, change));
            Ok(())
        };
        push("distinguishedName", text(&u.dn), AvcType::Update)?;
        push("objectClass", text(USER_OBJECT_TYPE), AvcType::Add)?;
        for (name, value) in u.text_attributes() {
            push(name, text(value), AvcType::Update)?;
        }
        push(
            "userAccountControl",
            AdValueRow::Int(DISABLED_ACCOUNT),
            AvcType::Update,
        )?;
        if let Some(m) = u.manager {
            push(
                "manager",
                AdValueRow::Reference(spaces.user_mvo(m)),
                AvcType::Update,
            )?;
        }
    }
    for g in &groups {
        let (_, mut r) = spaces.group_ids(g.index);
        let k = n_users + g.index;
        let pe = g.ids.pending_export;
        mvos.push((g.ids.mvo, METAVERSE_GROUP_TYPE_ID, g.cn.clone()));
        csos.push((
            g.ids,
            ids.group_type_id,
            attr.group("objectGUID")?,
            attr.group("distinguishedName")?,
            at(k),
        ));
        dn_values.push((
            g.ids.cso_dn_value,
            attr.group("distinguishedName")?,
            g.ids.cso,
            g.dn.clone(),
        ));
        let references = !g.members.is_empty() || g.managed_by.is_some();
        exports.push((g.ids, references, at(k)));
        let mut push = |name: &str, value: AdValueRow, change: AvcType| -> Result<()> {
            changes.push((uuid(&mut r), pe, attr.group(name)?, value, change));
            Ok(())
        };
        push("distinguishedName", text(&g.dn), AvcType::Update)?;
        push("objectClass", text(GROUP_OBJECT_TYPE), AvcType::Add)?;
        for (name, value) in g.text_attributes() {
            push(name, text(value), AvcType::Update)?;
        }
        push("groupType", AdValueRow::Int(g.group_type), AvcType::Update)?;
        for &m in &g.members {
            push(
                "member",
                AdValueRow::Reference(spaces.user_mvo(m)),
                AvcType::Add,
            )?;
        }
        if let Some(m) = g.managed_by {
            push(
                "managedBy",
                AdValueRow::Reference(spaces.user_mvo(m)),
                AvcType::Update,
            )?;
        }
    }
    let reference_changes = changes
        .iter()
        .filter(|c| matches!(c.3, AdValueRow::Reference(_)))
        .count() as u64;
    let cs = ids.connected_system_id;
    let partition = ids.partition_id;
    let metaverse = options.metaverse_objects;

    let mut tx = pool
        .begin()
        .await
        .sql_context(|| "starting the AD seed load".into())?;
    let metaverse_objects = if metaverse {
        copy_in(&mut tx, "MetaverseObjects", &MVO_COLUMNS, move |w| {
            for (id, type_id, name) in &mvos {
                w.row(MVO_COLUMNS.len() as i16)?;
                w.uuid(*id);
                w.timestamptz(projected);
                w.i32(*type_id);
                w.i32(MetaverseObjectStatus::Normal.as_i32());
                w.i32(0); // DeletionInitiatedByType: NotSet
                w.i32(MetaverseObjectOrigin::Projected.as_i32());
                w.text(name);
                w.bool(false);
            }
            Ok(())
        })
        .await?
    } else {
        0
    };
    let connected_system_objects =
        copy_in(&mut tx, "ConnectedSystemObjects", &CSO_COLUMNS, move |w| {
            for (ids, type_id, anchor, secondary, at) in &csos {
                w.row(CSO_COLUMNS.len() as i16)?;
                w.uuid(ids.cso);
                w.timestamptz(*at);
                w.i32(*type_id);
                w.i32(cs);
                w.i32(*anchor);
                w.i32(*secondary);
                w.i32(ConnectedSystemObjectStatus::PendingProvisioning.as_i32());
                w.uuid(ids.mvo);
                w.i32(ConnectedSystemObjectJoinType::Provisioned.as_i32());
                w.timestamptz(*at);
                w.i32(partition);
                w.bool(false);
            }
            Ok(())
        })
        .await?;
    let cso_values = copy_in(
        &mut tx,
        "ConnectedSystemObjectAttributeValues",
        &CSO_VALUE_COLUMNS,
        move |w| {
            for (id, attribute, cso, dn) in &dn_values {
                w.row(CSO_VALUE_COLUMNS.len() as i16)?;
                w.uuid(*id);
                w.i32(*attribute);
                w.uuid(*cso);
                w.text(dn);
            }
            Ok(())
        },
    )
    .await?;
    let pending_exports = copy_in(&mut tx, "PendingExports", &PE_COLUMNS, move |w| {
        for (ids, references, at) in &exports {
            w.row(PE_COLUMNS.len() as i16)?;
            w.uuid(ids.pending_export);
            w.i32(cs);
            w.uuid(ids.cso);
            w.i32(PendingExportChangeType::Create.as_i32());
            w.i32(PendingExportStatus::Pending.as_i32());
            w.i32(0);
            w.i32(DEFAULT_MAX_RETRIES);
            w.uuid(ids.mvo);
            w.bool(*references);
            w.timestamptz(*at);
            w.uuid(ids.queued_by);
        }
        Ok(())
    })
    .await?;
    let attribute_changes = copy_in(
        &mut tx,
        "PendingExportAttributeValueChanges",
        &AD_AVC_COLUMNS,
        move |w| {
            for row in &changes {
                write_change(w, row)?;
            }
            Ok(())
        },
    )
    .await?;
    tx.commit()
        .await
        .sql_context(|| "committing the AD seed load".into())?;

    let memberships: u64 = groups.iter().map(|g| g.members.len() as u64).sum();
    let managers = users.iter().filter(|u| u.manager.is_some()).count() as u64;
    let managed = groups.iter().filter(|g| g.managed_by.is_some()).count() as u64;
    let counts = SeedCounts {
        users: users.len() as u64,
        groups: groups.len() as u64,
        memberships,
        managers,
        metaverse_objects,
        connected_system_objects,
        cso_values,
        pending_exports,
        attribute_changes,
        reference_changes,
        reference_bearing_exports: managers
            + groups
                .iter()
                .filter(|g| !g.members.is_empty() || g.managed_by.is_some())
                .count() as u64,
    };
    debug_assert_eq!(reference_changes, memberships + managers + managed);
    Ok(SeededAdSystem {
        options,
        ids,
        counts,
        users,
        groups,
        spaces,
    })
}

/// Does what JIM's confirming import does for the exports the engine wrote (see
/// [`super::confirm_exported`]); the `objectGUID` anchors the engine wrote back stay.
pub async fn confirm_ad_exported(pool: &PgPool, system: &SeededAdSystem) -> Result<ConfirmReport> {
    confirm::confirm(pool, system.connected_system_id()).await
}

/// Pretends every pending export of the AD system was exported successfully, then confirms (see
/// [`super::confirm_all_as_exported`]): a way to stage follow-ups after a run that wrote nothing
/// back, such as the benchmark's directory-only limit. The fake anchor lands as text in the
/// `objectGUID` slot, where nothing reads it: AD follow-ups address their objects by DN.
pub async fn confirm_all_ad_as_exported(
    pool: &PgPool,
    system: &SeededAdSystem,
) -> Result<(super::ExportShortcutReport, ConfirmReport)> {
    confirm::mark_all_exported(pool, system.connected_system_id()).await
}

/// Stages pending exports on seeded AD objects, one per object (JIM's unique index allows no more;
/// confirm earlier ones first), `CreatedAt` from `staged_at` (or now) 1 ms apart in the given
/// order. Returns the pending export ids (random, so that repeated calls never collide).
pub async fn stage_ad_exports(
    pool: &PgPool,
    system: &SeededAdSystem,
    exports: &[AdExport],
    staged_at: Option<DateTime<Utc>>,
) -> Result<Vec<Uuid>> {
    let start = staged_at.unwrap_or_else(Utc::now);
    let cs = system.connected_system_id();
    let mut rng = system.spaces.follow_up_rng(fastrand::u64(..));
    let mut tx = pool
        .begin()
        .await
        .sql_context(|| "starting to stage AD exports".into())?;
    let mut ids = Vec::with_capacity(exports.len());
    for (k, e) in exports.iter().enumerate() {
        let object = system.object_ids(e.object);
        let pe = uuid(&mut rng);
        sqlx::query(
            "INSERT INTO \"PendingExports\" (\"Id\", \"ConnectedSystemId\", \"ConnectedSystemObjectId\", \
             \"ChangeType\", \"Status\", \"ErrorCount\", \"MaxRetries\", \"SourceMetaverseObjectId\", \
             \"HasUnresolvedReferences\", \"CreatedAt\", \"QueuedByRunProfileExecutionItemId\") \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10)",
        )
        .bind(pe)
        .bind(cs)
        .bind(object.cso)
        .bind(e.change_type.as_i32())
        .bind(PendingExportStatus::Pending.as_i32())
        .bind(DEFAULT_MAX_RETRIES)
        .bind(object.mvo)
        .bind(e.has_references())
        .bind(start + chrono::Duration::milliseconds(k as i64))
        .bind(uuid(&mut rng))
        .execute(&mut *tx)
        .await
        .sql_context(|| format!("staging the pending export of {:?}", e.object))?;
        for c in &e.changes {
            let attribute = match e.object {
                SeedObject::User(_) => system.user_attribute_id(&c.attribute)?,
                SeedObject::Group(_) => system.group_attribute_id(&c.attribute)?,
            };
            let (s, i, l, r) = match &c.value {
                AdValue::None => (None, None, None, None),
                AdValue::Text(t) => (Some(t.clone()), None, None, None),
                AdValue::Int(n) => (None, Some(*n), None, None),
                AdValue::Long(n) => (None, None, Some(*n), None),
                AdValue::User(u) => (None, None, None, Some(system.user_mvo_id(*u).to_string())),
                AdValue::Mvo(m) => (None, None, None, Some(m.to_string())),
            };
            sqlx::query(
                "INSERT INTO \"PendingExportAttributeValueChanges\" (\"Id\", \"PendingExportId\", \
                 \"AttributeId\", \"StringValue\", \"IntValue\", \"LongValue\", \"UnresolvedReferenceValue\", \
                 \"ChangeType\", \"Status\", \"ExportAttemptCount\") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)",
            )
            .bind(uuid(&mut rng))
            .bind(pe)
            .bind(attribute)
            .bind(s)
            .bind(i)
            .bind(l)
            .bind(r)
            .bind(c.change_type.as_i32())
            .bind(AvcStatus::Pending.as_i32())
            .execute(&mut *tx)
            .await
            .sql_context(|| format!("staging a change of {:?}", e.object))?;
        }
        ids.push(pe);
    }
    tx.commit()
        .await
        .sql_context(|| "committing the AD exports".into())?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::Template;
    use jim_export::plan::Dn;

    fn options() -> SeedOptions {
        SeedOptions::active_directory(Template::Micro, "OU=t1,DC=example,DC=test")
    }

    #[test]
    fn users_have_escaped_dns_and_unique_accounts() {
        let o = options();
        let spaces = Spaces::new(o.seed, &o.suffix);
        let users = build_users(&o, &spaces, "example.test", 10);
        let mut sams: Vec<&str> = users.iter().map(|u| u.sam_account_name.as_str()).collect();
        sams.sort();
        sams.dedup();
        assert_eq!(sams.len(), 10);
        assert!(users.iter().all(|u| u.sam_account_name.starts_with("t1.")));
        assert_eq!(
            users[0].user_principal_name,
            format!("{}@example.test", users[0].sam_account_name)
        );
        for u in &users {
            let dn = Dn::parse(&u.dn).expect("every staged DN parses");
            assert_eq!(dn.leaf().unwrap().value(), u.display_name, "{}", u.dn);
            assert_eq!(
                dn.parent_text(),
                "OU=Users,OU=CorpManaged,OU=t1,DC=example,DC=test"
            );
            assert!(u.manager.is_none_or(|m| m < u.index));
        }
        assert!(
            users[1].dn.starts_with("CN=Brennan\\, Ben (S8-1),"),
            "{}",
            users[1].dn
        );
        assert!(users[2].dn.contains("\\+"), "{}", users[2].dn);
        assert!(users[3].dn.starts_with("CN=\\#"), "{}", users[3].dn);
        assert!(users[4].dn.starts_with("CN=\\ "), "{}", users[4].dn);
        assert!(!users[5].dn.is_ascii(), "{}", users[5].dn);
        assert!(
            users[6].dn.contains("\\\"Nick\\\" \\<") && users[6].dn.contains("\\;"),
            "{}",
            users[6].dn
        );
        assert!(users.iter().any(|u| u.manager.is_some()));
    }

    #[test]
    fn groups_follow_the_samba_shape() {
        let o = options();
        let spaces = Spaces::new(o.seed, &o.suffix);
        let groups = build_groups(&o, &spaces, "example.test");
        assert_eq!(groups.len(), Template::Micro.groups());
        for g in &groups {
            assert!(
                !g.sam_account_name.contains(SAM_FORBIDDEN),
                "{}",
                g.sam_account_name
            );
            let dn = Dn::parse(&g.dn).unwrap();
            assert_eq!(dn.leaf().unwrap().value(), g.cn);
            assert!(!g.members.is_empty());
        }
        assert!(groups[5].dn.contains("\\, Zürich"), "{}", groups[5].dn);
        let managed = groups.iter().filter(|g| g.managed_by.is_some()).count();
        assert!(
            managed * 10 >= groups.len() * 6,
            "about 70 % have managedBy"
        );
        assert_eq!(group_type(0), (i32::MIN | 8, true));
        assert_eq!(group_type(12), (i32::MIN | 2, false));
        assert_eq!(group_type(16), (8, true));
        assert_eq!(account_prefix("DC=example,DC=test"), None);
    }
}
