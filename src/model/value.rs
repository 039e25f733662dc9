//! JIM's "one row per value, one typed column per data type" value representation (schema.md §4.1).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::enums::AttributeDataType;

/// The typed value columns shared by `PendingExportAttributeValueChanges` and
/// `ConnectedSystemObjectAttributeValues`. There is no discriminator column: the attribute definition's
/// [`AttributeDataType`] says which slot is meant, and at most one slot is normally set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValueSlots {
    /// `StringValue text`: Text values, and resolved references (the referenced object's anchor, e.g. a DN).
    pub string: Option<String>,
    /// `DateTimeValue timestamptz`.
    pub date_time: Option<DateTime<Utc>>,
    /// `IntValue integer`.
    pub int: Option<i32>,
    /// `LongValue bigint`.
    pub long: Option<i64>,
    /// `DecimalValue numeric`.
    pub decimal: Option<Decimal>,
    /// `ByteValue bytea`.
    pub bytes: Option<Vec<u8>>,
    /// `GuidValue uuid`.
    pub guid: Option<Uuid>,
    /// `BoolValue boolean`.
    pub boolean: Option<bool>,
}

impl ValueSlots {
    /// A value with only `StringValue` set.
    pub fn text(value: impl Into<String>) -> Self {
        Self {
            string: Some(value.into()),
            ..Self::default()
        }
    }

    /// True when no typed slot holds a value (an `Update` with every slot NULL means "clear").
    pub fn is_empty(&self) -> bool {
        self.string.is_none()
            && self.date_time.is_none()
            && self.int.is_none()
            && self.long.is_none()
            && self.decimal.is_none()
            && self.bytes.is_none()
            && self.guid.is_none()
            && self.boolean.is_none()
    }

    /// The first populated carrier in JIM's LDAP connector order (`ldap-export.md` §7):
    /// non-empty string, int, long, decimal, date-time, bytes, guid, bool. JIM deliberately ignores the
    /// declared type here, so a row with a stray slot set is encoded the way JIM would encode it.
    pub fn first_populated(&self) -> Option<SlotValue<'_>> {
        if let Some(s) = self.string.as_deref().filter(|s| !s.is_empty()) {
            return Some(SlotValue::Text(s));
        }
        if let Some(v) = self.int {
            return Some(SlotValue::Number(v));
        }
        if let Some(v) = self.long {
            return Some(SlotValue::LongNumber(v));
        }
        if let Some(v) = self.decimal {
            return Some(SlotValue::Decimal(v));
        }
        if let Some(v) = self.date_time {
            return Some(SlotValue::DateTime(v));
        }
        if let Some(v) = self.bytes.as_deref() {
            return Some(SlotValue::Binary(v));
        }
        if let Some(v) = self.guid {
            return Some(SlotValue::Guid(v));
        }
        self.boolean.map(SlotValue::Boolean)
    }

    /// The slot a value of `data_type` belongs in, rendered as JIM's `ToReferenceValueString` does for
    /// anchors: `StringValue ?? GuidValue ?? IntValue ?? LongValue ?? canonical(DecimalValue)`.
    pub fn reference_string(&self) -> Option<String> {
        if let Some(s) = &self.string {
            return Some(s.clone());
        }
        if let Some(g) = self.guid {
            return Some(g.hyphenated().to_string());
        }
        if let Some(i) = self.int {
            return Some(i.to_string());
        }
        if let Some(l) = self.long {
            return Some(l.to_string());
        }
        self.decimal.map(|d| canonical_decimal(&d))
    }

    /// Stores an anchor string in the slot matching the attribute's declared type, clearing the other
    /// slots (JIM's `ApplyExternalIdToAttributeValue`, #1386): Number → int, LongNumber → long,
    /// Guid → guid, anything else (or an unparseable value) → string.
    pub fn from_anchor(data_type: AttributeDataType, anchor: &str) -> Self {
        let parsed = match data_type {
            AttributeDataType::Number => anchor.trim().parse().ok().map(|v| Self {
                int: Some(v),
                ..Self::default()
            }),
            AttributeDataType::LongNumber => anchor.trim().parse().ok().map(|v| Self {
                long: Some(v),
                ..Self::default()
            }),
            AttributeDataType::Guid => Uuid::parse_str(anchor.trim()).ok().map(|v| Self {
                guid: Some(v),
                ..Self::default()
            }),
            _ => None,
        };
        parsed.unwrap_or_else(|| Self::text(anchor))
    }
}

/// A borrowed view of the one slot a value carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SlotValue<'a> {
    /// `StringValue`.
    Text(&'a str),
    /// `IntValue`.
    Number(i32),
    /// `LongValue`.
    LongNumber(i64),
    /// `DecimalValue`.
    Decimal(Decimal),
    /// `DateTimeValue`.
    DateTime(DateTime<Utc>),
    /// `ByteValue`.
    Binary(&'a [u8]),
    /// `GuidValue`.
    Guid(Uuid),
    /// `BoolValue`.
    Boolean(bool),
}

/// .NET's invariant "G29" rendering of a decimal without exponent or trailing zeros, which JIM uses for
/// Decimal values and decimal anchors (`DecimalAttributeValue.ToCanonicalString`).
pub fn canonical_decimal(value: &Decimal) -> String {
    value.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn first_populated_follows_jims_carrier_order() {
        let mut v = ValueSlots {
            string: Some(String::new()),
            int: Some(5),
            boolean: Some(true),
            ..Default::default()
        };
        assert_eq!(
            v.first_populated(),
            Some(SlotValue::Number(5)),
            "empty string counts as no value"
        );
        v.int = None;
        assert_eq!(v.first_populated(), Some(SlotValue::Boolean(true)));
        assert_eq!(ValueSlots::default().first_populated(), None);
        assert!(ValueSlots::default().is_empty());
    }

    #[test]
    fn anchors_go_into_their_typed_slot() {
        let g = Uuid::from_str("6f1c2b0a-8f6e-4d63-9a3b-2f3c1d0e9a11").unwrap();
        assert_eq!(
            ValueSlots::from_anchor(AttributeDataType::Guid, &g.to_string()).guid,
            Some(g)
        );
        assert_eq!(
            ValueSlots::from_anchor(AttributeDataType::Number, "42").int,
            Some(42)
        );
        assert_eq!(
            ValueSlots::from_anchor(AttributeDataType::LongNumber, "42").long,
            Some(42)
        );
        assert_eq!(
            ValueSlots::from_anchor(AttributeDataType::Number, "x")
                .string
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            ValueSlots::from_anchor(AttributeDataType::Text, "abc")
                .string
                .as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn reference_strings() {
        assert_eq!(
            ValueSlots {
                long: Some(7),
                ..Default::default()
            }
            .reference_string()
            .as_deref(),
            Some("7")
        );
        let d = Decimal::from_str("2.500").unwrap();
        assert_eq!(
            ValueSlots {
                decimal: Some(d),
                ..Default::default()
            }
            .reference_string()
            .as_deref(),
            Some("2.5")
        );
        assert_eq!(ValueSlots::default().reference_string(), None);
    }
}
