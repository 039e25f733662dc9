//! Entries as raw bytes. ldap3's `SearchEntry::construct` panics on malformed BER and sorts values
//! into text and binary by whether they happen to be UTF-8, which is how JIM loses one `objectGUID`
//! in many thousands (`ldap-export.md` §11.9). Here every value stays bytes and bad input is `None`.

use ldap3::asn1::{PL, StructureTag, parse_tag};

use crate::plan::{AnchorEncoding, guid_from_microsoft_bytes};

/// An entry: its DN and its attributes with raw values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawEntry {
    /// The entry's DN as the server sent it.
    pub dn: String,
    /// (attribute name, values) in the server's order.
    pub attributes: Vec<(String, Vec<Vec<u8>>)>,
}

impl RawEntry {
    /// The values of an attribute (case-insensitive), empty when absent.
    pub fn values(&self, name: &str) -> &[Vec<u8>] {
        self.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// The first value of an attribute as text, if it is UTF-8.
    pub fn first_text(&self, name: &str) -> Option<&str> {
        self.values(name)
            .first()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The anchor in JIM's external-id form, or `None` when it is missing or malformed.
    pub fn anchor(&self, attribute: &str, encoding: AnchorEncoding) -> Option<String> {
        decode_anchor(self.values(attribute).first()?, encoding)
    }
}

/// One anchor value in JIM's external-id form: a Microsoft-order GUID from exactly 16 bytes, or
/// trimmed text.
pub fn decode_anchor(value: &[u8], encoding: AnchorEncoding) -> Option<String> {
    match encoding {
        AnchorEncoding::MicrosoftGuid => {
            guid_from_microsoft_bytes(value).map(|g| g.hyphenated().to_string())
        }
        AnchorEncoding::Text | AnchorEncoding::Dn => std::str::from_utf8(value)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    }
}

/// Parses a SearchResultEntry (`[APPLICATION 4] SEQUENCE { objectName, attributes }`).
pub fn parse_entry(tag: StructureTag) -> Option<RawEntry> {
    if tag.id != 4 {
        return None;
    }
    let mut parts = constructed(tag)?.into_iter();
    let dn = String::from_utf8(primitive(parts.next()?)?).ok()?;
    let mut attributes = Vec::new();
    for partial in constructed(parts.next()?)? {
        let mut pa = constructed(partial)?.into_iter();
        let name = String::from_utf8(primitive(pa.next()?)?).ok()?;
        let values = constructed(pa.next()?)?
            .into_iter()
            .map(primitive)
            .collect::<Option<Vec<_>>>()?;
        attributes.push((name, values));
    }
    Some(RawEntry { dn, attributes })
}

/// Parses the value of an RFC 4527 pre/post-read response control (a BER SearchResultEntry).
pub fn parse_read_entry_control(value: &[u8]) -> Option<RawEntry> {
    match parse_tag(value) {
        Ok((_, tag)) => parse_entry(tag),
        Err(_) => None,
    }
}

fn constructed(tag: StructureTag) -> Option<Vec<StructureTag>> {
    match tag.payload {
        PL::C(inner) => Some(inner),
        PL::P(_) => None,
    }
}

fn primitive(tag: StructureTag) -> Option<Vec<u8>> {
    match tag.payload {
        PL::P(bytes) => Some(bytes),
        PL::C(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal BER writer for test input: one tag byte, a definite length, the content.
    fn ber(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }

    fn octets(v: &[u8]) -> Vec<u8> {
        ber(0x04, v)
    }

    fn entry(dn: &str, attrs: &[(&str, Vec<Vec<u8>>)]) -> Vec<u8> {
        let mut list = Vec::new();
        for (name, values) in attrs {
            let set: Vec<u8> = values.iter().flat_map(|v| octets(v)).collect();
            let mut pa = octets(name.as_bytes());
            pa.extend(ber(0x31, &set));
            list.extend(ber(0x30, &pa));
        }
        let mut body = octets(dn.as_bytes());
        body.extend(ber(0x30, &list));
        ber(0x64, &body)
    }

    /// §11.9: a GUID whose 16 bytes happen to be valid UTF-8 is still read as bytes.
    #[test]
    fn guid_bytes_that_are_valid_utf8_still_decode() {
        let utf8_guid = b"ABCDEFGHIJKLMNOP".to_vec();
        let binary_guid = vec![
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        for (bytes, expected) in [
            (utf8_guid, "44434241-4645-4847-494a-4b4c4d4e4f50"),
            (binary_guid, "00112233-4455-6677-8899-aabbccddeeff"),
        ] {
            let raw = entry("CN=x,DC=y", &[("objectGUID", vec![bytes])]);
            let e = parse_read_entry_control(&raw).unwrap();
            assert_eq!(e.dn, "CN=x,DC=y");
            assert_eq!(
                e.anchor("objectguid", AnchorEncoding::MicrosoftGuid)
                    .as_deref(),
                Some(expected)
            );
        }
    }

    #[test]
    fn text_anchor_and_missing_values() {
        let long_value = vec![b'x'; 300];
        let raw = entry(
            "uid=a,dc=x",
            &[
                (
                    "entryUUID",
                    vec![b" 5b1c6a8e-0d2a-103f-9c55-4f0b0c3d9b1a ".to_vec()],
                ),
                ("userAccountControl", vec![b"512".to_vec()]),
                ("description", vec![long_value.clone()]),
            ],
        );
        let e = parse_read_entry_control(&raw).unwrap();
        assert_eq!(
            e.anchor("entryUUID", AnchorEncoding::Text).as_deref(),
            Some("5b1c6a8e-0d2a-103f-9c55-4f0b0c3d9b1a")
        );
        assert_eq!(e.first_text("USERACCOUNTCONTROL"), Some("512"));
        assert_eq!(e.values("description"), &[long_value]);
        assert_eq!(e.anchor("objectGUID", AnchorEncoding::MicrosoftGuid), None);
        assert_eq!(
            decode_anchor(&[1, 2, 3], AnchorEncoding::MicrosoftGuid),
            None
        );
    }

    #[test]
    fn malformed_input_is_none_not_a_panic() {
        assert!(parse_read_entry_control(&[]).is_none());
        assert!(parse_read_entry_control(&[0x64, 0x05, 0x04]).is_none());
        assert!(parse_read_entry_control(&octets(b"not an entry")).is_none());
        assert!(parse_read_entry_control(&ber(0x64, &octets(b"dn only"))).is_none());
    }
}
