//! Whether an entry found where a re-attempted Create goes is this export's own earlier write.
//!
//! A re-attempt (an earlier attempt of the export may have reached the directory, see
//! `store::marker`) whose Add meets "already exists" must not take over an entry it did not write:
//! adopting a stranger would join JIM to someone else's account, and a later Delete or disable would
//! act on it. The entry is judged on the evidence the directory keeps, all of which must hold:
//!
//! 1. **Created after the first attempt.** Its creation time (`createTimestamp`; `whenCreated` on AD)
//!    is not earlier than the first attempt's claim, allowing for the clocks of the database and the
//!    directory to differ by up to the run's `clock_skew_seconds` (default 300, Kerberos's limit on
//!    an AD domain). An entry that was there before the export was ever tried is not its write.
//! 2. **Written by this identity.** Where the directory records the creator (`creatorsName`:
//!    OpenLDAP, 389) and answers "Who am I?", the creator is the identity the engine binds as.
//! 3. **Holding what the export sends.** Every attribute of the Add is there: a single value exactly
//!    the export's (byte for byte, or as the same DN); of several values (members, say) at least one
//!    of the export's. Several values are not compared one by one: which of them an earlier attempt's
//!    Add carried (and which went in later chunks) depends on the order of the change rows, and JIM
//!    may stage more of them between the attempts. `objectClass` may hold the superclasses too;
//!    values the directory never returns (`unicodePwd`, `userPassword`) or rewrites (AD's
//!    `pwdLastSet`, and `userAccountControl`, whose staged bits must all be set) are not compared.
//! 4. **Not someone else's anchor.** Its anchor is held by no other CSO of the connected system
//!    (checked against JIM's database by the caller, after this module's verdict).
//!
//! An adopted entry is not overwritten, but the values of several that this attempt's Add carries and
//! the entry lacks are added afterwards ([`missing_values`]): the entry is the export's own, and its
//! earlier Add may have carried other values than this one.
//!
//! An Add is atomic, so an entry the export created holds the Add's values; the checks refuse the
//! export's own entry only when somebody changed it in between, or when JIM restaged one of its single
//! values before the re-attempt (the error then names the attribute). When they refuse, the export
//! fails as a first attempt does, with the reason, and the entry is left untouched.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use crate::config::Dialect;
use crate::plan::{Attribute, Dn, ModKind, Modification, dn_key};

use super::entry::RawEntry;

/// The operational attribute holding an entry's creation time on `dialect`.
pub fn creation_attribute(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::ActiveDirectory | Dialect::SambaAd => "whenCreated",
        _ => "createTimestamp",
    }
}

/// The operational attribute naming an entry's creator, where the directory keeps one.
pub fn creator_attribute(dialect: Dialect) -> Option<&'static str> {
    match dialect {
        Dialect::ActiveDirectory | Dialect::SambaAd => None,
        _ => Some("creatorsName"),
    }
}

/// What the judgement needs beside the entry.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The directory's dialect.
    pub dialect: Dialect,
    /// The Add's attributes.
    pub add: &'a [Attribute],
    /// The later steps' modifications of the same entry (values chunked after the Add).
    pub more: Vec<&'a Modification>,
    /// The claim time of the first attempt that may have reached the directory.
    pub since: Option<DateTime<Utc>>,
    /// How far the directory's clock may be behind the database's.
    pub clock_skew: chrono::Duration,
    /// The DN the engine is bound as (from "Who am I?"), when known.
    pub identity: Option<&'a str>,
}

/// Attributes whose values the directory hides or rewrites, by dialect.
fn not_compared(dialect: Dialect, name: &str) -> bool {
    let always = ["userPassword", "unicodePwd"];
    let ad = ["pwdLastSet", "accountExpires", "lockoutTime"];
    always.iter().any(|a| a.eq_ignore_ascii_case(name))
        || (matches!(dialect, Dialect::ActiveDirectory | Dialect::SambaAd)
            && ad.iter().any(|a| a.eq_ignore_ascii_case(name)))
}

