//! Tests of the optimistic apply and the anchor write-back, computed in memory.

use super::*;
use crate::model::{
    AttributeDefinition, AttributePlurality, AttributeWritability, ConnectedSystemObjectJoinType,
    ConnectedSystemObjectStatus, CsoAttributeValue, ObjectType, UnresolvedReferenceHandling,
};

const DN: i32 = 1;
const GUID: i32 = 2;
const MAIL: i32 = 3;
const MEMBER: i32 = 4;
const COST: i32 = 5;
const EMPLOYEE_NO: i32 = 6;

fn schema() -> SystemSchema {
    let attr = |id, name: &str, data_type, multi: bool| AttributeDefinition {
        id,
        name: name.into(),
        data_type,
        plurality: if multi {
            AttributePlurality::MultiValued
        } else {
            AttributePlurality::SingleValued
        },
        object_type_id: 1,
        is_external_id: id == GUID,
        is_secondary_external_id: id == DN,
        writability: AttributeWritability::Writable,
    };
    let types = vec![ObjectType {
        id: 1,
        name: "group".into(),
        attributes: vec![
            attr(DN, "distinguishedName", AttributeDataType::Text, false),
            attr(GUID, "objectGUID", AttributeDataType::Guid, false),
            attr(MAIL, "mail", AttributeDataType::Text, true),
            attr(MEMBER, "member", AttributeDataType::Reference, true),
            attr(COST, "cost", AttributeDataType::Decimal, false),
            attr(
                EMPLOYEE_NO,
                "employeeNumber",
                AttributeDataType::Number,
                false,
            ),
        ],
    }];
    SystemSchema::new(7, "test", UnresolvedReferenceHandling::Error, types)
}

fn cso(values: Vec<CsoAttributeValue>) -> ConnectedSystemObject {
    ConnectedSystemObject {
        id: Uuid::new_v4(),
        connected_system_id: 7,
        type_id: 1,
        external_id_attribute_id: GUID,
        secondary_external_id_attribute_id: Some(DN),
        status: ConnectedSystemObjectStatus::PendingProvisioning,
        metaverse_object_id: None,
        join_type: ConnectedSystemObjectJoinType::Provisioned,
        values,
    }
}

fn text_value(attribute_id: i32, s: &str) -> CsoAttributeValue {
    CsoAttributeValue {
        id: Uuid::new_v4(),
        attribute_id,
        value: ValueSlots::text(s),
        reference_value_id: None,
        unresolved_reference_value: None,
    }
}

fn change(
    attribute_id: i32,
    change_type: PendingExportAttributeChangeType,
    value: ValueSlots,
) -> AttributeValueChange {
    AttributeValueChange {
        value,
        ..AttributeValueChange::for_test(Uuid::nil(), attribute_id, change_type)
    }
}

/// An Add of a member, resolved (as the claim or the resolution leaves it) to the CSO `member`
/// with the DN `dn`.
fn member_add(dn: impl Into<String>, member: Uuid) -> AttributeValueChange {
    AttributeValueChange {
        resolved_reference_cso_id: Some(member),
        ..change(
            MEMBER,
            PendingExportAttributeChangeType::Add,
            ValueSlots::text(dn),
        )
    }
}

fn run(cso: &ConnectedSystemObject, changes: &[AttributeValueChange]) -> (CsoDelta, ApplyCounts) {
    let ids: Vec<Uuid> = changes.iter().map(|c| c.id).collect();
    cso_delta(cso, changes, &ids, true, Anchors::default(), &schema())
}

#[test]
fn add_only_when_absent() {
    let c = cso(vec![text_value(MAIL, "a@x")]);
    let (d, n) = run(
        &c,
        &[
            change(
                MAIL,
                PendingExportAttributeChangeType::Add,
                ValueSlots::text("a@x"),
            ),
            change(
                MAIL,
                PendingExportAttributeChangeType::Add,
                ValueSlots::text("b@x"),
            ),
            change(
                MAIL,
                PendingExportAttributeChangeType::Add,
                ValueSlots::text("b@x"),
            ),
        ],
    );
    assert!(d.deletes.is_empty());
    assert_eq!(d.upserts.len(), 1);
    assert_eq!(d.upserts[0].value.string.as_deref(), Some("b@x"));
    assert!(d.upserts[0].is_new);
    assert_eq!(n.applied_changes, 3);
}

