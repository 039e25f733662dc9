//! The identity assertion: a Modify, ModifyDN or Delete of an object whose anchor JIM holds carries
//! the RFC 4528 assertion control with a filter on that anchor, so the directory applies it only to
//! the entry that is the object. An entry found at the object's DN that is not it (the object
//! deleted or moved outside JIM, another entry created there since) then refuses the write with
//! `assertionFailed` (122) in the same round trip, instead of taking the object's changes, its
//! group memberships, or its deletion. JIM writes by DN alone.
//!
//! Only `entryUUID` anchors holding a UUID are asserted: its equality rule is known on every server
//! that has it (OpenLDAP, 389), and a filter on an anchor attribute without one would make every
//! write fail. Active Directory does not offer the control.

use ldap3::controls::{Assertion, MakeCritical, RawControl};
use uuid::Uuid;

use crate::plan::{AnchorEncoding, KnownAnchor};

/// The anchor attribute asserted.
const ASSERTED_ATTRIBUTE: &str = "entryUUID";

/// The controls asserting that the entry written is the object anchored by `known`; none when the
/// directory does not offer the control or the anchor is not one this asserts.
pub(super) fn controls(supported: bool, known: Option<&KnownAnchor>) -> Vec<RawControl> {
    // Critical: a server that cannot apply it must refuse the write rather than ignore it.
    filter(supported, known)
        .map(|filter| vec![Assertion { filter }.critical().into()])
        .unwrap_or_default()
}

/// The assertion filter for `known`, checked to parse (the control's encoder would panic on one
/// that does not).
fn filter(supported: bool, known: Option<&KnownAnchor>) -> Option<String> {
    let known = known.filter(|_| supported)?;
    if known.read.encoding != AnchorEncoding::Text
        || !known
            .read
            .attribute
            .eq_ignore_ascii_case(ASSERTED_ATTRIBUTE)
    {
        return None;
    }
    let uuid = Uuid::parse_str(known.value.trim()).ok()?;
    let filter = format!("({ASSERTED_ATTRIBUTE}={})", uuid.hyphenated());
    ldap3::parse_filter(&filter).is_ok().then_some(filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::AnchorRead;

    fn anchor(attribute: &str, encoding: AnchorEncoding, value: &str) -> KnownAnchor {
        KnownAnchor {
            read: AnchorRead {
                attribute: attribute.into(),
                encoding,
            },
            value: value.into(),
        }
    }

    #[test]
    fn asserts_an_entry_uuid_anchor_where_the_control_is_offered() {
        let known = anchor(
            "entryUUID",
            AnchorEncoding::Text,
            " 6F1C2B0A-8F6E-4D63-9A3B-2F3C1D0E9A11 ",
        );
        assert_eq!(
            filter(true, Some(&known)).as_deref(),
            Some("(entryUUID=6f1c2b0a-8f6e-4d63-9a3b-2f3c1d0e9a11)")
        );
        let c = controls(true, Some(&known));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].ctype, crate::directory::dialect::ASSERTION_CONTROL);
        assert!(c[0].crit, "critical: never silently ignored");
        assert!(controls(false, Some(&known)).is_empty(), "not offered");
        assert!(controls(true, None).is_empty(), "no anchor known");
    }

    #[test]
    fn asserts_nothing_it_cannot_express_safely() {
        for known in [
            anchor(
                "objectGUID",
                AnchorEncoding::MicrosoftGuid,
                "6f1c2b0a-8f6e-4d63-9a3b-2f3c1d0e9a11",
            ),
            anchor("uid", AnchorEncoding::Text, "jdoe"),
            anchor(
                "entryUUID",
                AnchorEncoding::Text,
                "not a uuid)(objectClass=*",
            ),
            anchor(
                "distinguishedName",
                AnchorEncoding::Dn,
                "uid=jdoe,dc=example,dc=org",
            ),
        ] {
            assert_eq!(filter(true, Some(&known)), None, "{known:?}");
        }
    }
}
