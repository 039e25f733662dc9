//! How values go on the wire (`ldap-export.md` §7), as JIM's LDAP connector encodes them: the first
//! populated value slot in JIM's carrier order, whatever the attribute's declared type.

use uuid::Uuid;

use crate::model::{SlotValue, ValueSlots, canonical_decimal};

/// JIM's generalized-time format: UTC, whole seconds, a literal `.0` and `Z`.
const GENERALIZED_TIME: &str = "%Y%m%d%H%M%S.0Z";

/// The bytes JIM would send for a value, or `None` when no slot holds one (a Create skips such a
/// value; an Update clears the attribute; a Remove is skipped).
///
/// - text (including resolved references, which hold the referenced object's DN) as UTF-8, exactly
///   as staged;
/// - integers and long integers in decimal; decimals canonical (no exponent, no trailing zeros);
/// - date-times as generalized time `yyyyMMddHHmmss.0Z` in UTC, fractions dropped;
/// - binary as is; GUIDs as 16 bytes in Microsoft byte order (first three fields little-endian),
///   for every directory, as JIM does; booleans as `TRUE`/`FALSE`.
pub fn encode_value(value: &ValueSlots) -> Option<Vec<u8>> {
    Some(match value.first_populated()? {
        SlotValue::Text(s) => s.as_bytes().to_vec(),
        SlotValue::Number(v) => v.to_string().into_bytes(),
        SlotValue::LongNumber(v) => v.to_string().into_bytes(),
        SlotValue::Decimal(d) => canonical_decimal(&d).into_bytes(),
        SlotValue::DateTime(t) => t.format(GENERALIZED_TIME).to_string().into_bytes(),
        SlotValue::Binary(b) => b.to_vec(),
        SlotValue::Guid(g) => guid_to_microsoft_bytes(&g).to_vec(),
        SlotValue::Boolean(b) => (if b { "TRUE" } else { "FALSE" }).as_bytes().to_vec(),
    })
}

/// A GUID in Microsoft's byte order (the layout of AD's `objectGUID`).
pub fn guid_to_microsoft_bytes(guid: &Uuid) -> [u8; 16] {
    guid.to_bytes_le()
}

/// Reads 16 bytes in Microsoft's byte order (AD's `objectGUID`) as a GUID; `None` for any other
/// length.
pub fn guid_from_microsoft_bytes(bytes: &[u8]) -> Option<Uuid> {
    let array: [u8; 16] = bytes.try_into().ok()?;
    Some(Uuid::from_bytes_le(array))
}

/// JIM's protected attribute defaults: clearing one of these writes the default instead
/// (`accountExpires` = never expires). JIM applies it on every directory type; so do we
/// (`ldap-export.md` §11.17).
const PROTECTED_DEFAULTS: &[(&str, &str)] = &[("accountExpires", "9223372036854775807")];

/// The value written instead of clearing `attribute`, if it is protected (case-insensitive).
pub fn protected_default(attribute: &str) -> Option<&'static str> {
    PROTECTED_DEFAULTS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn enc(v: ValueSlots) -> Option<String> {
        encode_value(&v).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn every_slot_encodes_like_jim() {
        assert_eq!(
            enc(ValueSlots::text("cn=a,dc=x")).as_deref(),
            Some("cn=a,dc=x")
        );
        assert_eq!(
            enc(ValueSlots {
                int: Some(512),
                ..Default::default()
            })
            .as_deref(),
            Some("512")
        );
        assert_eq!(
            enc(ValueSlots {
                long: Some(-132_000_000_000),
                ..Default::default()
            })
            .as_deref(),
            Some("-132000000000")
        );
        assert_eq!(
            enc(ValueSlots {
                boolean: Some(true),
                ..Default::default()
            })
            .as_deref(),
            Some("TRUE")
        );
        assert_eq!(
            enc(ValueSlots {
                boolean: Some(false),
                ..Default::default()
            })
            .as_deref(),
            Some("FALSE")
        );
        let t = Utc.with_ymd_and_hms(2024, 3, 9, 7, 5, 1).unwrap()
            + chrono::Duration::milliseconds(987);
        assert_eq!(
            enc(ValueSlots {
                date_time: Some(t),
                ..Default::default()
            })
            .as_deref(),
            Some("20240309070501.0Z")
        );
        assert_eq!(enc(ValueSlots::default()), None);
        assert_eq!(
            enc(ValueSlots::text("")),
            None,
            "an empty string is no value"
        );
    }

    /// `ExecuteAsync_UpdateWithDecimalValue_WritesValueInsteadOfClearingAttributeAsync`.
    #[test]
    fn decimals_are_written_canonically() {
        let v = ValueSlots {
            decimal: Some(Decimal::from_str("12345.678").unwrap()),
            ..Default::default()
        };
        assert_eq!(enc(v).as_deref(), Some("12345.678"));
        let v = ValueSlots {
            decimal: Some(Decimal::from_str("2.500").unwrap()),
            ..Default::default()
        };
        assert_eq!(enc(v).as_deref(), Some("2.5"));
    }

    #[test]
    fn binary_and_guids() {
        let raw = vec![0u8, 159, 255, 1];
        assert_eq!(
            encode_value(&ValueSlots {
                bytes: Some(raw.clone()),
                ..Default::default()
            }),
            Some(raw)
        );
        let g = Uuid::from_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let bytes = encode_value(&ValueSlots {
            guid: Some(g),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            bytes,
            vec![
                0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        assert_eq!(guid_from_microsoft_bytes(&bytes), Some(g));
        assert_eq!(guid_from_microsoft_bytes(&bytes[..15]), None);
    }

    /// `GetProtectedAttributeDefault_*` and `ProtectedAttributeDefaults_*`.
    #[test]
    fn protected_defaults() {
        assert_eq!(
            protected_default("accountExpires"),
            Some("9223372036854775807")
        );
        assert_eq!(
            protected_default("ACCOUNTEXPIRES"),
            Some("9223372036854775807")
        );
        assert_eq!(
            protected_default("accountExpires")
                .unwrap()
                .parse::<i64>()
                .unwrap(),
            i64::MAX
        );
        for other in ["givenName", "displayName", "userAccountControl"] {
            assert_eq!(protected_default(other), None, "{other}");
        }
        assert_eq!(PROTECTED_DEFAULTS.len(), 1);
    }
}
