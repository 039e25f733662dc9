//! Shared helpers of the `directory_*` integration tests: the testkit's slapd, an OU per test, JIM-shaped
//! object types, pending exports and CSOs, and reads of what the directory holds.

use std::collections::BTreeSet;

use crate::Slapd;
use chrono::Utc;
use jim_export::config::{Dialect, DirectoryConfig, ExportSettings};
use jim_export::directory::{Directory, DirectoryTuning, ExportJob, ExportResult};
use jim_export::model::{
    AttributeDataType, AttributeDefinition, AttributePlurality, AttributeValueChange,
    AttributeWritability, ConnectedSystemObject, ConnectedSystemObjectJoinType,
    ConnectedSystemObjectStatus, CsoAttributeValue, ObjectType, PendingExport,
    PendingExportAttributeChangeStatus, PendingExportChangeType, PendingExportStatus, ValueSlots,
};
use jim_export::plan::{PlanInput, Planner};
use ldap3::Mod;
use uuid::Uuid;

/// What a `directory_*` test returns, so it can use `?` on any error.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;
/// Short name of the attribute change types, as the tests write them in every change.
pub use jim_export::model::PendingExportAttributeChangeType as C;

/// The shared slapd and a fresh OU for one test.
pub struct Fixture {
    /// The process's shared slapd.
    pub slapd: &'static Slapd,
    /// `ou=<name>,<suffix>`: everything the test writes lives below it.
    pub base: String,
}

impl Fixture {
    /// The shared slapd with `ou=<name>` (emptied if a previous run left it) under its suffix.
    pub async fn new(name: &str) -> Result<Fixture, Box<dyn std::error::Error>> {
        let slapd = Slapd::shared().await?;
        let base = format!("ou={name},{}", slapd.suffix());
        let mut ldap = slapd.admin_ldap().await?;
        let r = ldap
            .add(
                &base,
                vec![
                    ("objectClass", ["organizationalUnit"].into()),
                    ("ou", [name].into()),
                ],
            )
            .await?;
        assert!(r.rc == 0 || r.rc == 68, "creating {base}: {r}");
        ldap.unbind().await.ok();
        Ok(Fixture { slapd, base })
    }

    /// The directory configuration: plain LDAP, bound as the admin.
    pub fn config(&self) -> DirectoryConfig {
        DirectoryConfig::simple(
            self.slapd.ldap_url(),
            self.slapd.admin_dn(),
            self.slapd.admin_password(),
        )
        .allowing_password_without_tls()
    }

    /// The engine's `Directory` on [`Fixture::config`], with `tuning`.
    pub async fn connect(
        &self,
        tuning: DirectoryTuning,
    ) -> Result<Directory, Box<dyn std::error::Error>> {
        Ok(Directory::connect_with(&self.config(), tuning).await?)
    }

    /// `rdn` below the test's OU.
    pub fn dn(&self, rdn: &str) -> String {
        format!("{rdn},{}", self.base)
    }

    /// The values of `attr` of `dn`, or `None` when the entry does not exist.
    pub async fn values(
        &self,
        dn: &str,
        attr: &str,
    ) -> Result<Option<BTreeSet<String>>, Box<dyn std::error::Error>> {
        let entry = self.slapd.read_entry(dn, &[attr]).await?;
        Ok(entry.map(|e| {
            e.attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                .map(|(_, v)| v.iter().cloned().collect())
                .unwrap_or_default()
        }))
    }

    /// Whether `dn` exists.
    pub async fn exists(&self, dn: &str) -> Result<bool, Box<dyn std::error::Error>> {
        Ok(self.slapd.read_entry(dn, &["1.1"]).await?.is_some())
    }

    /// The `entryUUID` of `dn`, or `None` when the entry does not exist.
    pub async fn entry_uuid(&self, dn: &str) -> Result<Option<String>, Box<dyn std::error::Error>> {
        Ok(self
            .values(dn, "entryUUID")
            .await?
            .and_then(|v| v.into_iter().next()))
    }

    /// Adds an entry directly, as the admin.
    pub async fn seed(&self, dn: &str, attrs: Vec<(&str, Vec<&str>)>) -> TestResult {
        let mut ldap = self.slapd.admin_ldap().await?;
        let attrs = attrs
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect();
        let r = ldap.add(dn, attrs).await?;
        assert_eq!(r.rc, 0, "seeding {dn}: {r}");
        ldap.unbind().await.ok();
        Ok(())
    }

