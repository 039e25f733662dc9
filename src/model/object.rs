//! Connected system objects (CSOs), their attribute values and the attribute definitions of their types.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::enums::{
    AttributeDataType, AttributePlurality, AttributeWritability, ConnectedSystemObjectJoinType,
    ConnectedSystemObjectStatus,
};
use super::value::ValueSlots;

/// One row of `ConnectedSystemAttributes`: an attribute of a connected system's object type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeDefinition {
    /// `Id`.
    pub id: i32,
    /// `Name`: the LDAP attribute name (`distinguishedName` for the DN).
    pub name: String,
    /// `Type`: which typed slot carries the values.
    pub data_type: AttributeDataType,
    /// `AttributePlurality`.
    pub plurality: AttributePlurality,
    /// `ConnectedSystemObjectTypeId`.
    pub object_type_id: i32,
    /// `IsExternalId`: the primary anchor (e.g. `entryUUID`, `objectGUID`).
    pub is_external_id: bool,
    /// `IsSecondaryExternalId`: the secondary anchor (the DN), used to render references.
    pub is_secondary_external_id: bool,
    /// `Writability`.
    pub writability: AttributeWritability,
}

impl AttributeDefinition {
    /// True for a multi-valued attribute.
    pub fn is_multi_valued(&self) -> bool {
        self.plurality == AttributePlurality::MultiValued
    }

    /// True for the attribute that carries the DN (JIM matches the name case-insensitively).
    pub fn is_distinguished_name(&self) -> bool {
        self.name.eq_ignore_ascii_case("distinguishedName")
    }
}

/// One row of `ConnectedSystemObjectTypes` with its attribute definitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectType {
    /// `Id`.
    pub id: i32,
    /// `Name`: the object class (the LDAP connector falls back to it for `objectClass`).
    pub name: String,
    /// The type's attributes.
    pub attributes: Vec<AttributeDefinition>,
}

impl ObjectType {
    /// The attribute flagged `IsExternalId` (the primary anchor), if any.
    pub fn primary_anchor(&self) -> Option<&AttributeDefinition> {
        self.attributes.iter().find(|a| a.is_external_id)
    }

    /// The attribute flagged `IsSecondaryExternalId` (the DN), if any.
    pub fn secondary_anchor(&self) -> Option<&AttributeDefinition> {
        self.attributes.iter().find(|a| a.is_secondary_external_id)
    }
}

/// One row of `ConnectedSystemObjects` (the engine's view of it) with its attribute values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectedSystemObject {
    /// `Id`.
    pub id: Uuid,
    /// `ConnectedSystemId`.
    pub connected_system_id: i32,
    /// `TypeId`.
    pub type_id: i32,
    /// `ExternalIdAttributeId`: the primary anchor attribute (a plain int, not a foreign key).
    pub external_id_attribute_id: i32,
    /// `SecondaryExternalIdAttributeId`: the DN attribute.
    pub secondary_external_id_attribute_id: Option<i32>,
    /// `Status`: export never changes it (a provisioned CSO stays `PendingProvisioning`).
    pub status: ConnectedSystemObjectStatus,
    /// `MetaverseObjectId`.
    pub metaverse_object_id: Option<Uuid>,
    /// `JoinType`.
    pub join_type: ConnectedSystemObjectJoinType,
    /// Rows of `ConnectedSystemObjectAttributeValues`.
    pub values: Vec<CsoAttributeValue>,
}

impl ConnectedSystemObject {
    /// The values of one attribute.
    pub fn values_of(&self, attribute_id: i32) -> impl Iterator<Item = &CsoAttributeValue> {
        self.values
            .iter()
            .filter(move |v| v.attribute_id == attribute_id)
    }

    /// The current DN: the `StringValue` of the secondary-anchor attribute.
    pub fn current_dn(&self) -> Option<&str> {
        let attr = self.secondary_external_id_attribute_id?;
        self.values_of(attr).find_map(|v| v.value.string.as_deref())
    }
}

/// One row of `ConnectedSystemObjectAttributeValues`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsoAttributeValue {
    /// `Id`.
    pub id: Uuid,
    /// `AttributeId`.
    pub attribute_id: i32,
    /// The typed value slots.
    pub value: ValueSlots,
    /// `ReferenceValueId`: the referenced CSO, for a reference value.
    pub reference_value_id: Option<Uuid>,
    /// `UnresolvedReferenceValue`: the raw reference string (usually the DN).
    pub unresolved_reference_value: Option<String>,
}
