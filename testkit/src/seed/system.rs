//! The connected system's configuration rows: JIM's LDAP connector definition and its settings, the
//! connected system with one value per setting, a partition and its containers, an export run
//! profile, and the `inetOrgPerson` / `groupOfNames` object types with their attribute definitions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use jim_export::model::{
    AttributeDataType, AttributePlurality, AttributeWritability, ConnectedSystemContainerScope,
    ConnectedSystemRunType, ConnectedSystemSettingCategory as Cat,
    ConnectedSystemSettingType as Ty, ConnectedSystemStatus, UnresolvedReferenceHandling,
};
use sqlx::{PgConnection, Row};

use super::{SeedOptions, Target, ad};
use crate::error::{Result, SqlContext};

/// `ConnectorDefinitions.Name` of JIM's LDAP connector (`src/JIM.Connectors/Constants.cs`).
pub const LDAP_CONNECTOR_NAME: &str = "JIM LDAP Connector";

/// `ActivityInitiatorType.System` (schema.md §3).
const INITIATOR_SYSTEM: i32 = 3;
/// `ActivityInitiatorType.User`.
const INITIATOR_USER: i32 = 1;
/// `ActivityInitiatorType.NotSet`.
const INITIATOR_NOT_SET: i32 = 0;
/// `AttributeStandard.Ldap`.
const SCHEMA_STANDARD_LDAP: i32 = 2;
/// `ObjectMatchingRuleMode.ConnectedSystem`.
const MATCHING_CONNECTED_SYSTEM: i32 = 0;

/// The `ConnectedSystemObjectTypes.Name` of seeded users.
pub const USER_OBJECT_TYPE: &str = "inetOrgPerson";
/// The `ConnectedSystemObjectTypes.Name` of seeded groups.
pub const GROUP_OBJECT_TYPE: &str = "groupOfNames";

/// A fake Data Protection payload for the `Password` setting: JIM's `$JIM$v1$` prefix followed by
/// text that is obviously not a protected secret (nothing can decrypt it).
pub const FAKE_PASSWORD_PAYLOAD: &str =
    "$JIM$v1$CfDJ8-seed-data-placeholder-not-a-real-protected-payload";

/// A value of one LDAP connector setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SettingValue {
    None,
    Text(String),
    Encrypted(String),
    Int(i32),
    Checkbox(bool),
}

struct SettingDef {
    name: &'static str,
    category: Cat,
    ty: Ty,
    required: bool,
    default_checkbox: Option<bool>,
    default_string: Option<&'static str>,
    default_int: Option<i32>,
    drop_down: &'static [&'static str],
    description: &'static str,
}

const fn setting(
    name: &'static str,
    category: Cat,
    ty: Ty,
    description: &'static str,
) -> SettingDef {
    SettingDef {
        name,
        category,
        ty,
        required: false,
        default_checkbox: None,
        default_string: None,
        default_int: None,
        drop_down: &[],
        description,
    }
}