    /// Modifies an entry directly, as the admin.
    pub async fn seed_modify(&self, dn: &str, mods: Vec<Mod<&str>>) -> TestResult {
        let mut ldap = self.slapd.admin_ldap().await?;
        let r = ldap.modify(dn, mods).await?;
        assert_eq!(r.rc, 0, "modifying {dn}: {r}");
        ldap.unbind().await.ok();
        Ok(())
    }
}

// ---- JIM-shaped model ------------------------------------------------------------------------

fn def(
    id: i32,
    type_id: i32,
    name: &str,
    data_type: AttributeDataType,
    multi: bool,
) -> AttributeDefinition {
    AttributeDefinition {
        id,
        name: name.into(),
        data_type,
        plurality: if multi {
            AttributePlurality::MultiValued
        } else {
            AttributePlurality::SingleValued
        },
        object_type_id: type_id,
        is_external_id: false,
        is_secondary_external_id: false,
        writability: AttributeWritability::Writable,
    }
}

/// Attribute ids of [`person_type`].
pub mod person {
    /// `distinguishedName` (secondary anchor).
    pub const DN: i32 = 1;
    /// `uid` (the RDN).
    pub const UID: i32 = 2;
    /// `cn`.
    pub const CN: i32 = 3;
    /// `sn`.
    pub const SN: i32 = 4;
    /// `mail`.
    pub const MAIL: i32 = 5;
    /// `description`.
    pub const DESCRIPTION: i32 = 6;
    /// `telephoneNumber` (multi-valued).
    pub const PHONE: i32 = 7;
    /// `displayName`.
    pub const DISPLAY_NAME: i32 = 8;
    /// `entryUUID` (the anchor).
    pub const ENTRY_UUID: i32 = 9;
    /// `employeeNumber` (Number).
    pub const EMPLOYEE_NUMBER: i32 = 10;
    /// `noSuchAttributeInSchema`: an attribute slapd's schema lacks.
    pub const BOGUS: i32 = 11;
}

/// `inetOrgPerson` named by `uid`, anchored by `entryUUID`.
pub fn person_type() -> ObjectType {
    use person::*;
    let mut dn = def(DN, 1, "distinguishedName", AttributeDataType::Text, false);
    dn.is_secondary_external_id = true;
    let mut anchor = def(ENTRY_UUID, 1, "entryUUID", AttributeDataType::Text, false);
    anchor.is_external_id = true;
    ObjectType {
        id: 1,
        name: "inetOrgPerson".into(),
        attributes: vec![
            dn,
            def(UID, 1, "uid", AttributeDataType::Text, false),
            def(CN, 1, "cn", AttributeDataType::Text, false),
            def(SN, 1, "sn", AttributeDataType::Text, false),
            def(MAIL, 1, "mail", AttributeDataType::Text, false),
            def(
                DESCRIPTION,
                1,
                "description",
                AttributeDataType::Text,
                false,
            ),
            def(PHONE, 1, "telephoneNumber", AttributeDataType::Text, true),
            def(
                DISPLAY_NAME,
                1,
                "displayName",
                AttributeDataType::Text,
                false,
            ),
            anchor,
            def(
                EMPLOYEE_NUMBER,
                1,
                "employeeNumber",
                AttributeDataType::Number,
                false,
            ),
            def(
                BOGUS,
                1,
                "noSuchAttributeInSchema",
                AttributeDataType::Text,
                false,
            ),
        ],
    }
}

/// Attribute ids of [`group_type`].
pub mod group {
    /// `distinguishedName` (secondary anchor).
    pub const DN: i32 = 101;
    /// `cn` (the RDN).
    pub const CN: i32 = 102;
    /// `member` (Reference, multi-valued).
    pub const MEMBER: i32 = 103;
    /// `description`.
    pub const DESCRIPTION: i32 = 104;
    /// `entryUUID` (the anchor).
    pub const ENTRY_UUID: i32 = 105;
}

/// `groupOfNames` named by `cn`, anchored by `entryUUID`.
pub fn group_type() -> ObjectType {
    use group::*;
    let mut dn = def(DN, 2, "distinguishedName", AttributeDataType::Text, false);
    dn.is_secondary_external_id = true;
    let mut anchor = def(ENTRY_UUID, 2, "entryUUID", AttributeDataType::Text, false);
    anchor.is_external_id = true;
    ObjectType {
        id: 2,
        name: "groupOfNames".into(),
        attributes: vec![
            dn,
            def(CN, 2, "cn", AttributeDataType::Text, false),
            def(MEMBER, 2, "member", AttributeDataType::Reference, true),
            def(
                DESCRIPTION,
                2,
                "description",
                AttributeDataType::Text,
                false,
            ),
            anchor,
        ],
    }
}

/// A pending export under construction.
pub struct Export(pub PendingExport);