/// Parses an LDAP GeneralizedTime (`20261206051920Z`, `20261206051920.0Z`, or with a `+hhmm` offset).
pub fn parse_generalized_time(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if t.len() < 14 || !t.is_char_boundary(14) {
        return None;
    }
    let (digits, rest) = t.split_at(14);
    let naive = NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S").ok()?;
    // A fraction of the second, then the zone.
    let rest = match rest.strip_prefix(['.', ',']) {
        Some(r) => r.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    let offset_minutes = match rest {
        "Z" | "" => 0i64,
        zone if zone.len() == 5 && (zone.starts_with('+') || zone.starts_with('-')) => {
            let h: i64 = zone[1..3].parse().ok()?;
            let m: i64 = zone[3..5].parse().ok()?;
            let v = h * 60 + m;
            if zone.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    Some(Utc.from_utc_datetime(&naive) - chrono::Duration::minutes(offset_minutes))
}

/// Two values the same: byte for byte, or both DNs naming the same entry (AD rewrites the case of a
/// DN value to the named entry's own).
fn same_value(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        (Ok(x), Ok(y)) if x.contains('=') && y.contains('=') => {
            Dn::parse(x).is_ok() && Dn::parse(y).is_ok() && dn_key(x) == dn_key(y)
        }
        _ => false,
    }
}

fn text(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) if s.len() <= 80 => format!("'{s}'"),
        Ok(s) => format!("'{}…'", s.chars().take(80).collect::<String>()),
        Err(_) => format!("{} bytes", v.len()),
    }
}

/// Judges an entry: `Ok(())` when every check this module makes holds, else why not.
pub fn judge(entry: &RawEntry, expected: &Expectations<'_>) -> Result<(), String> {
    // 1. Created after the first attempt.
    let created_name = creation_attribute(expected.dialect);
    if let (Some(since), Some(created)) = (
        expected.since,
        entry
            .first_text(created_name)
            .and_then(parse_generalized_time),
    ) {
        // The directory's times have whole seconds.
        let earliest = since - expected.clock_skew - chrono::Duration::seconds(1);
        if created < earliest {
            return Err(format!(
                "it was created at {} ({created_name}), before this export was first tried at {} \
                 (allowing {} s of clock difference)",
                created.to_rfc3339(),
                since.to_rfc3339(),
                expected.clock_skew.num_seconds()
            ));
        }
    }
    // 2. Written by this identity.
    if let (Some(attribute), Some(me)) = (creator_attribute(expected.dialect), expected.identity)
        && let Some(creator) = entry.first_text(attribute)
        && dn_key(creator) != dn_key(me)
    {
        return Err(format!(
            "it was created by '{creator}' ({attribute}), not by '{me}', the identity this engine binds as"
        ));
    }
    // 3. Holding what the Add carried.
    for attribute in expected.add {
        let name = attribute.name.as_str();
        if not_compared(expected.dialect, name) {
            continue;
        }
        let present = entry.values(name);
        if name.eq_ignore_ascii_case("objectClass") {
            if let Some(missing) = attribute
                .values
                .iter()
                .find(|v| !present.iter().any(|p| p.eq_ignore_ascii_case(v)))
            {
                return Err(format!("its objectClass lacks {}", text(missing)));
            }
            continue;
        }
        if name.eq_ignore_ascii_case("userAccountControl") {
            let bits = |v: &[u8]| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
            };
            let wanted = attribute.values.first().and_then(|v| bits(v));
            let have = present.first().and_then(|v| bits(v));
            match (wanted, have) {
                (Some(w), Some(h)) if h & w == w => continue,
                (Some(w), h) => {
                    return Err(format!(
                        "its userAccountControl is {} where this export sets the bits of {w}",
                        h.map_or("absent".to_string(), |h| h.to_string())
                    ));
                }
                (None, _) => continue,
            }
        }
        if present.is_empty() {
            return Err(format!("it has no {name}, which this export's Add sets"));
        }
        let later = expected
            .more
            .iter()
            .filter(|m| m.kind == ModKind::Add && m.attribute.eq_ignore_ascii_case(name))
            .flat_map(|m| m.values.iter());
        let sent: Vec<&Vec<u8>> = attribute.values.iter().chain(later).collect();
        let shown = || {
            present
                .iter()
                .take(3)
                .map(|p| text(p))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if sent.len() == 1 {
            if present.len() != 1 || !same_value(&present[0], sent[0]) {
                return Err(format!(
                    "its {name} holds {} where this export sets {}",
                    shown(),
                    text(sent[0])
                ));
            }
        } else if !present
            .iter()
            .any(|p| sent.iter().any(|v| same_value(p, v)))
        {
            return Err(format!(
                "its {name} holds {}, none of the values this export sets",
                shown()
            ));
        }
    }
    Ok(())
}