/// The LDAP connector's settings (schema.md §2.10), in declaration order.
const SETTINGS: [SettingDef; 20] = [
    SettingDef {
        required: true,
        ..setting(
            "Host",
            Cat::Connectivity,
            Ty::String,
            "Directory server host name",
        )
    },
    setting(
        "Preferred Domain Controller",
        Cat::Connectivity,
        Ty::String,
        "Domain controller to pin (Active Directory)",
    ),
    SettingDef {
        required: true,
        default_int: Some(389),
        ..setting(
            "Port",
            Cat::Connectivity,
            Ty::Integer,
            "Directory server port",
        )
    },
    SettingDef {
        default_checkbox: Some(false),
        ..setting(
            "Use Secure Connection (LDAPS)?",
            Cat::Connectivity,
            Ty::CheckBox,
            "Connect with LDAPS",
        )
    },
    SettingDef {
        required: true,
        default_int: Some(10),
        ..setting(
            "Connection Timeout",
            Cat::Connectivity,
            Ty::Integer,
            "Connection timeout in seconds",
        )
    },
    SettingDef {
        required: true,
        ..setting(
            "Username",
            Cat::Connectivity,
            Ty::String,
            "Bind DN or account",
        )
    },
    SettingDef {
        required: true,
        ..setting(
            "Password",
            Cat::Connectivity,
            Ty::StringEncrypted,
            "Bind password (encrypted at rest)",
        )
    },
    SettingDef {
        default_string: Some("Simple"),
        drop_down: &["Simple", "NTLM"],
        ..setting(
            "Authentication Type",
            Cat::Connectivity,
            Ty::DropDown,
            "Bind mechanism",
        )
    },
    SettingDef {
        default_int: Some(300),
        ..setting(
            "Search Timeout",
            Cat::Import,
            Ty::Integer,
            "Search timeout in seconds",
        )
    },
    SettingDef {
        default_int: Some(4),
        ..setting(
            "Import Concurrency",
            Cat::Import,
            Ty::Integer,
            "Concurrent import searches",
        )
    },
    SettingDef {
        default_int: Some(3),
        ..setting(
            "Maximum Retries",
            Cat::General,
            Ty::Integer,
            "Retries of a failed operation",
        )
    },
    SettingDef {
        default_int: Some(1000),
        ..setting(
            "Retry Delay (ms)",
            Cat::General,
            Ty::Integer,
            "Delay between retries",
        )
    },
    SettingDef {
        default_int: Some(4),
        ..setting(
            "Export Concurrency",
            Cat::Export,
            Ty::Integer,
            "LDAP operations in flight during an export",
        )
    },
    SettingDef {
        default_int: Some(1000),
        ..setting(
            "Modify Batch Size",
            Cat::Export,
            Ty::Integer,
            "Values of one attribute per Add or Modify",
        )
    },
    SettingDef {
        default_checkbox: Some(false),
        ..setting(
            "Include Auxiliary Classes",
            Cat::Schema,
            Ty::CheckBox,
            "Discover auxiliary object classes",
        )
    },
    SettingDef {
        default_checkbox: Some(false),
        ..setting(
            "Create containers as needed?",
            Cat::Export,
            Ty::CheckBox,
            "Create missing parent OUs on create",
        )
    },
    SettingDef {
        default_checkbox: Some(false),
        ..setting(
            "Skip Hidden Partitions",
            Cat::Import,
            Ty::CheckBox,
            "Ignore hidden naming contexts",
        )
    },
    SettingDef {
        default_string: Some("Delete"),
        drop_down: &["Delete", "Disable"],
        ..setting(
            "Delete Behaviour",
            Cat::Export,
            Ty::DropDown,
            "What a deprovisioning export does",
        )
    },
    SettingDef {
        default_string: Some("userAccountControl"),
        ..setting(
            "Disable Attribute",
            Cat::Export,
            Ty::String,
            "Attribute set when disabling",
        )
    },
    SettingDef {
        default_string: Some("cn=placeholder"),
        ..setting(
            "Group Placeholder Member DN",
            Cat::Export,
            Ty::String,
            "Member kept in groups that would otherwise be empty",
        )
    },
];

/// The value the seeded system holds for a setting.
fn setting_value(name: &str, o: &SeedOptions) -> SettingValue {
    if o.target == Target::ActiveDirectory
        && let Some(v) = ad::setting_value(name, o)
    {
        return v;
    }
    match name {
        "Host" => SettingValue::Text(o.host.clone()),
        "Preferred Domain Controller" => SettingValue::None,
        "Port" => SettingValue::Int(i32::from(o.port)),
        "Use Secure Connection (LDAPS)?" => SettingValue::Checkbox(false),
        "Connection Timeout" => SettingValue::Int(10),
        "Username" => SettingValue::Text(format!("cn=admin,{}", o.suffix)),
        "Password" => SettingValue::Encrypted(FAKE_PASSWORD_PAYLOAD.into()),
        "Authentication Type" => SettingValue::Text("Simple".into()),
        "Search Timeout" => SettingValue::Int(300),
        "Import Concurrency" => SettingValue::Int(4),
        "Maximum Retries" => SettingValue::Int(3),
        "Retry Delay (ms)" => SettingValue::Int(1000),
        "Export Concurrency" => SettingValue::Int(16),
        "Modify Batch Size" => SettingValue::Int(1000),
        "Include Auxiliary Classes" => SettingValue::Checkbox(false),
        "Create containers as needed?" => SettingValue::Checkbox(false),
        "Skip Hidden Partitions" => SettingValue::Checkbox(false),
        "Delete Behaviour" => SettingValue::Text("Delete".into()),
        "Disable Attribute" => SettingValue::Text("userAccountControl".into()),
        "Group Placeholder Member DN" => SettingValue::Text("cn=placeholder".into()),
        _ => SettingValue::None,
    }
}