#[test]
fn update_keeps_a_single_equal_value_and_replaces_otherwise() {
    let same = cso(vec![text_value(MAIL, "a@x")]);
    let (d, _) = run(
        &same,
        &[change(
            MAIL,
            PendingExportAttributeChangeType::Update,
            ValueSlots::text("a@x"),
        )],
    );
    assert!(d.is_empty(), "exactly one equal value: nothing to do");

    let two = cso(vec![text_value(MAIL, "a@x"), text_value(MAIL, "b@x")]);
    let (d, _) = run(
        &two,
        &[change(
            MAIL,
            PendingExportAttributeChangeType::Update,
            ValueSlots::text("a@x"),
        )],
    );
    assert_eq!(d.deletes.len(), 2, "two values, one equal: all replaced");
    assert_eq!(d.upserts.len(), 1);

    let (d, _) = run(
        &same,
        &[change(
            MAIL,
            PendingExportAttributeChangeType::Update,
            ValueSlots::default(),
        )],
    );
    assert_eq!(
        d.deletes,
        vec![same.values[0].id],
        "an Update without a value clears"
    );
    assert!(d.upserts.is_empty());
}

#[test]
fn remove_and_remove_all() {
    let c = cso(vec![
        text_value(MAIL, "a@x"),
        text_value(MAIL, "b@x"),
        text_value(DN, "CN=g"),
    ]);
    let (d, _) = run(
        &c,
        &[change(
            MAIL,
            PendingExportAttributeChangeType::Remove,
            ValueSlots::text("b@x"),
        )],
    );
    assert_eq!(d.deletes, vec![c.values[1].id]);
    let (d, _) = run(
        &c,
        &[change(
            MAIL,
            PendingExportAttributeChangeType::RemoveAll,
            ValueSlots::default(),
        )],
    );
    assert_eq!(d.deletes, vec![c.values[0].id, c.values[1].id]);
    assert!(d.upserts.is_empty());
}

#[test]
fn references_use_the_resolved_cso_and_the_dn_and_skip_unresolved() {
    let known = Uuid::new_v4();
    let c = cso(vec![CsoAttributeValue {
        id: Uuid::new_v4(),
        attribute_id: MEMBER,
        value: ValueSlots::default(),
        reference_value_id: None,
        unresolved_reference_value: Some("CN=Known,DC=x".into()),
    }]);
    let dup = member_add("cn=known,dc=x", known);
    let new_id = Uuid::new_v4();
    let new = member_add("CN=New,DC=x", new_id);
    let mut unresolved = change(
        MEMBER,
        PendingExportAttributeChangeType::Add,
        ValueSlots::default(),
    );
    unresolved.unresolved_reference_value = Some(Uuid::new_v4().to_string());
    let (d, n) = run(&c, &[dup, new, unresolved]);
    assert_eq!(n.unresolved, 1);
    assert_eq!(n.applied_changes, 2);
    assert_eq!(
        d.upserts.len(),
        1,
        "the DN-only row matched the resolved change"
    );
    assert_eq!(d.upserts[0].reference_value_id, Some(new_id));
    assert_eq!(
        d.upserts[0].unresolved_reference_value.as_deref(),
        Some("CN=New,DC=x")
    );
    assert!(d.upserts[0].value.is_empty());
}

#[test]
fn decimal_attributes_are_skipped() {
    let c = cso(vec![]);
    let (d, n) = run(
        &c,
        &[change(
            COST,
            PendingExportAttributeChangeType::Update,
            ValueSlots {
                decimal: Some(rust_decimal::Decimal::new(25, 1)),
                ..Default::default()
            },
        )],
    );
    assert!(d.is_empty());
    assert_eq!(n.applied_changes, 0);
}

#[test]
fn anchors_go_into_typed_slots_updating_or_inserting() {
    let c = cso(vec![text_value(DN, "CN=Old,DC=x")]);
    let guid = Uuid::new_v4();
    let guid_text = guid.to_string();
    let (d, _) = cso_delta(
        &c,
        &[],
        &[],
        true,
        Anchors {
            external_id: Some(&guid_text),
            secondary_external_id: Some("CN=New,DC=x"),
        },
        &schema(),
    );
    assert!(d.deletes.is_empty());
    let guid_row = d.upserts.iter().find(|r| r.attribute_id == GUID).unwrap();
    assert!(guid_row.is_new);
    assert_eq!(guid_row.value.guid, Some(guid));
    assert_eq!(guid_row.value.string, None);
    let dn_row = d.upserts.iter().find(|r| r.attribute_id == DN).unwrap();
    assert!(!dn_row.is_new, "the existing DN row is updated in place");
    assert_eq!(dn_row.id, c.values[0].id);
    assert_eq!(dn_row.value.string.as_deref(), Some("CN=New,DC=x"));

    let (d, _) = cso_delta(
        &c,
        &[],
        &[],
        true,
        Anchors {
            external_id: None,
            secondary_external_id: Some("CN=Old,DC=x"),
        },
        &schema(),
    );
    assert!(d.is_empty(), "an unchanged DN is not rewritten");
}