/// The values of the Add that an adopted entry lacks, as Modify adds. An earlier attempt's Add may
/// have carried other values of a multi-valued attribute than this attempt's (see check 3), so
/// adopting the entry does not make this Add's values present: the caller sends these. Attributes
/// the directory hides or rewrites, `objectClass` and `userAccountControl` are left alone (the
/// judgement checked them); a single value the judgement required equal is never missing.
pub fn missing_values(entry: &RawEntry, add: &[Attribute], dialect: Dialect) -> Vec<Modification> {
    let mut missing = Vec::new();
    for attribute in add {
        let name = attribute.name.as_str();
        if not_compared(dialect, name)
            || name.eq_ignore_ascii_case("objectClass")
            || name.eq_ignore_ascii_case("userAccountControl")
        {
            continue;
        }
        let present = entry.values(name);
        let values: Vec<Vec<u8>> = attribute
            .values
            .iter()
            .filter(|v| !present.iter().any(|p| same_value(p, v)))
            .cloned()
            .collect();
        if !values.is_empty() {
            missing.push(Modification {
                kind: ModKind::Add,
                attribute: attribute.name.clone(),
                values,
                placeholder: false,
            });
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &[&str])]) -> RawEntry {
        RawEntry {
            dn: "uid=ann,ou=People,dc=example,dc=org".into(),
            attributes: pairs
                .iter()
                .map(|(n, vs)| {
                    (
                        n.to_string(),
                        vs.iter().map(|v| v.as_bytes().to_vec()).collect(),
                    )
                })
                .collect(),
        }
    }

    fn since() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap()
    }

    fn add() -> Vec<Attribute> {
        vec![
            Attribute::text("objectClass", &["inetOrgPerson"]),
            Attribute::text("uid", &["ann"]),
            Attribute::text("sn", &["Lee"]),
            Attribute::text("mail", &["ann@example.org"]),
            Attribute::text("userPassword", &["s3cret"]),
        ]
    }

    fn expect<'a>(add: &'a [Attribute], identity: Option<&'a str>) -> Expectations<'a> {
        Expectations {
            dialect: Dialect::OpenLdap,
            add,
            more: Vec::new(),
            since: Some(since()),
            clock_skew: chrono::Duration::seconds(300),
            identity,
        }
    }

    fn ours() -> RawEntry {
        entry(&[
            ("objectClass", &["top", "person", "inetOrgPerson"]),
            ("uid", &["ann"]),
            ("sn", &["Lee"]),
            ("mail", &["ann@example.org"]),
            ("createTimestamp", &["20261206100003Z"]),
            ("creatorsName", &["cn=admin,dc=example,dc=org"]),
        ])
    }

    #[test]
    fn the_exports_own_entry_is_recognised() {
        let add = add();
        assert_eq!(
            judge(&ours(), &expect(&add, Some("CN=admin, DC=example,DC=org"))),
            Ok(())
        );
    }

    #[test]
    fn an_entry_created_before_the_first_attempt_is_not_adopted() {
        let add = add();
        let mut e = ours();
        e.attributes[4].1 = vec![b"20261206094000Z".to_vec()];
        let why = judge(&e, &expect(&add, None)).unwrap_err();
        assert!(why.contains("before this export was first tried"), "{why}");
        // Within the clock allowance it is still judged on the rest.
        e.attributes[4].1 = vec![b"20261206095900Z".to_vec()];
        assert_eq!(judge(&e, &expect(&add, None)), Ok(()));
    }

    #[test]
    fn an_entry_with_other_values_or_another_creator_is_not_adopted() {
        let add = add();
        let mut e = ours();
        e.attributes[3].1 = vec![b"someone@else.org".to_vec()];
        let why = judge(&e, &expect(&add, None)).unwrap_err();
        assert!(
            why.contains("mail")
                && why.contains("someone@else.org")
                && why.contains("ann@example.org"),
            "{why}"
        );

        let mut e = ours();
        e.attributes.retain(|(n, _)| n != "mail");
        assert!(
            judge(&e, &expect(&add, None))
                .unwrap_err()
                .contains("no mail")
        );

        let mut e = ours();
        e.attributes[3].1.push(b"second@example.org".to_vec());
        let why = judge(&e, &expect(&add, None)).unwrap_err();
        assert!(why.contains("where this export sets"), "{why}");

        let why = judge(&ours(), &expect(&add, Some("cn=svc,dc=example,dc=org"))).unwrap_err();
        assert!(why.contains("created by"), "{why}");
    }

    #[test]
    fn several_values_need_one_in_common() {
        let add = vec![
            Attribute::text("objectClass", &["groupOfNames"]),
            Attribute::text("member", &["uid=a,dc=x", "uid=b,dc=x"]),
        ];
        // An earlier attempt chunked the members in another order, or JIM staged one more since.
        let e = entry(&[
            ("objectClass", &["groupOfNames"]),
            ("member", &["uid=b,dc=x", "uid=z,dc=x"]),
        ]);
        assert_eq!(judge(&e, &expect(&add, None)), Ok(()));
        let e = entry(&[
            ("objectClass", &["groupOfNames"]),
            ("member", &["uid=y,dc=x", "uid=z,dc=x"]),
        ]);
        assert!(
            judge(&e, &expect(&add, None))
                .unwrap_err()
                .contains("none of the values")
        );
    }

    #[test]
    fn chunked_values_and_dn_case_are_allowed() {
        let add = vec![
            Attribute::text("objectClass", &["groupOfNames"]),
            Attribute::text("member", &["uid=a,ou=People,dc=x", "uid=b,ou=People,dc=x"]),
        ];
        let later = Modification {
            kind: ModKind::Add,
            attribute: "member".into(),
            values: vec![b"uid=c,ou=People,dc=x".to_vec()],
            placeholder: false,
        };
        let mut x = expect(&add, None);
        x.more = vec![&later];
        let e = entry(&[
            ("objectClass", &["groupOfNames", "top"]),
            (
                "member",
                &[
                    "UID=A,OU=People,DC=x",
                    "uid=b,ou=People,dc=x",
                    "uid=c, ou=People, dc=x",
                ],
            ),
        ]);
        assert_eq!(judge(&e, &x), Ok(()));
    }

    #[test]
    fn an_adopted_entry_lacks_the_values_its_earlier_add_did_not_carry() {
        let add = vec![
            Attribute::text("objectClass", &["groupOfNames"]),
            Attribute::text("cn", &["g"]),
            Attribute::text(
                "member",
                &[
                    "uid=a,ou=People,dc=x",
                    "uid=b,ou=People,dc=x",
                    "uid=c,ou=People,dc=x",
                ],
            ),
            Attribute::text("userPassword", &["secret"]),
        ];
        let e = entry(&[
            ("objectClass", &["groupOfNames", "top"]),
            ("cn", &["g"]),
            ("member", &["UID=A,OU=People,DC=x", "uid=z,ou=People,dc=x"]),
        ]);
        let missing = missing_values(&e, &add, Dialect::OpenLdap);
        assert_eq!(
            missing,
            vec![Modification {
                kind: ModKind::Add,
                attribute: "member".into(),
                values: vec![
                    b"uid=b,ou=People,dc=x".to_vec(),
                    b"uid=c,ou=People,dc=x".to_vec()
                ],
                placeholder: false,
            }],
            "the members not there (DN case aside); objectClass, single values and passwords alone"
        );
        assert!(missing_values(&e, &add[..2], Dialect::OpenLdap).is_empty());
    }

    #[test]
    fn ad_rewrites_are_tolerated() {
        let add = vec![
            Attribute::text("objectClass", &["user"]),
            Attribute::text("userAccountControl", &["514"]),
            Attribute::text("pwdLastSet", &["-1"]),
        ];
        let mut x = expect(&add, None);
        x.dialect = Dialect::SambaAd;
        let e = entry(&[
            (
                "objectClass",
                &["top", "person", "organizationalPerson", "user"],
            ),
            ("userAccountControl", &["546"]),
            ("pwdLastSet", &["134093000000000000"]),
            ("whenCreated", &["20261206100003.0Z"]),
        ]);
        assert_eq!(judge(&e, &x), Ok(()));
        let e = entry(&[("objectClass", &["user"]), ("userAccountControl", &["512"])]);
        assert!(judge(&e, &x).unwrap_err().contains("userAccountControl"));
    }

    #[test]
    fn generalized_times() {
        let t = |s: &str| parse_generalized_time(s);
        assert_eq!(
            t("20261206100003Z"),
            Some(Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 3).unwrap())
        );
        assert_eq!(t("20261206100003.0Z"), t("20261206100003Z"));
        assert_eq!(
            t("20261206120003+0200"),
            Some(Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 3).unwrap())
        );
        assert_eq!(t("yesterday"), None);
        assert_eq!(t("2026120610000"), None);
    }
}
