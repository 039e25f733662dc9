//! Planner tests, named after the entries of JIM's LDAP test catalogue they cover
//! (`ldap-export.md` §10; mapped in `docs/acceptance.md`).
//!
//! Over 600 lines on purpose: one test per catalogue entry, sharing one set of builders; splitting it
//! would scatter the catalogue's mapping over several files.

use rust_decimal::Decimal;
use std::str::FromStr;
use uuid::Uuid;

use super::*;
use crate::config::{DeleteBehaviour, Dialect, ExportSettings, ScopeContainer};
use crate::model::{
    AttributeDataType, AttributeDefinition, AttributePlurality, AttributeValueChange,
    AttributeWritability, ConnectedSystemContainerScope, ConnectedSystemExportErrorType,
    ConnectedSystemObject, ConnectedSystemObjectJoinType, ConnectedSystemObjectStatus,
    CsoAttributeValue, ObjectType, PendingExport, PendingExportAttributeChangeStatus,
    PendingExportAttributeChangeType as C, PendingExportChangeType, ValueSlots,
};

const DN: i32 = 1;
const OBJECT_CLASS: i32 = 2;
const CN: i32 = 3;
const MEMBER: i32 = 4;
const DISPLAY_NAME: i32 = 5;
const DESCRIPTION: i32 = 6;
const ENTRY_UUID: i32 = 7;
const ACCOUNT_EXPIRES: i32 = 8;
const UID: i32 = 9;
const SALARY: i32 = 10;
const UNIQUE_MEMBER: i32 = 11;
const OBJECT_GUID: i32 = 12;

fn def(id: i32, name: &str, data_type: AttributeDataType, multi: bool) -> AttributeDefinition {
    AttributeDefinition {
        id,
        name: name.into(),
        data_type,
        plurality: if multi {
            AttributePlurality::MultiValued
        } else {
            AttributePlurality::SingleValued
        },
        object_type_id: 1,
        is_external_id: false,
        is_secondary_external_id: false,
        writability: AttributeWritability::Writable,
    }
}

fn object_type(name: &str) -> ObjectType {
    let mut dn = def(DN, "distinguishedName", AttributeDataType::Text, false);
    dn.is_secondary_external_id = true;
    let mut anchor = def(ENTRY_UUID, "entryUUID", AttributeDataType::Text, false);
    anchor.is_external_id = true;
    ObjectType {
        id: 1,
        name: name.into(),
        attributes: vec![
            dn,
            def(OBJECT_CLASS, "objectClass", AttributeDataType::Text, true),
            def(CN, "cn", AttributeDataType::Text, false),
            def(MEMBER, "member", AttributeDataType::Reference, true),
            def(DISPLAY_NAME, "displayName", AttributeDataType::Text, false),
            def(DESCRIPTION, "description", AttributeDataType::Text, false),
            anchor,
            def(
                ACCOUNT_EXPIRES,
                "accountExpires",
                AttributeDataType::LongNumber,
                false,
            ),
            def(UID, "uid", AttributeDataType::Text, false),
            def(SALARY, "salary", AttributeDataType::Decimal, false),
            def(
                UNIQUE_MEMBER,
                "uniqueMember",
                AttributeDataType::Reference,
                true,
            ),
            def(OBJECT_GUID, "objectGUID", AttributeDataType::Guid, false),
        ],
    }
}

struct Export {
    pe: PendingExport,
}

impl Export {
    fn new(change_type: PendingExportChangeType) -> Self {
        Self {
            pe: PendingExport::for_test(change_type),
        }
    }

    fn change(mut self, attribute_id: i32, kind: C, value: ValueSlots) -> Self {
        self.pe.attribute_changes.push(AttributeValueChange {
            value,
            ..AttributeValueChange::for_test(self.pe.id, attribute_id, kind)
        });
        self
    }

    fn text(self, attribute_id: i32, kind: C, value: &str) -> Self {
        self.change(attribute_id, kind, ValueSlots::text(value))
    }

    fn members(mut self, kind: C, n: usize) -> Self {
        for i in 0..n {
            self = self.text(
                MEMBER,
                kind,
                &format!("uid=user{i},ou=People,dc=example,dc=org"),
            );
        }
        self
    }
}

fn cso(dn: &str, members: usize, placeholder: Option<&str>) -> ConnectedSystemObject {
    let mut values = vec![CsoAttributeValue {
        id: Uuid::new_v4(),
        attribute_id: DN,
        value: ValueSlots::text(dn),
        reference_value_id: None,
        unresolved_reference_value: None,
    }];
    for i in 0..members {
        values.push(CsoAttributeValue {
            id: Uuid::new_v4(),
            attribute_id: MEMBER,
            value: ValueSlots::default(),
            reference_value_id: Some(Uuid::new_v4()),
            unresolved_reference_value: Some(format!("uid=old{i},ou=People,dc=example,dc=org")),
        });
    }
    if let Some(p) = placeholder {
        values.push(CsoAttributeValue {
            id: Uuid::new_v4(),
            attribute_id: MEMBER,
            value: ValueSlots::text(p),
            reference_value_id: None,
            unresolved_reference_value: None,
        });
    }
    ConnectedSystemObject {
        id: Uuid::new_v4(),
        connected_system_id: 1,
        type_id: 1,
        external_id_attribute_id: ENTRY_UUID,
        secondary_external_id_attribute_id: Some(DN),
        status: ConnectedSystemObjectStatus::Normal,
        metaverse_object_id: None,
        join_type: ConnectedSystemObjectJoinType::Provisioned,
        values,
    }
}

fn plan_with(
    export: &Export,
    type_name: &str,
    cso: Option<&ConnectedSystemObject>,
    settings: &ExportSettings,
    dialect: Dialect,
) -> Result<ExportPlan, PlanFailure> {
    let ot = object_type(type_name);
    Planner::new(settings, dialect).plan(&PlanInput::new(&export.pe, &ot, cso))
}