#[test]
fn a_rename_through_optimistic_apply_and_write_back_touches_each_row_once() {
    let c = cso(vec![text_value(DN, "CN=Old,DC=x")]);
    let dn_change = change(
        DN,
        PendingExportAttributeChangeType::Update,
        ValueSlots::text("CN=New,DC=x"),
    );
    let (d, _) = cso_delta(
        &c,
        std::slice::from_ref(&dn_change),
        &[dn_change.id],
        true,
        Anchors {
            external_id: None,
            secondary_external_id: Some("cn=New,dc=x"),
        },
        &schema(),
    );
    assert_eq!(d.deletes, vec![c.values[0].id]);
    assert_eq!(d.upserts.len(), 1);
    assert!(d.upserts[0].is_new);
    assert_eq!(
        d.upserts[0].value.string.as_deref(),
        Some("cn=New,dc=x"),
        "the server's DN wins"
    );
}

#[test]
fn number_anchor_goes_into_int_value() {
    let mut c = cso(vec![]);
    c.external_id_attribute_id = EMPLOYEE_NO;
    let (d, _) = cso_delta(
        &c,
        &[],
        &[],
        false,
        Anchors {
            external_id: Some("42"),
            secondary_external_id: None,
        },
        &schema(),
    );
    assert_eq!(d.upserts[0].value.int, Some(42));
    assert_eq!(d.upserts[0].value.string, None);
}

#[test]
fn a_hundred_thousand_member_adds_stay_linear() {
    let existing: Vec<CsoAttributeValue> = (0..100_000)
        .map(|i| CsoAttributeValue {
            id: Uuid::new_v4(),
            attribute_id: MEMBER,
            value: ValueSlots::default(),
            reference_value_id: None,
            unresolved_reference_value: Some(format!("CN=Old{i},DC=x")),
        })
        .collect();
    let c = cso(existing);
    let changes: Vec<AttributeValueChange> = (0..100_000)
        .map(|i| member_add(format!("CN=New{i},DC=x"), Uuid::new_v4()))
        .collect();
    // Quadratic work would take minutes here; linear work takes well under a second.
    let (d, n) = run(&c, &changes);
    assert_eq!(n.applied_changes, 100_000);
    assert_eq!(d.upserts.len(), 100_000);
    assert!(d.deletes.is_empty());
}

/// A stored reference row that names its object by id is that object: a change naming another
/// object with the same DN (a deleted and re-created entry, say) does not match it, as in JIM,
/// which matches references by `ReferenceValueId`. The claim loads rows by the same rule.
#[test]
fn a_reference_row_with_an_id_is_matched_by_its_id_alone() {
    let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
    let c = cso(vec![CsoAttributeValue {
        id: Uuid::new_v4(),
        attribute_id: MEMBER,
        value: ValueSlots::default(),
        reference_value_id: Some(old),
        unresolved_reference_value: Some("CN=Same,DC=x".into()),
    }]);
    let add = member_add("cn=same,dc=x", new);
    let (d, _) = run(&c, std::slice::from_ref(&add));
    assert_eq!(d.upserts.len(), 1, "the other object's row is not this one");
    assert_eq!(d.upserts[0].reference_value_id, Some(new));
    assert!(d.deletes.is_empty());

    let mut remove = add;
    remove.change_type = PendingExportAttributeChangeType::Remove;
    let (d, _) = run(&c, &[remove]);
    assert!(d.is_empty(), "a Remove of the other object leaves the row");
}

/// Inserted rows get time-ordered ids (UUID v7), increasing in the order they were made, so a run's
/// inserts land in one region of the primary key's index.
#[test]
fn inserted_rows_get_time_ordered_ids() {
    let c = cso(Vec::new());
    let changes: Vec<AttributeValueChange> = (0..50)
        .map(|i| member_add(format!("CN=New{i},DC=x"), Uuid::new_v4()))
        .collect();
    let (d, _) = run(&c, &changes);
    assert_eq!(d.upserts.len(), 50);
    assert!(
        d.upserts
            .iter()
            .all(|r| r.is_new && r.id.get_version_num() == 7)
    );
    assert!(d.upserts.windows(2).all(|w| w[0].id < w[1].id));
}
