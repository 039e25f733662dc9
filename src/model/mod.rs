//! The domain model: JIM's pending exports, connected system objects, attribute definitions, typed
//! values and enums, with JIM's exact numeric values.

pub mod enums;
pub mod object;
pub mod pending_export;
pub mod value;

pub use enums::*;
pub use object::{AttributeDefinition, ConnectedSystemObject, CsoAttributeValue, ObjectType};
pub use pending_export::{AttributeValueChange, DEFAULT_MAX_RETRIES, PendingExport};
pub use value::{SlotValue, ValueSlots, canonical_decimal};

/// JIM's enum numbers as one table (`Name: 0 Member, 1 Member, …` a line, `#` comments), the single
/// source the tests check [`enums`] and the C# binding's enums against.
pub const JIM_ENUM_TABLE: &str = include_str!("jim_enums.txt");

#[cfg(feature = "uniffi")]
mod custom_types;
