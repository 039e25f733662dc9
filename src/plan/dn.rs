//! Distinguished names (RFC 4514): parsing for validation, scope checks and container chains, a
//! case-insensitive comparison key, and escaping for the DNs the engine builds itself.
//!
//! Staged DNs are never rewritten: JIM's attribute flows have already escaped them, so the engine
//! sends them (and the parts of them it sends, such as the leaf RDN of a rename or a parent container)
//! as the exact text it was given. Parsing only tells the planner where the RDNs are and what they
//! mean.

use std::fmt::Write as _;
use std::ops::Range;

/// A DN that could not be parsed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{dn}' is not a valid distinguished name: {reason}")]
pub struct DnError {
    /// The text that was parsed.
    pub dn: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One `type=value` pair of an RDN, with the value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ava {
    /// The attribute type as written (e.g. `CN`, `ou`, `2.5.4.3`).
    pub attr_type: String,
    /// The value with RFC 4514 escapes and RFC 2253 quotes removed. A BER value written as `#hex`
    /// is kept as that text.
    pub value: String,
}

/// One relative distinguished name: one or more AVAs joined by `+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rdn {
    /// The AVAs in written order.
    pub avas: Vec<Ava>,
    /// Where this RDN's text lies in the parsed string (without surrounding spaces).
    span: Range<usize>,
}

impl Rdn {
    /// The type of the first AVA, which JIM treats as "the" RDN attribute.
    pub fn attr_type(&self) -> &str {
        self.avas.first().map_or("", |a| a.attr_type.as_str())
    }

    /// The value of the first AVA.
    pub fn value(&self) -> &str {
        self.avas.first().map_or("", |a| a.value.as_str())
    }

    /// True when every value holds something other than white space (JIM's `HasValidRdnValues`).
    pub fn has_valid_values(&self) -> bool {
        self.avas.iter().all(|a| !a.value.trim().is_empty())
    }
}

/// A parsed DN that remembers its text, so that suffixes and RDNs can be sent exactly as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn {
    text: String,
    rdns: Vec<Rdn>,
}

impl Dn {
    /// Parses an RFC 4514 DN, tolerating spaces around `,`, `+` and `=`, RFC 2253 quoted values and
    /// `\XX` hex escapes. An empty string is the empty (root) DN. Empty values parse (see
    /// [`Dn::has_valid_values`]).
    pub fn parse(text: &str) -> Result<Dn, DnError> {
        Parser::new(text).parse()
    }

    /// The text as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The RDNs, leaf first.
    pub fn rdns(&self) -> &[Rdn] {
        &self.rdns
    }