/// One attribute definition of the seeded schema.
pub(crate) struct AttrDef {
    pub name: &'static str,
    pub class_name: Option<&'static str>,
    pub data_type: AttributeDataType,
    pub plurality: AttributePlurality,
    pub writability: AttributeWritability,
    pub external_id: bool,
    pub secondary_external_id: bool,
    /// References point at users (JIM allows any type; Scenario 8's members and managers are users).
    pub references_users: bool,
}

pub(crate) const fn text(name: &'static str, class_name: &'static str) -> AttrDef {
    AttrDef {
        name,
        class_name: Some(class_name),
        data_type: AttributeDataType::Text,
        plurality: AttributePlurality::SingleValued,
        writability: AttributeWritability::Writable,
        external_id: false,
        secondary_external_id: false,
        references_users: false,
    }
}

pub(crate) const DN: AttrDef = AttrDef {
    class_name: None,
    secondary_external_id: true,
    ..text("distinguishedName", "top")
};
const ENTRY_UUID: AttrDef = AttrDef {
    class_name: None,
    writability: AttributeWritability::ReadOnly,
    external_id: true,
    ..text("entryUUID", "top")
};
pub(crate) const OBJECT_CLASS: AttrDef = AttrDef {
    plurality: AttributePlurality::MultiValued,
    ..text("objectClass", "top")
};

/// User attributes: the anchors, then Scenario 8's OpenLDAP user attributes, `manager`, `objectClass`.
const USER_ATTRIBUTES: [AttrDef; 14] = [
    DN,
    ENTRY_UUID,
    text("uid", "inetOrgPerson"),
    text("employeeNumber", "inetOrgPerson"),
    text("givenName", "inetOrgPerson"),
    text("sn", "person"),
    text("displayName", "inetOrgPerson"),
    text("cn", "person"),
    text("mail", "inetOrgPerson"),
    text("title", "organizationalPerson"),
    text("departmentNumber", "inetOrgPerson"),
    text("o", "inetOrgPerson"),
    AttrDef {
        data_type: AttributeDataType::Reference,
        references_users: true,
        ..text("manager", "inetOrgPerson")
    },
    OBJECT_CLASS,
];

/// Group attributes.
const GROUP_ATTRIBUTES: [AttrDef; 6] = [
    DN,
    ENTRY_UUID,
    text("cn", "groupOfNames"),
    text("description", "groupOfNames"),
    AttrDef {
        data_type: AttributeDataType::Reference,
        plurality: AttributePlurality::MultiValued,
        references_users: true,
        ..text("member", "groupOfNames")
    },
    OBJECT_CLASS,
];

/// Ids of the configuration rows of one seeded system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIds {
    /// `ConnectorDefinitions.Id` of `JIM LDAP Connector`.
    pub connector_definition_id: i32,
    /// `ConnectedSystems.Id`.
    pub connected_system_id: i32,
    /// `ConnectedSystemPartitions.Id` of the suffix.
    pub partition_id: i32,
    /// `ConnectedSystemContainers.Id` by container DN (`ou=People`, `ou=Groups`, `ou=Alumni`).
    pub container_ids: BTreeMap<String, i32>,
    /// `ConnectedSystemRunProfiles.Id` of the export run profile.
    pub export_run_profile_id: i32,
    /// `ConnectedSystemObjectTypes.Id` of `inetOrgPerson` (`user` for Active Directory).
    pub user_type_id: i32,
    /// `ConnectedSystemObjectTypes.Id` of `groupOfNames` (`group` for Active Directory).
    pub group_type_id: i32,
    /// `ConnectedSystemAttributes.Id` of the user attributes, by LDAP name.
    pub user_attributes: BTreeMap<String, i32>,
    /// `ConnectedSystemAttributes.Id` of the group attributes, by LDAP name.
    pub group_attributes: BTreeMap<String, i32>,
}

/// The OUs a seeded system manages, relative to the suffix.
pub(crate) const CONTAINERS: [(&str, &str); 3] = [
    ("People", "Users"),
    ("Groups", "Groups"),
    ("Alumni", "Users moved out by follow-up changes"),
];