impl Export {
    /// A pending export of `change_type` (claimed, never attempted) for a fresh CSO, without changes.
    pub fn new(change_type: PendingExportChangeType) -> Self {
        Export(PendingExport {
            id: Uuid::new_v4(),
            connected_system_id: 1,
            connected_system_object_id: Some(Uuid::new_v4()),
            change_type,
            status: PendingExportStatus::Executing,
            error_count: 0,
            max_retries: 5,
            last_attempted_at: None,
            next_retry_at: None,
            last_error_message: None,
            last_error_stack_trace: None,
            source_metaverse_object_id: None,
            has_unresolved_references: false,
            created_at: Utc::now(),
            provisioning_sync_rule_id: None,
            queued_by_run_profile_execution_item_id: None,
            attribute_changes: Vec::new(),
        })
    }

    /// A Create without changes.
    pub fn create() -> Self {
        Self::new(PendingExportChangeType::Create)
    }

    /// An Update without changes.
    pub fn update() -> Self {
        Self::new(PendingExportChangeType::Update)
    }

    /// A Delete.
    pub fn delete() -> Self {
        Self::new(PendingExportChangeType::Delete)
    }

    /// Adds a change of `kind` with `value` to `attribute_id`.
    pub fn value(mut self, attribute_id: i32, kind: C, value: ValueSlots) -> Self {
        self.0.attribute_changes.push(AttributeValueChange {
            id: Uuid::new_v4(),
            pending_export_id: self.0.id,
            attribute_id,
            value,
            unresolved_reference_value: None,
            change_type: kind,
            status: PendingExportAttributeChangeStatus::Pending,
            export_attempt_count: 0,
            last_exported_at: None,
            last_imported_value: None,
            resolved_reference_cso_id: None,
        });
        self
    }

    /// Adds a change of `kind` with a text value to `attribute_id`.
    pub fn text(self, attribute_id: i32, kind: C, value: &str) -> Self {
        self.value(attribute_id, kind, ValueSlots::text(value))
    }

    /// Adds a change removing every value of `attribute_id`.
    pub fn clear(self, attribute_id: i32) -> Self {
        self.value(attribute_id, C::RemoveAll, ValueSlots::default())
    }

    /// The ids of the attribute changes, in the order they were added.
    pub fn ids(&self) -> Vec<Uuid> {
        self.0.attribute_changes.iter().map(|c| c.id).collect()
    }
}

/// A CSO of `object_type` at `dn` with the given values of `attribute_id` (e.g. current members).
pub fn cso(object_type: &ObjectType, dn: &str, values: &[(i32, &str)]) -> ConnectedSystemObject {
    let dn_attr = object_type
        .secondary_anchor()
        .map(|a| a.id)
        .unwrap_or_default();
    let mut all = vec![CsoAttributeValue {
        id: Uuid::new_v4(),
        attribute_id: dn_attr,
        value: ValueSlots::text(dn),
        reference_value_id: None,
        unresolved_reference_value: None,
    }];
    for (attr, v) in values {
        all.push(CsoAttributeValue {
            id: Uuid::new_v4(),
            attribute_id: *attr,
            value: ValueSlots::text(*v),
            reference_value_id: None,
            unresolved_reference_value: None,
        });
    }
    ConnectedSystemObject {
        id: Uuid::new_v4(),
        connected_system_id: 1,
        type_id: object_type.id,
        external_id_attribute_id: object_type
            .primary_anchor()
            .map(|a| a.id)
            .unwrap_or_default(),
        secondary_external_id_attribute_id: Some(dn_attr),
        status: ConnectedSystemObjectStatus::Normal,
        metaverse_object_id: None,
        join_type: ConnectedSystemObjectJoinType::Provisioned,
        values: all,
    }
}

/// Plans an export for OpenLDAP with `settings`.
pub fn job(
    settings: &ExportSettings,
    export: &Export,
    object_type: &ObjectType,
    cso: Option<&ConnectedSystemObject>,
) -> ExportJob {
    let planner = Planner::new(settings, Dialect::OpenLdap);
    ExportJob::new(
        export.0.id,
        planner.plan(&PlanInput::new(&export.0, object_type, cso)),
    )
}

/// Runs one export and insists that it succeeded.
pub async fn run_ok(directory: &Directory, job: ExportJob) -> ExportResult {
    let r = directory.execute(job).await;
    assert!(r.is_success(), "export failed: {:?}", r.status);
    r
}

/// The DN of the `i`th (made-up) group member.
pub fn member(i: usize) -> String {
    format!("uid=member{i:05},ou=People,dc=example,dc=org")
}

/// `values` as a set, for order-free comparisons.
pub fn set(values: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    values.into_iter().collect()
}