    /// True for the empty DN.
    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }

    /// The number of RDNs.
    pub fn len(&self) -> usize {
        self.rdns.len()
    }

    /// The leaf RDN.
    pub fn leaf(&self) -> Option<&Rdn> {
        self.rdns.first()
    }

    /// The leaf RDN's text exactly as written (what a ModifyDN sends as the new RDN).
    pub fn leaf_text(&self) -> &str {
        self.rdns.first().map_or("", |r| &self.text[r.span.clone()])
    }

    /// The text of the DN starting at RDN `index` (0 = the whole DN), exactly as written.
    pub fn suffix_text(&self, index: usize) -> &str {
        match self.rdns.get(index) {
            Some(r) => &self.text[r.span.start..],
            None => "",
        }
    }

    /// The parent DN's text exactly as written ("" for a single-RDN DN).
    pub fn parent_text(&self) -> &str {
        self.suffix_text(1)
    }

    /// The parent DN, parsed.
    pub fn parent(&self) -> Dn {
        self.suffix(1)
    }

    /// The DN from RDN `index` upwards.
    pub fn suffix(&self, index: usize) -> Dn {
        let Some(first) = self.rdns.get(index) else {
            return Dn {
                text: String::new(),
                rdns: Vec::new(),
            };
        };
        let offset = first.span.start;
        Dn {
            text: self.text[offset..].to_string(),
            rdns: self.rdns[index..]
                .iter()
                .map(|r| Rdn {
                    avas: r.avas.clone(),
                    span: r.span.start - offset..r.span.end - offset,
                })
                .collect(),
        }
    }

    /// True when no AVA value is empty or white space (JIM's `HasValidRdnValues`).
    pub fn has_valid_values(&self) -> bool {
        !self.rdns.is_empty() && self.rdns.iter().all(Rdn::has_valid_values)
    }

    /// A comparison key: types and values lower-cased, AVAs of a multi-valued RDN sorted, values
    /// re-escaped canonically, no spaces around separators. Two DNs naming the same entry under
    /// case-insensitive matching (the usual rule for names) have the same key.
    pub fn key(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let mut parts: Vec<String> = rdn
                .avas
                .iter()
                .map(|a| {
                    format!(
                        "{}={}",
                        a.attr_type.to_lowercase(),
                        escape_value(&a.value.to_lowercase())
                    )
                })
                .collect();
            parts.sort();
            out.push_str(&parts.join("+"));
        }
        out
    }

    /// True when `self` is `other` or lies beneath it.
    pub fn is_within(&self, other: &Dn) -> bool {
        self.depth_below(other).is_some()
    }

    /// How many RDNs `self` lies beneath `other` (0 when equal), or `None` when it is not within it.
    pub fn depth_below(&self, other: &Dn) -> Option<usize> {
        if other.rdns.len() > self.rdns.len() {
            return None;
        }
        let depth = self.rdns.len() - other.rdns.len();
        let same = self.rdns[depth..]
            .iter()
            .zip(&other.rdns)
            .all(|(a, b)| rdn_key(a) == rdn_key(b));
        same.then_some(depth)
    }
}

fn rdn_key(rdn: &Rdn) -> String {
    let mut parts: Vec<String> = rdn
        .avas
        .iter()
        .map(|a| format!("{}={}", a.attr_type.to_lowercase(), a.value.to_lowercase()))
        .collect();
    parts.sort();
    parts.join("+")
}

/// A comparison key for a DN given as text: [`Dn::key`] when it parses, else the lower-cased text
/// with spaces after commas removed.
pub fn dn_key(text: &str) -> String {
    match Dn::parse(text) {
        Ok(dn) => dn.key(),
        Err(_) => {
            let lower = text.trim().to_lowercase();
            let mut out = String::with_capacity(lower.len());
            let mut after_comma = false;
            for c in lower.chars() {
                if after_comma && c == ' ' {
                    continue;
                }
                after_comma = c == ',';
                out.push(c);
            }
            out
        }
    }
}