/// Writes the configuration rows in one transaction.
pub(crate) async fn create(conn: &mut PgConnection, o: &SeedOptions) -> Result<SystemIds> {
    let now: DateTime<Utc> = o.base_time;
    let mut tx = sqlx::Connection::begin(conn)
        .await
        .sql_context(|| "starting the configuration transaction".into())?;

    // Two seeds into one database share the connector definition; serialise its creation.
    sqlx::query("SELECT pg_advisory_xact_lock(7212650923)")
        .execute(&mut *tx)
        .await
        .sql_context(|| "locking the connector definition".into())?;
    let existing: Option<i32> = sqlx::query_scalar(
        "SELECT \"Id\" FROM \"ConnectorDefinitions\" WHERE \"Name\" = $1 ORDER BY \"Id\" LIMIT 1",
    )
    .bind(LDAP_CONNECTOR_NAME)
    .fetch_optional(&mut *tx)
    .await
    .sql_context(|| "looking up the LDAP connector definition".into())?;
    let connector_definition_id = match existing {
        Some(id) => id,
        None => sqlx::query_scalar(
            "INSERT INTO \"ConnectorDefinitions\" (\"Name\", \"Description\", \"Url\", \"Created\", \
             \"CreatedByType\", \"LastUpdatedByType\", \"BuiltIn\", \"SupportsFullImport\", \
             \"SupportsDeltaImport\", \"SupportsExport\", \"SupportsPartitions\", \
             \"SupportsPartitionContainers\", \"SupportsSecondaryExternalId\", \
             \"SupportsUserSelectedExternalId\", \"SupportsUserSelectedAttributeTypes\", \
             \"SupportsAutoConfirmExport\", \"SupportsParallelExport\", \"SupportsPaging\", \
             \"SupportsFilePaths\", \"SupportsPasswordSet\", \"SchemaStandard\", \
             \"SupportsPasswordPolicyDiscovery\") \
             VALUES ($1, $2, NULL, $3, $4, $5, true, true, true, true, true, true, true, false, false, \
             false, true, true, false, true, $6, true) RETURNING \"Id\"",
        )
        .bind(LDAP_CONNECTOR_NAME)
        .bind("Connects to LDAP directories: Active Directory, Samba AD, OpenLDAP, 389 Directory Server")
        .bind(now)
        .bind(INITIATOR_SYSTEM)
        .bind(INITIATOR_NOT_SET)
        .bind(SCHEMA_STANDARD_LDAP)
        .fetch_one(&mut *tx)
        .await
        .sql_context(|| "inserting the LDAP connector definition".into())?,
    };

    for s in &SETTINGS {
        let drop_down: Option<Vec<String>> =
            (!s.drop_down.is_empty()).then(|| s.drop_down.iter().map(|v| v.to_string()).collect());
        sqlx::query(
            "INSERT INTO \"ConnectorDefinitionSettings\" (\"ConnectorDefinitionId\", \"Name\", \
             \"Description\", \"Category\", \"Type\", \"DefaultCheckboxValue\", \"DefaultStringValue\", \
             \"DefaultIntValue\", \"DropDownValues\", \"Required\", \"RequiredGroup\", \
             \"RequiredGroupCardinality\", \"RequiredWhenSetting\", \"RequiredWhenValue\") \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, 0, NULL, NULL \
             WHERE NOT EXISTS (SELECT 1 FROM \"ConnectorDefinitionSettings\" \
                               WHERE \"ConnectorDefinitionId\" = $1 AND \"Name\" = $2)",
        )
        .bind(connector_definition_id)
        .bind(s.name)
        .bind(s.description)
        .bind(s.category.as_i32())
        .bind(s.ty.as_i32())
        .bind(s.default_checkbox)
        .bind(s.default_string)
        .bind(s.default_int)
        .bind(drop_down)
        .bind(s.required)
        .execute(&mut *tx)
        .await
        .sql_context(|| format!("inserting connector setting {}", s.name))?;
    }
    let setting_rows = sqlx::query(
        "SELECT \"Id\", \"Name\" FROM \"ConnectorDefinitionSettings\" WHERE \"ConnectorDefinitionId\" = $1",
    )
    .bind(connector_definition_id)
    .fetch_all(&mut *tx)
    .await
    .sql_context(|| "reading the connector settings".into())?;

    let connected_system_id: i32 = sqlx::query_scalar(
        "INSERT INTO \"ConnectedSystems\" (\"Name\", \"Description\", \"Created\", \"CreatedByType\", \
         \"CreatedById\", \"CreatedByName\", \"LastUpdated\", \"LastUpdatedByType\", \"LastUpdatedById\", \
         \"LastUpdatedByName\", \"Status\", \"ConnectorDefinitionId\", \"SettingValuesValid\", \
         \"PersistedConnectorData\", \"ObjectMatchingRuleMode\", \"LastSyncCompletedAt\", \
         \"MaxExportParallelism\", \"ConfigurationLastFullyAppliedAt\", \"UnresolvedReferenceHandling\", \
         \"InitialPasswordTimeToLive\", \"RequireSecureTransport\") \
         VALUES ($1, $2, $3, $4, NULL, $5, NULL, $6, NULL, NULL, $7, $8, true, NULL, $9, NULL, NULL, \
         NULL, $10, NULL, false) RETURNING \"Id\"",
    )
    .bind(&o.system_name)
    .bind(format!(
        "{} target {} (seeded, template {})",
        o.target.name(),
        o.suffix,
        o.template
    ))
    .bind(now)
    .bind(INITIATOR_USER)
    .bind("jim-export seed")
    .bind(INITIATOR_NOT_SET)
    .bind(ConnectedSystemStatus::Active.as_i32())
    .bind(connector_definition_id)
    .bind(MATCHING_CONNECTED_SYSTEM)
    .bind(UnresolvedReferenceHandling::Error.as_i32())
    .fetch_one(&mut *tx)
    .await
    .sql_context(|| "inserting the connected system".into())?;

    for row in &setting_rows {
        let id: i32 = row.get("Id");
        let name: Option<String> = row.get("Name");
        let value = setting_value(name.as_deref().unwrap_or_default(), o);
        let (string, encrypted, int, checkbox) = match value {
            SettingValue::None => (None, None, None, false),
            SettingValue::Text(s) => (Some(s), None, None, false),
            SettingValue::Encrypted(s) => (None, Some(s), None, false),
            SettingValue::Int(i) => (None, None, Some(i), false),
            SettingValue::Checkbox(b) => (None, None, None, b),
        };
        sqlx::query(
            "INSERT INTO \"ConnectedSystemSettingValues\" (\"ConnectedSystemId\", \"SettingId\", \
             \"StringValue\", \"StringEncryptedValue\", \"IntValue\", \"CheckboxValue\") \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(connected_system_id)
        .bind(id)
        .bind(string)
        .bind(encrypted)
        .bind(int)
        .bind(checkbox)
        .execute(&mut *tx)
        .await
        .sql_context(|| "inserting a connected system setting value".into())?;
    }

    let partition_id: i32 = sqlx::query_scalar(
        "INSERT INTO \"ConnectedSystemPartitions\" (\"ConnectedSystemId\", \"ExternalId\", \"Name\", \"Selected\") \
         VALUES ($1, $2, $2, true) RETURNING \"Id\"",
    )
    .bind(connected_system_id)
    .bind(&o.suffix)
    .fetch_one(&mut *tx)
    .await
    .sql_context(|| "inserting the partition".into())?;

    let containers: Vec<(String, &str, &str)> = match o.target {
        Target::OpenLdap => CONTAINERS
            .iter()
            .map(|(ou, description)| (format!("ou={ou},{}", o.suffix), *ou, *description))
            .collect(),
        Target::ActiveDirectory => ad::CONTAINERS
            .iter()
            .map(|(rdns, name, description)| (format!("{rdns},{}", o.suffix), *name, *description))
            .collect(),
    };
    let mut container_ids = BTreeMap::new();
    for (dn, ou, description) in containers {
        let id: i32 = sqlx::query_scalar(
            "INSERT INTO \"ConnectedSystemContainers\" (\"PartitionId\", \"ConnectedSystemId\", \"ExternalId\", \
             \"Name\", \"Description\", \"Hidden\", \"Selected\", \"ParentContainerId\", \"StableId\", \"Scope\", \
             \"Excluded\", \"ObjectCount\") VALUES ($1, $2, $3, $4, $5, false, true, NULL, NULL, $6, false, NULL) \
             RETURNING \"Id\"",
        )
        .bind(partition_id)
        .bind(connected_system_id)
        .bind(&dn)
        .bind(ou)
        .bind(description)
        .bind(ConnectedSystemContainerScope::Subtree.as_i32())
        .fetch_one(&mut *tx)
        .await
        .sql_context(|| format!("inserting container {dn}"))?;
        container_ids.insert(dn, id);
    }

    let export_run_profile_id: i32 = sqlx::query_scalar(
        "INSERT INTO \"ConnectedSystemRunProfiles\" (\"Name\", \"Created\", \"CreatedByType\", \"CreatedById\", \
         \"CreatedByName\", \"LastUpdated\", \"LastUpdatedByType\", \"LastUpdatedById\", \"LastUpdatedByName\", \
         \"ConnectedSystemId\", \"PartitionId\", \"RunType\", \"PageSize\", \"FilePath\", \
         \"VerifyImportContentHashes\") VALUES ('Export', $1, $2, NULL, $3, NULL, $4, NULL, NULL, $5, NULL, $6, \
         100, NULL, false) RETURNING \"Id\"",
    )
    .bind(now)
    .bind(INITIATOR_USER)
    .bind("jim-export seed")
    .bind(INITIATOR_NOT_SET)
    .bind(connected_system_id)
    .bind(ConnectedSystemRunType::Export.as_i32())
    .fetch_one(&mut *tx)
    .await
    .sql_context(|| "inserting the export run profile".into())?;

    let (type_names, user_defs, group_defs) = match o.target {
        Target::OpenLdap => (
            [USER_OBJECT_TYPE, GROUP_OBJECT_TYPE],
            &USER_ATTRIBUTES[..],
            &GROUP_ATTRIBUTES[..],
        ),
        Target::ActiveDirectory => (
            [ad::USER_OBJECT_TYPE, ad::GROUP_OBJECT_TYPE],
            &ad::USER_ATTRIBUTES[..],
            &ad::GROUP_ATTRIBUTES[..],
        ),
    };
    let mut type_ids = Vec::new();
    for name in type_names {
        let id: i32 = sqlx::query_scalar(
            "INSERT INTO \"ConnectedSystemObjectTypes\" (\"Name\", \"Created\", \"ConnectedSystemId\", \
             \"Selected\", \"RemoveContributedAttributesOnObsoletion\") VALUES ($1, $2, $3, true, false) \
             RETURNING \"Id\"",
        )
        .bind(name)
        .bind(now)
        .bind(connected_system_id)
        .fetch_one(&mut *tx)
        .await
        .sql_context(|| format!("inserting object type {name}"))?;
        type_ids.push(id);
    }
    let (user_type_id, group_type_id) = (type_ids[0], type_ids[1]);

    let mut attribute_maps = Vec::new();
    for (type_id, defs) in [(user_type_id, user_defs), (group_type_id, group_defs)] {
        let mut map = BTreeMap::new();
        for a in defs {
            let id: i32 = sqlx::query_scalar(
                "INSERT INTO \"ConnectedSystemAttributes\" (\"Created\", \"Name\", \"Description\", \"ClassName\", \
                 \"Type\", \"AttributePlurality\", \"ConnectedSystemObjectTypeId\", \"Selected\", \"IsExternalId\", \
                 \"IsSecondaryExternalId\", \"SelectionLocked\", \"Writability\", \"TypeSetByAdministrator\", \
                 \"ReferencedObjectTypeId\") VALUES ($1, $2, NULL, $3, $4, $5, $6, true, $7, $8, $9, $10, false, $11) \
                 RETURNING \"Id\"",
            )
            .bind(now)
            .bind(a.name)
            .bind(a.class_name)
            .bind(a.data_type.as_i32())
            .bind(a.plurality.as_i32())
            .bind(type_id)
            .bind(a.external_id)
            .bind(a.secondary_external_id)
            .bind(a.external_id || a.secondary_external_id)
            .bind(a.writability.as_i32())
            .bind(a.references_users.then_some(user_type_id))
            .fetch_one(&mut *tx)
            .await
            .sql_context(|| format!("inserting attribute {}", a.name))?;
            map.insert(a.name.to_string(), id);
        }
        attribute_maps.push(map);
    }
    let group_attributes = attribute_maps.pop().unwrap_or_default();
    let user_attributes = attribute_maps.pop().unwrap_or_default();

    tx.commit()
        .await
        .sql_context(|| "committing the configuration".into())?;
    Ok(SystemIds {
        connector_definition_id,
        connected_system_id,
        partition_id,
        container_ids,
        export_run_profile_id,
        user_type_id,
        group_type_id,
        user_attributes,
        group_attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_a_seeded_value_of_its_type() {
        let o = SeedOptions::default();
        for s in &SETTINGS {
            let v = setting_value(s.name, &o);
            let ok = match (s.ty, &v) {
                (Ty::String | Ty::DropDown, SettingValue::Text(_)) => true,
                (Ty::String, SettingValue::None) => !s.required,
                (Ty::StringEncrypted, SettingValue::Encrypted(p)) => p.starts_with("$JIM$v1$"),
                (Ty::Integer, SettingValue::Int(_)) => true,
                (Ty::CheckBox, SettingValue::Checkbox(_)) => true,
                _ => false,
            };
            assert!(ok, "{} has {v:?}", s.name);
        }
    }
}
