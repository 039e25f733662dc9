//! The connected system's object types and attribute definitions, loaded once per run.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::RowError;
use crate::model::{
    AttributeDataType, AttributeDefinition, AttributePlurality, AttributeWritability, ObjectType,
    UnresolvedReferenceHandling,
};

/// One connected system as an export run needs it: its name, how unresolvable references are reported,
/// and every object type with its attribute definitions.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemSchema {
    /// `ConnectedSystems.Id`.
    pub connected_system_id: i32,
    /// `ConnectedSystems.Name` (JIM's `MetricsCheckpoint` line names the system).
    pub name: String,
    /// `ConnectedSystems.UnresolvedReferenceHandling`.
    pub unresolved_reference_handling: UnresolvedReferenceHandling,
    /// The system's object types, each with its attributes, in id order.
    pub object_types: Vec<ObjectType>,
    /// Attribute definitions that could not be read (an unknown enum number); exports that use them are
    /// reported as bad rows.
    pub unreadable_attributes: Vec<RowError>,
    attributes: HashMap<i32, (usize, usize)>,
}

impl SystemSchema {
    /// A schema from its parts (for tests and hosts that already hold the definitions).
    pub fn new(
        connected_system_id: i32,
        name: impl Into<String>,
        unresolved_reference_handling: UnresolvedReferenceHandling,
        object_types: Vec<ObjectType>,
    ) -> Self {
        let mut attributes = HashMap::new();
        for (t, ty) in object_types.iter().enumerate() {
            for (a, attr) in ty.attributes.iter().enumerate() {
                attributes.insert(attr.id, (t, a));
            }
        }
        Self {
            connected_system_id,
            name: name.into(),
            unresolved_reference_handling,
            object_types,
            unreadable_attributes: Vec::new(),
            attributes,
        }
    }

    /// The definition of attribute `id`, if it belongs to this system and could be read.
    pub fn attribute(&self, id: i32) -> Option<&AttributeDefinition> {
        let (t, a) = *self.attributes.get(&id)?;
        self.object_types.get(t)?.attributes.get(a)
    }

    /// Object type `id`, if it belongs to this system.
    pub fn object_type(&self, id: i32) -> Option<&ObjectType> {
        self.object_types.iter().find(|t| t.id == id)
    }

    /// The primary anchor attributes (`IsExternalId`) of every object type.
    pub fn primary_anchor_attribute_ids(&self) -> Vec<i32> {
        self.object_types
            .iter()
            .flat_map(|t| &t.attributes)
            .filter(|a| a.is_external_id)
            .map(|a| a.id)
            .collect()
    }

    /// The ids of the attributes JIM renders references with: those flagged `IsSecondaryExternalId`
    /// (preferred) or `IsExternalId`.
    pub fn anchor_attribute_ids(&self) -> Vec<i32> {
        self.object_types
            .iter()
            .flat_map(|t| &t.attributes)
            .filter(|a| a.is_secondary_external_id || a.is_external_id)
            .map(|a| a.id)
            .collect()
    }

    /// Builds the schema from the rows of `sql::LOAD_SYSTEM`; `None` when the system does not exist.
    pub(crate) fn from_rows(
        connected_system_id: i32,
        rows: &[PgRow],
    ) -> Result<Option<Self>, sqlx::Error> {
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let name: String = first.try_get(0)?;
        let handling_raw: i32 = first.try_get(1)?;
        // An unknown handling mode is not worth failing a run over: JIM's default applies.
        let unresolved_reference_handling = UnresolvedReferenceHandling::from_i32(handling_raw)
            .unwrap_or(UnresolvedReferenceHandling::Error);
        let mut schema = SystemSchema {
            connected_system_id,
            name,
            unresolved_reference_handling,
            object_types: Vec::new(),
            unreadable_attributes: Vec::new(),
            attributes: HashMap::new(),
        };
        for row in rows {
            let Some(type_id) = row.try_get::<Option<i32>, _>(2)? else {
                continue;
            };
            if schema.object_types.last().map(|t| t.id) != Some(type_id) {
                schema.object_types.push(ObjectType {
                    id: type_id,
                    name: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
                    attributes: Vec::new(),
                });
            }
            let Some(attr_id) = row.try_get::<Option<i32>, _>(4)? else {
                continue;
            };
            match read_attribute(row, type_id, attr_id) {
                Ok(def) => {
                    let t = schema.object_types.len() - 1;
                    let attrs = &mut schema.object_types[t].attributes;
                    schema.attributes.insert(def.id, (t, attrs.len()));
                    attrs.push(def);
                }
                Err(e) => schema.unreadable_attributes.push(e),
            }
        }
        tracing::debug!(
            connected_system_id,
            object_types = schema.object_types.len(),
            attributes = schema.attributes.len(),
            "connected system's schema loaded"
        );
        if let Some(e) = schema.unreadable_attributes.first() {
            tracing::warn!(
                connected_system_id,
                count = schema.unreadable_attributes.len(),
                first = %e,
                "attribute definitions with unknown values are ignored"
            );
        }
        Ok(Some(schema))
    }
}

fn read_attribute(row: &PgRow, type_id: i32, id: i32) -> Result<AttributeDefinition, RowError> {
    const TABLE: &str = "ConnectedSystemAttributes";
    let db = |column: &'static str, e: sqlx::Error| RowError {
        table: TABLE,
        row_id: id.to_string(),
        column,
        problem: e.to_string(),
    };
    let data_type: i32 = row.try_get(6).map_err(|e| db("Type", e))?;
    let plurality: i32 = row.try_get(7).map_err(|e| db("AttributePlurality", e))?;
    let writability: i32 = row.try_get(10).map_err(|e| db("Writability", e))?;
    Ok(AttributeDefinition {
        id,
        name: row.try_get(5).map_err(|e| db("Name", e))?,
        data_type: AttributeDataType::from_i32(data_type)
            .map_err(|e| RowError::unknown_enum(TABLE, id, "Type", e))?,
        plurality: AttributePlurality::from_i32(plurality)
            .map_err(|e| RowError::unknown_enum(TABLE, id, "AttributePlurality", e))?,
        object_type_id: type_id,
        is_external_id: row.try_get(8).map_err(|e| db("IsExternalId", e))?,
        is_secondary_external_id: row.try_get(9).map_err(|e| db("IsSecondaryExternalId", e))?,
        writability: AttributeWritability::from_i32(writability)
            .map_err(|e| RowError::unknown_enum(TABLE, id, "Writability", e))?,
    })
}