fn plan(export: &Export, type_name: &str, cso: Option<&ConnectedSystemObject>) -> ExportPlan {
    plan_with(
        export,
        type_name,
        cso,
        &ExportSettings::default(),
        Dialect::OpenLdap,
    )
    .unwrap()
}

fn batch(n: u32) -> ExportSettings {
    ExportSettings {
        modify_batch_size: n,
        ..ExportSettings::default()
    }
}

fn add_of(plan: &ExportPlan) -> (&str, &[Attribute], bool) {
    plan.steps
        .iter()
        .find_map(|s| match &s.operation {
            Operation::Add {
                dn,
                attributes,
                placeholder,
            } => Some((dn.as_str(), attributes.as_slice(), *placeholder)),
            _ => None,
        })
        .expect("an Add")
}

fn modifies(plan: &ExportPlan) -> Vec<&[Modification]> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.operation {
            Operation::Modify { modifications, .. } => Some(modifications.as_slice()),
            _ => None,
        })
        .collect()
}

fn attr<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
}

fn text_values(values: &[Vec<u8>]) -> Vec<String> {
    values
        .iter()
        .map(|v| String::from_utf8(v.clone()).unwrap())
        .collect()
}

const GROUP_DN: &str = "cn=Staff,ou=Groups,dc=example,dc=org";
const USER_DN: &str = "uid=jdoe,ou=People,dc=example,dc=org";

fn create_group(members: usize) -> Export {
    Export::new(PendingExportChangeType::Create)
        .text(DN, C::Add, GROUP_DN)
        .text(CN, C::Add, "Staff")
        .members(C::Add, members)
}

// ---- Create -------------------------------------------------------------------------------------

/// `ExecuteAsync_CreateOperation_SendsAddRequestAsync`: one Add, the anchor read back, the DN as
/// sent becomes the secondary external id.
#[test]
fn create_sends_one_add_and_reads_the_anchor() {
    let e = Export::new(PendingExportChangeType::Create)
        .text(DN, C::Add, USER_DN)
        .text(UID, C::Add, "jdoe")
        .text(DISPLAY_NAME, C::Update, "J Doe");
    let p = plan(&e, "inetOrgPerson", None);
    assert_eq!(p.steps.len(), 1);
    let (dn, attributes, placeholder) = add_of(&p);
    assert_eq!(dn, USER_DN);
    assert!(!placeholder);
    assert_eq!(
        attributes[0],
        Attribute::text("objectClass", &["inetOrgPerson"])
    );
    assert!(attr(attributes, "distinguishedName").is_none());
    assert_eq!(p.dn, USER_DN);
    assert_eq!(
        p.anchor,
        Some(AnchorRead {
            attribute: "entryUUID".into(),
            encoding: AnchorEncoding::Text
        })
    );
    let mut ids: Vec<Uuid> = p.all_change_ids().collect();
    ids.sort();
    let mut expected: Vec<Uuid> = e.pe.attribute_changes.iter().map(|c| c.id).collect();
    expected.sort();
    assert_eq!(ids, expected, "every change is accounted for");
}

#[test]
fn create_anchor_per_dialect_and_flag() {
    let e = Export::new(PendingExportChangeType::Create).text(DN, C::Add, USER_DN);
    let mut ot = object_type("user");
    for a in &mut ot.attributes {
        a.is_external_id = a.name == "objectGUID";
    }
    let p = Planner::new(&ExportSettings::default(), Dialect::ActiveDirectory)
        .plan(&PlanInput::new(&e.pe, &ot, None))
        .unwrap();
    assert_eq!(
        p.anchor,
        Some(AnchorRead {
            attribute: "objectGUID".into(),
            encoding: AnchorEncoding::MicrosoftGuid
        })
    );
    for a in &mut ot.attributes {
        a.is_external_id = false;
    }
    let p = Planner::new(&ExportSettings::default(), Dialect::SambaAd)
        .plan(&PlanInput::new(&e.pe, &ot, None))
        .unwrap();
    assert_eq!(p.anchor.unwrap().encoding, AnchorEncoding::MicrosoftGuid);
    let p = Planner::new(&ExportSettings::default(), Dialect::Generic)
        .plan(&PlanInput::new(&e.pe, &ot, None))
        .unwrap();
    assert_eq!(p.anchor.unwrap().attribute, "entryUUID");
}

/// `ExecuteAsync_CreateGroupWithMultipleMembers_…`, `…WithSingleMember_…`,
/// `…CreateWithLargeMultiValuedAttribute_…`.
#[test]
fn create_group_members_form_one_attribute() {
    for n in [1, 5, 50] {
        let p = plan(&create_group(n), "groupOfNames", None);
        let (_, attributes, placeholder) = add_of(&p);
        assert!(!placeholder);
        assert_eq!(attr(attributes, "member").unwrap().values.len(), n);
        assert_eq!(
            attributes
                .iter()
                .filter(|a| a.name.eq_ignore_ascii_case("member"))
                .count(),
            1
        );
        assert_eq!(p.steps.len(), 1);
    }
}

/// `ExecuteAsync_CreateGroupWithMembersAndOtherAttributes_AllConsolidatedCorrectlyAsync`.
#[test]
fn create_group_with_other_attributes() {
    let e = Export::new(PendingExportChangeType::Create)
        .text(DN, C::Add, GROUP_DN)
        .text(DISPLAY_NAME, C::Add, "Staff")
        .text(DESCRIPTION, C::Add, "All staff")
        .members(C::Add, 3);
    let p = plan(&e, "groupOfNames", None);
    let (_, attributes, _) = add_of(&p);
    let names: Vec<&str> = attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["objectClass", "displayName", "description", "member"]
    );
    assert_eq!(attributes[3].values.len(), 3);
}