/// Case-insensitive comparison of two DNs as text, the way JIM compares a staged DN with the current
/// one (ordinal, ignoring case; no other normalisation).
pub fn same_text_ignoring_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// Escapes an attribute value for use in a DN (RFC 4514 §2.4): `"+,;<>\` and NUL everywhere, `#`
/// and space at the start, space at the end.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Builds one RDN's text from a type and an unescaped value.
pub fn build_rdn(attr_type: &str, value: &str) -> String {
    format!("{attr_type}={}", escape_value(value))
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn err(&self, reason: impl Into<String>) -> DnError {
        DnError {
            dn: self.text.to_string(),
            reason: reason.into(),
        }
    }

    fn skip_spaces(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos] == b' ' {
            self.pos += 1;
        }
    }

    fn parse(mut self) -> Result<Dn, DnError> {
        let mut rdns = Vec::new();
        self.skip_spaces();
        if self.pos == self.bytes.len() {
            return Ok(Dn {
                text: self.text.to_string(),
                rdns,
            });
        }
        loop {
            self.skip_spaces();
            let start = self.pos;
            let mut avas = Vec::new();
            let end;
            loop {
                avas.push(self.parse_ava()?);
                let value_end = self.pos;
                self.skip_spaces();
                match self.bytes.get(self.pos) {
                    Some(b'+') => {
                        self.pos += 1;
                        self.skip_spaces();
                    }
                    _ => {
                        end = value_end;
                        break;
                    }
                }
            }
            rdns.push(Rdn {
                avas,
                span: start..end,
            });
            match self.bytes.get(self.pos) {
                None => break,
                Some(b',') | Some(b';') => {
                    self.pos += 1;
                    self.skip_spaces();
                    if self.pos == self.bytes.len() {
                        return Err(self.err("ends with a separator"));
                    }
                }
                Some(_) => return Err(self.err(format!("unexpected text at offset {}", self.pos))),
            }
        }
        Ok(Dn {
            text: self.text.to_string(),
            rdns,
        })
    }

    fn parse_ava(&mut self) -> Result<Ava, DnError> {
        let type_start = self.pos;
        while self.pos < self.bytes.len() {
            let b = self.bytes[self.pos];
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' {
                self.pos += 1;
            } else {
                break;
            }
        }
        let attr_type = &self.text[type_start..self.pos];
        if attr_type.is_empty() {
            return Err(self.err(format!(
                "an attribute type is missing at offset {type_start}"
            )));
        }
        self.skip_spaces();
        if self.bytes.get(self.pos) != Some(&b'=') {
            return Err(self.err(format!("'=' expected after '{attr_type}'")));
        }
        self.pos += 1;
        self.skip_spaces();
        let value = match self.bytes.get(self.pos) {
            Some(b'"') => self.parse_quoted()?,
            Some(b'#') => self.parse_hex_string(),
            _ => self.parse_string()?,
        };
        Ok(Ava {
            attr_type: attr_type.to_string(),
            value,
        })
    }

    fn parse_quoted(&mut self) -> Result<String, DnError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.bytes.get(self.pos) {
                None => return Err(self.err("unterminated quoted value")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.parse_escape(&mut out)?;
                }
                Some(&b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.err("a value is not valid UTF-8"))
    }

    fn parse_hex_string(&mut self) -> String {
        let start = self.pos;
        self.pos += 1;
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_hexdigit() {
            self.pos += 1;
        }
        self.text[start..self.pos].to_string()
    }

    fn parse_string(&mut self) -> Result<String, DnError> {
        let mut out = Vec::new();
        // Lenient like the servers: only the separators end a value. Trailing unescaped spaces are not
        // part of it (RFC 4514 §3), so remember where the last significant byte ended and rewind to it.
        let mut significant_len = 0;
        let mut significant_pos = self.pos;
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b',' | b'+' | b';' => break,
                b'\\' => {
                    self.pos += 1;
                    self.parse_escape(&mut out)?;
                    significant_len = out.len();
                    significant_pos = self.pos;
                }
                0 => return Err(self.err(format!("a NUL byte at offset {}", self.pos))),
                _ => {
                    out.push(b);
                    self.pos += 1;
                    if b != b' ' {
                        significant_len = out.len();
                        significant_pos = self.pos;
                    }
                }
            }
        }
        out.truncate(significant_len);
        self.pos = significant_pos;
        String::from_utf8(out).map_err(|_| self.err("a value is not valid UTF-8"))
    }

    fn parse_escape(&mut self, out: &mut Vec<u8>) -> Result<(), DnError> {
        let Some(&b) = self.bytes.get(self.pos) else {
            return Err(self.err("ends with a lone backslash"));
        };
        if b.is_ascii_hexdigit() {
            let hi = hex_val(b);
            let lo = self
                .bytes
                .get(self.pos + 1)
                .copied()
                .filter(u8::is_ascii_hexdigit)
                .map(hex_val)
                .ok_or_else(|| self.err("a \\XX escape needs two hex digits"))?;
            out.push(hi << 4 | lo);
            self.pos += 2;
        } else {
            out.push(b);
            self.pos += 1;
        }
        Ok(())
    }
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rdns_with_escapes_quotes_and_spaces() {
        let dn =
            Dn::parse(r"CN=Smith\, John + uid=js, OU=Research\2C Dev ,DC=example,DC=org").unwrap();
        assert_eq!(dn.len(), 4);
        let leaf = dn.leaf().unwrap();
        assert_eq!(leaf.avas.len(), 2);
        assert_eq!(leaf.attr_type(), "CN");
        assert_eq!(leaf.value(), "Smith, John");
        assert_eq!(leaf.avas[1].value, "js");
        assert_eq!(dn.rdns()[1].value(), "Research, Dev");
        assert_eq!(dn.leaf_text(), r"CN=Smith\, John + uid=js");
        assert_eq!(dn.parent_text(), r"OU=Research\2C Dev ,DC=example,DC=org");
        let quoted = Dn::parse(r#"cn="a,b+c",dc=x"#).unwrap();
        assert_eq!(quoted.leaf().unwrap().value(), "a,b+c");
        let escaped_space = Dn::parse(r"cn=trailing\ ,dc=x").unwrap();
        assert_eq!(escaped_space.leaf().unwrap().value(), "trailing ");
    }

    #[test]
    fn empty_values_parse_but_are_invalid() {
        let dn = Dn::parse("CN=,OU=,DC=example,DC=org").unwrap();
        assert!(!dn.has_valid_values());
        assert!(!Dn::parse("CN=  ,DC=x").unwrap().has_valid_values());
        assert!(Dn::parse("CN=a,DC=x").unwrap().has_valid_values());
        assert!(!Dn::parse("").unwrap().has_valid_values());
    }

    #[test]
    fn malformed_dns_are_errors() {
        for bad in [
            "CN=a,",
            "=a,dc=x",
            "cn",
            "cn=a\\",
            "cn=\"open,dc=x",
            "cn=a\\4,dc=x",
            "cn=a,,dc=x",
        ] {
            assert!(Dn::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn keys_ignore_case_and_spaces_after_commas() {
        assert_eq!(
            dn_key("OU=Users, DC=Example,DC=ORG"),
            dn_key("ou=users,dc=example,dc=org")
        );
        assert_eq!(dn_key("cn=a+uid=b,dc=x"), dn_key("UID=b+CN=a, dc=x"));
        assert_ne!(dn_key("cn=a,dc=x"), dn_key("cn=b,dc=x"));
        assert_eq!(dn_key(r"cn=a\2cb,dc=x"), dn_key(r"cn=a\,b,dc=x"));
    }

    #[test]
    fn within_and_depth() {
        let base = Dn::parse("ou=People,dc=example,dc=org").unwrap();
        let child = Dn::parse("uid=a, OU=people,dc=example,dc=org").unwrap();
        let grandchild = Dn::parse("cn=x,ou=sub,ou=people,dc=example,dc=org").unwrap();
        assert_eq!(child.depth_below(&base), Some(1));
        assert_eq!(grandchild.depth_below(&base), Some(2));
        assert_eq!(base.depth_below(&base), Some(0));
        assert_eq!(base.depth_below(&child), None);
        assert!(
            !Dn::parse("uid=a,ou=other,dc=example,dc=org")
                .unwrap()
                .is_within(&base)
        );
    }

    #[test]
    fn escaping_round_trips() {
        for value in [
            "Smith, John",
            " lead",
            "trail ",
            "#hash",
            "a+b=c;d<e>f\"g\\h",
            "plain",
        ] {
            let rdn = build_rdn("cn", value);
            let dn = Dn::parse(&format!("{rdn},dc=x")).unwrap();
            assert_eq!(dn.leaf().unwrap().value(), value, "{rdn}");
        }
        assert_eq!(escape_value("a,b"), r"a\,b");
    }

    #[test]
    fn case_insensitive_text_comparison() {
        assert!(same_text_ignoring_case("CN=A,DC=X", "cn=a,dc=x"));
        assert!(!same_text_ignoring_case("CN=A, DC=X", "cn=a,dc=x"));
    }
}