/// `ExecuteAsync_CreateGroupExceedingBatchSize_SendsAddThenModifyForOverflowAsync` (150 at 100) and
/// `…FarExceedingBatchSize…` (500 at 100).
#[test]
fn create_overflow_becomes_follow_up_modifies() {
    for (n, expected_overflow) in [(150usize, vec![50usize]), (500, vec![100, 100, 100, 100])] {
        let e = create_group(n);
        let p = plan_with(&e, "groupOfNames", None, &batch(100), Dialect::OpenLdap).unwrap();
        let (_, attributes, _) = add_of(&p);
        assert_eq!(attr(attributes, "member").unwrap().values.len(), 100);
        let overflow: Vec<usize> = p.steps[1..]
            .iter()
            .map(|s| match &s.operation {
                Operation::Modify {
                    modifications,
                    purpose: ModifyPurpose::Overflow,
                    ..
                } => {
                    assert_eq!(modifications.len(), 1);
                    assert_eq!(modifications[0].kind, ModKind::Add);
                    modifications[0].values.len()
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(overflow, expected_overflow);
        assert_eq!(p.steps[1].change_ids.len(), expected_overflow[0]);
        assert_eq!(
            p.steps[0].change_ids.len(),
            100 + 2,
            "DN + cn + 100 members"
        );
    }
}

#[test]
fn create_object_class_from_change_else_type_name() {
    let e = Export::new(PendingExportChangeType::Create)
        .text(DN, C::Add, USER_DN)
        .text(OBJECT_CLASS, C::Add, "inetOrgPerson");
    let p = plan(&e, "person", None);
    let (_, attributes, _) = add_of(&p);
    assert_eq!(
        attributes[0],
        Attribute::text("objectClass", &["inetOrgPerson"])
    );
    assert_eq!(
        attributes
            .iter()
            .filter(|a| a.name == "objectClass")
            .count(),
        1,
        "one objectClass value, as JIM (§11.16)"
    );
}

#[test]
fn create_skips_values_without_a_value_and_non_writable_changes() {
    let mut e = Export::new(PendingExportChangeType::Create)
        .text(DN, C::Add, USER_DN)
        .change(DESCRIPTION, C::Add, ValueSlots::default())
        .text(DISPLAY_NAME, C::Add, "sent-before");
    e.pe.attribute_changes[2].status =
        PendingExportAttributeChangeStatus::ExportedPendingConfirmation;
    let mut e = e.text(MEMBER, C::Add, "");
    e.pe.attribute_changes[3].unresolved_reference_value = Some(Uuid::new_v4().to_string());
    let p = plan(&e, "inetOrgPerson", None);
    let (_, attributes, _) = add_of(&p);
    assert!(attr(attributes, "description").is_none());
    assert!(attr(attributes, "displayName").is_none(), "already sent");
    assert!(attr(attributes, "member").is_none(), "unresolved reference");
    assert_eq!(p.unsent_change_ids, vec![e.pe.attribute_changes[1].id]);
}

/// `ExecuteAsync_CreateWithInvalidDn_ReturnsFailedWithInvalidGeneratedExternalIdAsync` (and the
/// sync-path variant, which is the same code here).
#[test]
fn create_with_invalid_dn() {
    let e =
        Export::new(PendingExportChangeType::Create).text(DN, C::Add, "CN=,OU=,DC=example,DC=org");
    let f = plan_with(
        &e,
        "user",
        None,
        &ExportSettings::default(),
        Dialect::OpenLdap,
    )
    .unwrap_err();
    assert_eq!(
        f.error_type,
        ConnectedSystemExportErrorType::InvalidGeneratedExternalId
    );
    assert!(f.message.contains("empty RDN components"), "{f}");
    let e = Export::new(PendingExportChangeType::Create).text(DN, C::Add, "CN=a\\");
    let f = plan_with(
        &e,
        "user",
        None,
        &ExportSettings::default(),
        Dialect::OpenLdap,
    )
    .unwrap_err();
    assert_eq!(
        f.error_type,
        ConnectedSystemExportErrorType::InvalidGeneratedExternalId
    );
}

/// `ExecuteAsync_ExceptionInOneExport_OthersStillCompleteAsync`: a PE with no DN fails with a message.
#[test]
fn create_without_dn_is_a_general_failure() {
    let e = Export::new(PendingExportChangeType::Create).text(UID, C::Add, "jdoe");
    let f = plan_with(
        &e,
        "user",
        None,
        &ExportSettings::default(),
        Dialect::OpenLdap,
    )
    .unwrap_err();
    assert_eq!(f.error_type, ConnectedSystemExportErrorType::General);
    assert!(f.message.contains("could not be determined"), "{f}");
}

/// `ExecuteAsync_TargetOutsideSelectedContainers_FailsThatObjectWithoutWritingAsync` for every kind.
#[test]
fn outside_scope_for_every_change_type() {
    let settings = ExportSettings {
        managed_scope: vec![ScopeContainer {
            dn: "ou=Groups,dc=example,dc=org".into(),
            scope: Some(ConnectedSystemContainerScope::Subtree),
            excluded: false,
        }],
        ..ExportSettings::default()
    };
    let create = Export::new(PendingExportChangeType::Create).text(DN, C::Add, USER_DN);
    let update = Export::new(PendingExportChangeType::Update).text(DESCRIPTION, C::Update, "x");
    let delete = Export::new(PendingExportChangeType::Delete);
    let c = cso(USER_DN, 0, None);
    for (e, cso) in [(&create, None), (&update, Some(&c)), (&delete, Some(&c))] {
        let f = plan_with(e, "inetOrgPerson", cso, &settings, Dialect::OpenLdap).unwrap_err();
        assert_eq!(
            f.error_type,
            ConnectedSystemExportErrorType::OutsideManagedScope
        );
        assert!(f.message.contains(USER_DN), "{f}");
    }
    assert!(
        plan_with(
            &create_group(1),
            "groupOfNames",
            None,
            &settings,
            Dialect::OpenLdap
        )
        .is_ok()
    );
    // A move out of scope is refused by its new DN.
    let gc = cso(GROUP_DN, 1, None);
    let mv = Export::new(PendingExportChangeType::Update).text(DN, C::Update, USER_DN);
    let f = plan_with(&mv, "groupOfNames", Some(&gc), &settings, Dialect::OpenLdap).unwrap_err();
    assert_eq!(
        f.error_type,
        ConnectedSystemExportErrorType::OutsideManagedScope
    );
}

// ---- Containers ---------------------------------------------------------------------------------

fn chain(dn: &str) -> Vec<String> {
    container_chain(&Dn::parse(dn).unwrap(), Dialect::ActiveDirectory)
        .into_iter()
        .map(|c| c.dn)
        .collect()
}

/// `BuildContainerChain_*` (12 tests).
#[test]
fn container_chains() {
    assert_eq!(
        chain("OU=Users,DC=example,DC=org"),
        vec!["OU=Users,DC=example,DC=org"]
    );
    assert_eq!(
        chain("OU=Child,OU=Parent,DC=example,DC=org"),
        vec![
            "OU=Parent,DC=example,DC=org",
            "OU=Child,OU=Parent,DC=example,DC=org"
        ]
    );
    assert_eq!(
        chain("OU=C,OU=B,OU=A,DC=example,DC=org"),
        vec![
            "OU=A,DC=example,DC=org",
            "OU=B,OU=A,DC=example,DC=org",
            "OU=C,OU=B,OU=A,DC=example,DC=org"
        ]
    );
    assert_eq!(
        chain("CN=Users,DC=example,DC=org"),
        vec!["CN=Users,DC=example,DC=org"]
    );
    assert_eq!(
        chain("OU=Admins,CN=Users,DC=example,DC=org"),
        vec![
            "CN=Users,DC=example,DC=org",
            "OU=Admins,CN=Users,DC=example,DC=org"
        ]
    );
    assert!(chain("DC=example,DC=org").is_empty());
    assert!(chain("").is_empty());
    assert!(chain("DC=local").is_empty());
    assert_eq!(
        chain(r"OU=Research\, Development,DC=example,DC=org"),
        vec![r"OU=Research\, Development,DC=example,DC=org"]
    );
    assert_eq!(
        chain(r"OU=Team\, A,OU=Research\, Development,DC=example,DC=org"),
        vec![
            r"OU=Research\, Development,DC=example,DC=org",
            r"OU=Team\, A,OU=Research\, Development,DC=example,DC=org"
        ]
    );
    assert_eq!(
        chain("ou=users,dc=example,dc=org"),
        vec!["ou=users,dc=example,dc=org"]
    );
    assert_eq!(
        chain("OU=Sales,OU=Regions,DC=corp,DC=example,DC=com"),
        vec![
            "OU=Regions,DC=corp,DC=example,DC=com",
            "OU=Sales,OU=Regions,DC=corp,DC=example,DC=com"
        ]
    );
}

/// §11.10: the naming value is unescaped, the class fits the dialect.
#[test]
fn container_values_and_classes() {
    let dn = Dn::parse(r"OU=Research\, Development,CN=Stuff,DC=example,DC=org").unwrap();
    let c = container_chain(&dn, Dialect::OpenLdap);
    assert_eq!(c[0].object_class, "organizationalRole");
    assert_eq!(c[1].object_class, "organizationalUnit");
    assert_eq!(
        c[1].attributes,
        vec![Attribute::text("OU", &["Research, Development"])]
    );
    assert_eq!(
        container_chain(&dn, Dialect::ActiveDirectory)[0].object_class,
        "container"
    );
    assert_eq!(
        container_chain(&dn, Dialect::Ds389)[0].object_class,
        "nsContainer"
    );
}

#[test]
fn create_with_containers_ensures_parents_first() {
    let settings = ExportSettings {
        create_containers_as_needed: true,
        ..ExportSettings::default()
    };
    let e = Export::new(PendingExportChangeType::Create).text(
        DN,
        C::Add,
        "uid=x,ou=Sub,ou=People,dc=example,dc=org",
    );
    let p = plan_with(&e, "inetOrgPerson", None, &settings, Dialect::OpenLdap).unwrap();
    let kinds: Vec<&str> = p.steps.iter().map(|s| s.operation.kind()).collect();
    assert_eq!(kinds, vec!["ensure_container", "ensure_container", "add"]);
    let off = plan(&e, "inetOrgPerson", None);
    assert_eq!(off.steps.len(), 1);
}

// ---- Update -------------------------------------------------------------------------------------

/// `ExecuteAsync_UpdateWithRename_RenameCompletesBeforeModifyAsync`.
#[test]
fn rename_comes_before_modify() {
    let new_dn = "uid=jsmith,ou=Staff,dc=example,dc=org";
    let e = Export::new(PendingExportChangeType::Update)
        .text(DN, C::Update, new_dn)
        .text(DISPLAY_NAME, C::Update, "J Smith");
    let c = cso(USER_DN, 0, None);
    let p = plan(&e, "inetOrgPerson", Some(&c));
    assert_eq!(p.steps.len(), 2);
    assert_eq!(
        p.steps[0].operation,
        Operation::ModifyDn {
            dn: USER_DN.into(),
            new_rdn: "uid=jsmith".into(),
            delete_old_rdn: true,
            new_superior: Some("ou=Staff,dc=example,dc=org".into()),
            new_dn: new_dn.into(),
        }
    );
    assert_eq!(p.steps[0].change_ids, vec![e.pe.attribute_changes[0].id]);
    match &p.steps[1].operation {
        Operation::Modify { dn, .. } => assert_eq!(dn, new_dn),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.dn, new_dn);
    assert_eq!(p.previous_dn.as_deref(), Some(USER_DN));
}

/// §11.15 kept: an RDN-only rename still passes newSuperior.
#[test]
fn rdn_only_rename_still_passes_new_superior() {
    let e = Export::new(PendingExportChangeType::Update).text(
        DN,
        C::Update,
        "uid=jdoe2,ou=People,dc=example,dc=org",
    );
    let c = cso(USER_DN, 0, None);
    let p = plan(&e, "inetOrgPerson", Some(&c));
    assert!(matches!(
        &p.steps[0].operation,
        Operation::ModifyDn { new_superior: Some(s), delete_old_rdn: true, .. } if s == "ou=People,dc=example,dc=org"
    ));
}

/// §11.14 kept: a DN change differing only in case does not rename.
#[test]
fn case_only_dn_change_does_not_rename() {
    let e = Export::new(PendingExportChangeType::Update).text(
        DN,
        C::Update,
        "UID=JDOE,OU=People,DC=example,DC=org",
    );
    let c = cso(USER_DN, 0, None);
    let p = plan(&e, "inetOrgPerson", Some(&c));
    assert!(p.is_empty());
    assert_eq!(p.unsent_change_ids, vec![e.pe.attribute_changes[0].id]);
    assert_eq!(p.previous_dn, None);
}

/// `Planner::rename` says what the plan's ModifyDN does, and nothing for a case-only change, an
/// Update without a DN change, a Create, or a new DN the plan refuses (invalid, out of scope).
#[test]
fn rename_names_what_the_plan_moves() {
    let ot = object_type("inetOrgPerson");
    let planner = Planner::new(&ExportSettings::default(), Dialect::OpenLdap);
    let c = cso(USER_DN, 0, None);
    let new_dn = "uid=jsmith,ou=Staff,dc=example,dc=org";
    let rename = Export::new(PendingExportChangeType::Update)
        .text(DN, C::Update, new_dn)
        .text(DISPLAY_NAME, C::Update, "J Smith");
    assert_eq!(
        planner.rename(&PlanInput::new(&rename.pe, &ot, Some(&c))),
        Some((USER_DN, new_dn))
    );
    let planned = plan(&rename, "inetOrgPerson", Some(&c));
    assert_eq!(planned.previous_dn.as_deref(), Some(USER_DN));
    let case_only =
        Export::new(PendingExportChangeType::Update).text(DN, C::Update, &USER_DN.to_uppercase());
    assert_eq!(
        planner.rename(&PlanInput::new(&case_only.pe, &ot, Some(&c))),
        None
    );
    let no_dn = Export::new(PendingExportChangeType::Update).text(DISPLAY_NAME, C::Update, "J");
    assert_eq!(
        planner.rename(&PlanInput::new(&no_dn.pe, &ot, Some(&c))),
        None
    );
    let create = Export::new(PendingExportChangeType::Create).text(DN, C::Add, new_dn);
    assert_eq!(planner.rename(&PlanInput::new(&create.pe, &ot, None)), None);
    let invalid =
        Export::new(PendingExportChangeType::Update).text(DN, C::Update, "uid=,ou=Staff,dc=x");
    assert!(
        plan_with(
            &invalid,
            "inetOrgPerson",
            Some(&c),
            &ExportSettings::default(),
            Dialect::OpenLdap
        )
        .is_err()
    );
    assert_eq!(
        planner.rename(&PlanInput::new(&invalid.pe, &ot, Some(&c))),
        None
    );
    let scoped = ExportSettings {
        managed_scope: vec![ScopeContainer {
            dn: "ou=People,dc=example,dc=org".into(),
            scope: Some(ConnectedSystemContainerScope::Subtree),
            excluded: false,
        }],
        ..ExportSettings::default()
    };
    assert!(
        plan_with(
            &rename,
            "inetOrgPerson",
            Some(&c),
            &scoped,
            Dialect::OpenLdap
        )
        .is_err()
    );
    assert_eq!(
        Planner::new(&scoped, Dialect::OpenLdap).rename(&PlanInput::new(&rename.pe, &ot, Some(&c))),
        None,
        "a move out of the managed scope is refused, so nothing waits for it"
    );
}

/// `Planner::moves_to` decides from the two DNs what `Planner::rename` decides from the export.
#[test]
fn moves_to_agrees_with_rename() {
    let planner = Planner::new(&ExportSettings::default(), Dialect::OpenLdap);
    let new_dn = "uid=jsmith,ou=Staff,dc=example,dc=org";
    assert!(planner.moves_to(USER_DN, new_dn));
    assert!(
        !planner.moves_to(USER_DN, &USER_DN.to_uppercase()),
        "case only"
    );
    assert!(!planner.moves_to(USER_DN, "uid=,ou=Staff,dc=x"), "invalid");
    assert!(!planner.moves_to(USER_DN, "  "), "empty");
    let scoped = Planner::new(
        &ExportSettings {
            managed_scope: vec![ScopeContainer {
                dn: "ou=People,dc=example,dc=org".into(),
                scope: Some(ConnectedSystemContainerScope::Subtree),
                excluded: false,
            }],
            ..ExportSettings::default()
        },
        Dialect::OpenLdap,
    );
    assert!(
        !scoped.moves_to(USER_DN, new_dn),
        "out of the managed scope"
    );
    assert!(scoped.moves_to(USER_DN, "uid=jsmith,ou=People,dc=example,dc=org"));
}

/// `ExecuteAsync_UpdateWithInvalidNewDn_ReturnsFailedWithInvalidGeneratedExternalIdAsync`.
#[test]
fn rename_to_invalid_dn() {
    let e = Export::new(PendingExportChangeType::Update).text(
        DN,
        C::Update,
        "CN=,OU=,DC=example,DC=org",
    );
    let c = cso(USER_DN, 0, None);
    let f = plan_with(
        &e,
        "user",
        Some(&c),
        &ExportSettings::default(),
        Dialect::OpenLdap,
    )
    .unwrap_err();
    assert_eq!(
        f.error_type,
        ConnectedSystemExportErrorType::InvalidGeneratedExternalId
    );
    assert!(f.message.contains("empty RDN components"), "{f}");
}

#[test]
fn move_creates_the_new_parent_when_enabled() {
    let settings = ExportSettings {
        create_containers_as_needed: true,
        ..ExportSettings::default()
    };
    let e = Export::new(PendingExportChangeType::Update).text(
        DN,
        C::Update,
        "uid=jdoe,ou=New,ou=People,dc=example,dc=org",
    );
    let c = cso(USER_DN, 0, None);
    let p = plan_with(&e, "inetOrgPerson", Some(&c), &settings, Dialect::OpenLdap).unwrap();
    let kinds: Vec<&str> = p.steps.iter().map(|s| s.operation.kind()).collect();
    assert_eq!(
        kinds,
        vec!["ensure_container", "ensure_container", "modify_dn"]
    );
    // A rename within the same parent needs no container.
    let e = Export::new(PendingExportChangeType::Update).text(
        DN,
        C::Update,
        "uid=other, OU=People,dc=example,dc=org",
    );
    let p = plan_with(&e, "inetOrgPerson", Some(&c), &settings, Dialect::OpenLdap).unwrap();
    let kinds: Vec<&str> = p.steps.iter().map(|s| s.operation.kind()).collect();
    assert_eq!(kinds, vec!["modify_dn"]);
}

/// `ConsolidateModifications_RdnAttributes_SkippedAsync`: with no parseable DN, JIM's fallback list
/// (`cn`, `ou`, `dc`, `uid`) and `distinguishedName` are dropped; only displayName remains.
#[test]
fn rdn_attributes_are_skipped() {
    let e = Export::new(PendingExportChangeType::Update)
        .text(CN, C::Update, "x")
        .text(DISPLAY_NAME, C::Update, "D");
    let c = cso("not a dn", 0, None);
    let p = plan(&e, "user", Some(&c));
    let m = modifies(&p);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].len(), 1);
    assert_eq!(m[0][0].attribute, "displayName");
    // Only the leaf RDN's type is skipped: cn on a uid-named entry is sent (PLAN-OL:466).
    let e = Export::new(PendingExportChangeType::Update)
        .text(CN, C::Update, "John")
        .text(UID, C::Update, "jdoe");
    let c = cso(USER_DN, 0, None);
    let p = plan(&e, "inetOrgPerson", Some(&c));
    let m = modifies(&p);
    assert_eq!(m[0].len(), 1);
    assert_eq!(m[0][0].attribute, "cn");
    assert_eq!(p.unsent_change_ids, vec![e.pe.attribute_changes[1].id]);
}

/// `ExecuteAsync_UpdateWithDecimalValue_WritesValueInsteadOfClearingAttributeAsync`.
#[test]
fn decimal_update_is_written_not_cleared() {
    let e = Export::new(PendingExportChangeType::Update).change(
        SALARY,
        C::Update,
        ValueSlots {
            decimal: Some(Decimal::from_str("12345.678").unwrap()),
            ..Default::default()
        },
    );
    let c = cso(USER_DN, 0, None);
    let p = plan(&e, "inetOrgPerson", Some(&c));
    let m = modifies(&p);
    assert_eq!(m[0][0].kind, ModKind::Replace);
    assert_eq!(text_values(&m[0][0].values), vec!["12345.678"]);
}

/// `ExecuteAsync_LargeGroupMemberAdd_SendsMultipleModifyRequestsAsync` (120 at 50) and
/// `ExecuteAsync_SmallGroupMemberAdd_SendsSingleModifyRequestAsync` (10 at 100), end to end.
#[test]
fn member_adds_through_the_planner() {
    let c = cso(GROUP_DN, 2, None);
    let e = Export::new(PendingExportChangeType::Update).members(C::Add, 120);
    let p = plan_with(&e, "groupOfNames", Some(&c), &batch(50), Dialect::OpenLdap).unwrap();
    let sizes: Vec<usize> = modifies(&p).iter().map(|m| m[0].values.len()).collect();
    assert_eq!(sizes, vec![50, 50, 20]);
    let e = Export::new(PendingExportChangeType::Update).members(C::Add, 10);
    let p = plan_with(&e, "groupOfNames", Some(&c), &batch(100), Dialect::OpenLdap).unwrap();
    assert_eq!(modifies(&p).len(), 1);
}

/// `Constructor_BatchSizeBelowMinimum_ClampedToMinimumAsync` (1 → 10: 15 values in 2 requests) and
/// `Constructor_BatchSizeAboveMaximum_ClampedToMaximumAsync` (10000 → 5000: 5001 values in 2).
#[test]
fn batch_size_is_clamped() {
    let c = cso(GROUP_DN, 2, None);
    for (configured, n, expected) in [
        (1u32, 15usize, vec![10usize, 5]),
        (10_000, 5001, vec![5000, 1]),
    ] {
        let e = Export::new(PendingExportChangeType::Update).members(C::Add, n);
        let p = plan_with(
            &e,
            "groupOfNames",
            Some(&c),
            &batch(configured),
            Dialect::OpenLdap,
        )
        .unwrap();
        let sizes: Vec<usize> = modifies(&p).iter().map(|m| m[0].values.len()).collect();
        assert_eq!(sizes, expected);
    }
}

#[test]
fn update_without_changes_or_dn() {
    let c = cso(USER_DN, 0, None);
    let e = Export::new(PendingExportChangeType::Update);
    assert!(plan(&e, "user", Some(&c)).is_empty());
    let e = Export::new(PendingExportChangeType::Update).text(DESCRIPTION, C::Update, "x");
    let f = plan_with(
        &e,
        "user",
        None,
        &ExportSettings::default(),
        Dialect::OpenLdap,
    )
    .unwrap_err();
    assert_eq!(f.error_type, ConnectedSystemExportErrorType::General);
}

#[test]
fn every_change_type_maps_to_its_ldap_operation() {
    let c = cso(USER_DN, 0, None);
    let e = Export::new(PendingExportChangeType::Update)
        .text(MEMBER, C::Add, "cn=a,dc=x")
        .text(DISPLAY_NAME, C::Update, "D")
        .text(UNIQUE_MEMBER, C::Remove, "cn=b,dc=x")
        .change(DESCRIPTION, C::RemoveAll, ValueSlots::default())
        .change(ACCOUNT_EXPIRES, C::Update, ValueSlots::default());
    let p = plan(&e, "inetOrgPerson", Some(&c));
    let m = modifies(&p);
    let kinds: Vec<(&str, ModKind, usize)> = m[0]
        .iter()
        .map(|m| (m.attribute.as_str(), m.kind, m.values.len()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("member", ModKind::Add, 1),
            ("displayName", ModKind::Replace, 1),
            ("uniqueMember", ModKind::Delete, 1),
            ("description", ModKind::Replace, 0),
            ("accountExpires", ModKind::Replace, 1),
        ]
    );
    assert_eq!(text_values(&m[0][4].values), vec!["9223372036854775807"]);
    assert_eq!(p.substitutions.len(), 1);
    assert_eq!(p.substitutions[0].change_id, e.pe.attribute_changes[4].id);
}

// ---- Placeholder member -------------------------------------------------------------------------

/// `RequiresPlaceholderMember_*` (6 tests) and `GetMemberAttributeName_*` (2 tests).
#[test]
fn placeholder_requirement() {
    assert!(requires_placeholder(Dialect::OpenLdap, "groupOfNames"));
    assert!(requires_placeholder(
        Dialect::OpenLdap,
        "groupOfUniqueNames"
    ));
    assert!(!requires_placeholder(Dialect::OpenLdap, "inetOrgPerson"));
    assert!(!requires_placeholder(
        Dialect::ActiveDirectory,
        "groupOfNames"
    ));
    assert!(!requires_placeholder(Dialect::SambaAd, "group"));
    assert!(requires_placeholder(Dialect::Generic, "groupOfNames"));
    assert!(requires_placeholder(Dialect::Ds389, "GROUPOFNAMES"));
    assert_eq!(member_attribute("groupOfNames"), "member");
    assert_eq!(member_attribute("groupOfUniqueNames"), "uniqueMember");
}

/// `BuildAddRequestWithOverflow_GroupOfNames_NoMembers_InjectsPlaceholderAsync`,
/// `…WithMembers_DoesNotInject…`, `…CustomPlaceholder…`, `…ActiveDirectory_NoMembers…`,
/// `…GroupOfUniqueNames_NoMembers…`.
#[test]
fn create_placeholder_cases() {
    let p = plan(&create_group(0), "groupOfNames", None);
    let (_, attributes, placeholder) = add_of(&p);
    assert!(placeholder);
    assert_eq!(
        text_values(&attr(attributes, "member").unwrap().values),
        vec!["cn=placeholder"]
    );
    assert!(p.steps[0].operation.carries_placeholder());

    let p = plan(&create_group(3), "groupOfNames", None);
    let (_, attributes, placeholder) = add_of(&p);
    assert!(!placeholder);
    assert_eq!(attr(attributes, "member").unwrap().values.len(), 3);

    let custom = ExportSettings {
        placeholder_member_dn: "cn=nobody,dc=example,dc=org".into(),
        ..ExportSettings::default()
    };
    let p = plan_with(
        &create_group(0),
        "groupOfNames",
        None,
        &custom,
        Dialect::OpenLdap,
    )
    .unwrap();
    assert_eq!(
        text_values(&attr(add_of(&p).1, "member").unwrap().values),
        vec!["cn=nobody,dc=example,dc=org"]
    );

    let p = plan_with(
        &create_group(0),
        "group",
        None,
        &ExportSettings::default(),
        Dialect::ActiveDirectory,
    )
    .unwrap();
    assert!(attr(add_of(&p).1, "member").is_none());

    let e = Export::new(PendingExportChangeType::Create).text(DN, C::Add, GROUP_DN);
    let p = plan(&e, "groupOfUniqueNames", None);
    assert_eq!(
        text_values(&attr(add_of(&p).1, "uniqueMember").unwrap().values),
        vec!["cn=placeholder"]
    );
}

fn update_members(removes: usize, adds: usize) -> Export {
    let mut e = Export::new(PendingExportChangeType::Update);
    for i in 0..removes {
        e = e.text(
            MEMBER,
            C::Remove,
            &format!("uid=old{i},ou=People,dc=example,dc=org"),
        );
    }
    e.members(C::Add, adds)
}

fn has_placeholder_add(m: &[Modification]) -> bool {
    m.iter().any(|m| m.placeholder && m.kind == ModKind::Add)
}

/// `BuildModifyRequests_RemoveLastMember_GroupOfNames_InjectsPlaceholderAsync`,
/// `…RemoveNonLastMember…`, `…RemoveAllMembers…`, `…RemoveLastMember_ActiveDirectory…`.
#[test]
fn update_placeholder_on_last_member_removal() {
    let one = cso(GROUP_DN, 1, None);
    let p = plan(&update_members(1, 0), "groupOfNames", Some(&one));
    let m = modifies(&p);
    assert_eq!(m.len(), 1, "placeholder and delete in one request");
    assert!(has_placeholder_add(m[0]));
    assert_eq!(
        m[0][0].kind,
        ModKind::Add,
        "placeholder first, so the group is never empty"
    );
    assert!(m[0].iter().any(|m| m.kind == ModKind::Delete));
    assert!(p.steps[0].operation.carries_placeholder());

    let three = cso(GROUP_DN, 3, None);
    let p = plan(&update_members(1, 0), "groupOfNames", Some(&three));
    assert!(!has_placeholder_add(modifies(&p)[0]));

    let p = plan(&update_members(3, 0), "groupOfNames", Some(&three));
    assert!(has_placeholder_add(modifies(&p)[0]));

    let p = plan_with(
        &update_members(1, 0),
        "group",
        Some(&one),
        &ExportSettings::default(),
        Dialect::ActiveDirectory,
    )
    .unwrap();
    assert!(!has_placeholder_add(modifies(&p)[0]));
}

/// JIM counts every value of the member attribute: a row naming its member by id alone (no DN
/// text, as an optimistic apply may store it) is a member, so removing one other member does not
/// empty the group.
#[test]
fn a_member_known_by_id_alone_counts() {
    let mut two = cso(GROUP_DN, 2, None);
    let id_only = two
        .values
        .iter_mut()
        .find(|v| v.attribute_id == MEMBER)
        .unwrap();
    id_only.unresolved_reference_value = None;
    let p = plan(&update_members(1, 0), "groupOfNames", Some(&two));
    assert!(!has_placeholder_add(modifies(&p)[0]));
}

/// `BuildModifyRequests_AddMemberToPlaceholderOnlyGroup_RemovesPlaceholderAsync` and
/// `…AddMemberToGroupWithRealMembers_DoesNotRemovePlaceholderAsync`; §11.3: a group JIM sees as empty
/// (import filters the placeholder out) also drops the placeholder when members arrive.
#[test]
fn placeholder_removed_when_real_members_arrive() {
    for c in [
        cso(GROUP_DN, 0, Some("cn=placeholder")),
        cso(GROUP_DN, 0, None),
    ] {
        let p = plan(&update_members(0, 1), "groupOfNames", Some(&c));
        assert_eq!(p.steps.len(), 2);
        match &p.steps[1].operation {
            Operation::Modify {
                modifications,
                purpose: ModifyPurpose::RemovePlaceholder,
                ..
            } => {
                assert_eq!(modifications[0].kind, ModKind::Delete);
                assert_eq!(
                    text_values(&modifications[0].values),
                    vec!["cn=placeholder"]
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let two = cso(GROUP_DN, 2, None);
    let p = plan(&update_members(0, 1), "groupOfNames", Some(&two));
    assert_eq!(p.steps.len(), 1);
}

/// §11.3: clearing the member attribute (RemoveAll, or a replace left empty) keeps the placeholder.
#[test]
fn clearing_members_keeps_the_placeholder() {
    let c = cso(GROUP_DN, 3, None);
    let e = Export::new(PendingExportChangeType::Update).change(
        MEMBER,
        C::RemoveAll,
        ValueSlots::default(),
    );
    let p = plan(&e, "groupOfNames", Some(&c));
    let m = modifies(&p);
    assert_eq!(m[0][0].kind, ModKind::Replace);
    assert_eq!(text_values(&m[0][0].values), vec!["cn=placeholder"]);
    assert!(m[0][0].placeholder);
    // On AD a clear stays a clear.
    let p = plan_with(
        &e,
        "group",
        Some(&c),
        &ExportSettings::default(),
        Dialect::ActiveDirectory,
    )
    .unwrap();
    assert!(modifies(&p)[0][0].values.is_empty());
}

// ---- Delete -------------------------------------------------------------------------------------

/// `ExecuteAsync_HardDelete_SendsDeleteRequestAsync`.
#[test]
fn delete_sends_one_delete() {
    let c = cso(USER_DN, 0, None);
    let p = plan(
        &Export::new(PendingExportChangeType::Delete),
        "user",
        Some(&c),
    );
    assert_eq!(
        p.steps,
        vec![PlannedStep {
            operation: Operation::Delete { dn: USER_DN.into() },
            change_ids: Vec::new()
        }]
    );
}

#[test]
fn disable_variants() {
    let c = cso(USER_DN, 0, None);
    let uac = ExportSettings {
        delete_behaviour: Some(DeleteBehaviour::Disable),
        ..ExportSettings::default()
    };
    let p = plan_with(
        &Export::new(PendingExportChangeType::Delete),
        "user",
        Some(&c),
        &uac,
        Dialect::ActiveDirectory,
    )
    .unwrap();
    assert_eq!(
        p.steps[0].operation,
        Operation::DisableAccount { dn: USER_DN.into() }
    );
    let flag = ExportSettings {
        delete_behaviour: Some(DeleteBehaviour::Disable),
        disable_attribute: "employeeDisabled".into(),
        ..ExportSettings::default()
    };
    let p = plan_with(
        &Export::new(PendingExportChangeType::Delete),
        "user",
        Some(&c),
        &flag,
        Dialect::OpenLdap,
    )
    .unwrap();
    match &p.steps[0].operation {
        Operation::Modify {
            modifications,
            purpose: ModifyPurpose::Disable,
            ..
        } => {
            assert_eq!(modifications[0].kind, ModKind::Replace);
            assert_eq!(modifications[0].attribute, "employeeDisabled");
            assert_eq!(text_values(&modifications[0].values), vec!["TRUE"]);
        }
        other => panic!("{other:?}"),
    }
}

/// `ExecuteAsync_DeleteWithInvalidDn_ReturnsFailedWithInvalidGeneratedExternalIdAsync`; a delete
/// with no DN at all is a general failure.
#[test]
fn delete_with_invalid_or_missing_dn() {
    let c = cso("CN=,OU=,DC=example,DC=org", 0, None);
    let f = plan_with(
        &Export::new(PendingExportChangeType::Delete),
        "user",
        Some(&c),
        &ExportSettings::default(),
        Dialect::OpenLdap,
    )
    .unwrap_err();
    assert_eq!(
        f.error_type,
        ConnectedSystemExportErrorType::InvalidGeneratedExternalId
    );
    let f = plan_with(
        &Export::new(PendingExportChangeType::Delete),
        "user",
        None,
        &ExportSettings::default(),
        Dialect::OpenLdap,
    )
    .unwrap_err();
    assert_eq!(f.error_type, ConnectedSystemExportErrorType::General);
    // A delete whose CSO is gone uses the DN change.
    let e = Export::new(PendingExportChangeType::Delete).text(DN, C::Update, USER_DN);
    let p = plan(&e, "user", None);
    assert_eq!(p.dn, USER_DN);
}

/// DNs and DN values are sent exactly as staged, never escaped a second time.
#[test]
fn dns_and_references_are_sent_as_staged() {
    let escaped = r"cn=Smith\, John,ou=People,dc=example,dc=org";
    let e = Export::new(PendingExportChangeType::Create)
        .text(DN, C::Add, r"cn=Team\2C A,ou=Groups,dc=example,dc=org")
        .text(MEMBER, C::Add, escaped);
    let p = plan(&e, "groupOfNames", None);
    let (dn, attributes, _) = add_of(&p);
    assert_eq!(dn, r"cn=Team\2C A,ou=Groups,dc=example,dc=org");
    assert_eq!(
        text_values(&attr(attributes, "member").unwrap().values),
        vec![escaped]
    );
}
