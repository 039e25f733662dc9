//! Deterministic per-object data: ids drawn from seeded random streams, and the Scenario 8 OpenLDAP
//! attribute values of users and groups.
//!
//! Every object has its own random stream, seeded from the seed and the object's kind and index, so
//! any object's ids can be recomputed in O(1) (a group's member references need the members' MVO
//! ids) and a bulk load can generate objects in any order or in parallel with identical results.

use fastrand::Rng;
use uuid::Uuid;

use super::template::{COMPANIES, DEPARTMENTS, GroupLayout, GroupRule};

const FIRST_NAMES: [&str; 20] = [
    "Ada", "Ben", "Cleo", "Dev", "Elif", "Finn", "Gus", "Hana", "Ivo", "Jade", "Kai", "Lena",
    "Milo", "Nia", "Omar", "Pia", "Quin", "Rosa", "Sami", "Tess",
];

const LAST_NAMES: [&str; 20] = [
    "Abbott", "Brennan", "Castillo", "Dunn", "Ellison", "Foster", "Garner", "Holt", "Ingram",
    "Jensen", "Keller", "Lowe", "Marsh", "Norris", "Osei", "Park", "Quigley", "Reyes", "Sutton",
    "Tran",
];

/// The ten titles users get round-robin (`title`).
pub(crate) const TITLES: [&str; 10] = [
    "Manager",
    "Director",
    "Analyst",
    "Specialist",
    "Coordinator",
    "Engineer",
    "Developer",
    "Consultant",
    "Associate",
    "Architect",
];

/// Which kind of object a random stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    User = 1,
    Group = 2,
    Manager = 3,
    FollowUp = 4,
}

/// SplitMix64's finaliser: spreads neighbouring inputs over the whole 64-bit space.
pub(crate) const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, for folding a text (the suffix) into a seed without the randomised std hasher.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A random stream for object `index` of `stream` within a space (a seed, or a seed and a system).
pub(crate) fn rng(space: u64, stream: Stream, index: u64) -> Rng {
    Rng::with_seed(mix(space ^ mix(((stream as u64) << 56) ^ index)))
}

/// A version-4-shaped uuid from the stream (JIM's ids are `Guid.NewGuid()`).
pub(crate) fn uuid(rng: &mut Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.u128(..).to_be_bytes()).into_uuid()
}

/// The id spaces of one seeded system: MVO ids depend on the seed only (so a second system can
/// join the same MVOs); everything else also depends on the suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spaces {
    pub metaverse: u64,
    pub system: u64,
}

impl Spaces {
    pub fn new(seed: u64, suffix: &str) -> Self {
        Self {
            metaverse: mix(seed),
            system: mix(seed ^ mix(fnv1a(&suffix.to_ascii_lowercase()))),
        }
    }

    /// The MVO id of user `i`.
    pub fn user_mvo(&self, i: usize) -> Uuid {
        uuid(&mut rng(self.metaverse, Stream::User, i as u64))
    }

    /// The MVO id of group `g`.
    pub fn group_mvo(&self, g: usize) -> Uuid {
        uuid(&mut rng(self.metaverse, Stream::Group, g as u64))
    }

    /// The system-side ids of user `i`, with the stream positioned for its attribute-change ids.
    pub fn user_ids(&self, i: usize) -> (ObjectIds, Rng) {
        ObjectIds::draw(self.user_mvo(i), rng(self.system, Stream::User, i as u64))
    }

    /// The system-side ids of group `g`, with the stream positioned for its attribute-change ids.
    pub fn group_ids(&self, g: usize) -> (ObjectIds, Rng) {
        ObjectIds::draw(self.group_mvo(g), rng(self.system, Stream::Group, g as u64))
    }

    /// Whether user `i` has a manager, and which (a user with a lower index): about one in ten.
    pub fn manager_of(&self, i: usize) -> Option<usize> {
        if i == 0 {
            return None;
        }
        let mut r = rng(self.metaverse, Stream::Manager, i as u64);
        (r.u32(0..10) == 0).then(|| r.usize(0..i))
    }

    /// A stream for follow-up choices of round `salt`.
    pub fn follow_up_rng(&self, salt: u64) -> Rng {
        rng(self.system, Stream::FollowUp, salt)
    }
}

/// The ids one staged object has in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectIds {
    /// `MetaverseObjects.Id`.
    pub mvo: Uuid,
    /// `ConnectedSystemObjects.Id`.
    pub cso: Uuid,
    /// `ConnectedSystemObjectAttributeValues.Id` of the CSO's DN value.
    pub cso_dn_value: Uuid,
    /// `PendingExports.Id`.
    pub pending_export: Uuid,
    /// `PendingExports.QueuedByRunProfileExecutionItemId` (a soft pointer; no such row exists).
    pub queued_by: Uuid,
}

impl ObjectIds {
    fn draw(mvo: Uuid, mut r: Rng) -> (Self, Rng) {
        let ids = Self {
            mvo,
            cso: uuid(&mut r),
            cso_dn_value: uuid(&mut r),
            pending_export: uuid(&mut r),
            queued_by: uuid(&mut r),
        };
        (ids, r)
    }
}

/// The mail domain of a suffix: `dc=example,dc=org` gives `example.org`.
pub(crate) fn mail_domain(suffix: &str) -> String {
    let parts: Vec<&str> = suffix
        .split(',')
        .filter_map(|rdn| {
            let (ty, value) = rdn.split_once('=')?;
            ty.trim().eq_ignore_ascii_case("dc").then(|| value.trim())
        })
        .collect();
    if parts.is_empty() {
        "example.org".into()
    } else {
        parts.join(".").to_ascii_lowercase()
    }
}

/// A seeded user's attribute values, as Scenario 8's OpenLDAP populator shapes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserValues {
    /// The user's index (0-based).
    pub index: usize,
    /// `uid`: `first.last<i>`.
    pub uid: String,
    /// `givenName`.
    pub given_name: &'static str,
    /// `sn`.
    pub sn: &'static str,
    /// `cn` and `displayName`: `First Last (S8-i)`.
    pub display_name: String,
    /// `mail`: `<uid>@<domain of the suffix>`.
    pub mail: String,
    /// `title`: one of ten titles, round-robin.
    pub title: &'static str,
    /// `departmentNumber`: the keyed department `i mod 10`.
    pub department: &'static str,
    /// `o`: the company `i mod 5`.
    pub company: &'static str,
    /// `employeeNumber`: `S8-i`.
    pub employee_number: String,
    /// The user's manager (a user with a lower index), for about one user in ten.
    pub manager: Option<usize>,
}

impl UserValues {
    /// The values of user `i`.
    pub(crate) fn new(spaces: &Spaces, domain: &str, i: usize) -> Self {
        let first = FIRST_NAMES[i % FIRST_NAMES.len()];
        let last = LAST_NAMES[(i / FIRST_NAMES.len() + i) % LAST_NAMES.len()];
        let uid = format!(
            "{}.{}{i}",
            first.to_ascii_lowercase(),
            last.to_ascii_lowercase()
        );
        Self {
            index: i,
            mail: format!("{uid}@{domain}"),
            uid,
            given_name: first,
            sn: last,
            display_name: format!("{first} {last} (S8-{i})"),
            title: TITLES[i % TITLES.len()],
            department: DEPARTMENTS[i % 10],
            company: COMPANIES[i % COMPANIES.len()].1,
            employee_number: format!("S8-{i}"),
            manager: spaces.manager_of(i),
        }
    }

    /// The DN: `uid=<uid>,ou=People,<suffix>`.
    pub fn dn(&self, suffix: &str) -> String {
        format!("uid={},ou=People,{suffix}", self.uid)
    }

    /// The single-valued text attributes in staging order, by LDAP name.
    pub fn text_attributes(&self) -> [(&'static str, &str); 10] {
        [
            ("uid", &self.uid),
            ("cn", &self.display_name),
            ("sn", self.sn),
            ("givenName", self.given_name),
            ("displayName", &self.display_name),
            ("mail", &self.mail),
            ("title", self.title),
            ("departmentNumber", self.department),
            ("o", self.company),
            ("employeeNumber", &self.employee_number),
        ]
    }
}

/// The DN of group `rule`: `cn=<cn>,ou=Groups,<suffix>`.
pub(crate) fn group_dn(rule: &GroupRule, suffix: &str) -> String {
    format!("cn={},ou=Groups,{suffix}", rule.cn())
}

/// Counts that follow from a layout and a seed without touching the database.
pub(crate) fn manager_count(spaces: &Spaces, users: usize) -> u64 {
    (0..users)
        .filter(|&i| spaces.manager_of(i).is_some())
        .count() as u64
}

/// Memberships of a layout (sum of member counts).
pub(crate) fn membership_count(layout: &GroupLayout) -> u64 {
    layout.memberships()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_seed_dependent() {
        let a = Spaces::new(7, "dc=example,dc=org");
        let b = Spaces::new(7, "dc=example,dc=org");
        let c = Spaces::new(8, "dc=example,dc=org");
        let d = Spaces::new(7, "dc=other,dc=org");
        assert_eq!(a.user_ids(5).0, b.user_ids(5).0);
        assert_ne!(a.user_ids(5).0, c.user_ids(5).0);
        assert_ne!(a.user_ids(5).0.mvo, a.user_ids(6).0.mvo);
        assert_ne!(a.user_ids(5).0.mvo, a.group_ids(5).0.mvo);
        // A second suffix joins the same MVOs with its own CSOs.
        assert_eq!(a.user_ids(5).0.mvo, d.user_ids(5).0.mvo);
        assert_ne!(a.user_ids(5).0.cso, d.user_ids(5).0.cso);
        assert_eq!(a.user_mvo(3).get_version_num(), 4);
    }

    #[test]
    fn about_one_user_in_ten_has_a_lower_manager() {
        let s = Spaces::new(1, "dc=example,dc=org");
        let n = manager_count(&s, 10_000);
        assert!((800..1_200).contains(&n), "{n}");
        for i in 0..1_000 {
            if let Some(m) = s.manager_of(i) {
                assert!(m < i);
            }
        }
    }

    #[test]
    fn user_values_follow_scenario_8() {
        let s = Spaces::new(1, "dc=example,dc=org");
        let u = UserValues::new(&s, &mail_domain("dc=example,dc=org"), 42);
        assert_eq!(u.uid, "cleo.ellison42");
        assert_eq!(u.display_name, "Cleo Ellison (S8-42)");
        assert_eq!(u.employee_number, "S8-42");
        assert_eq!(u.mail, "cleo.ellison42@example.org");
        assert_eq!(u.title, "Analyst");
        assert_eq!(u.department, "Human Resources");
        assert_eq!(u.company, "Cascade Partners");
        assert_eq!(
            u.dn("dc=example,dc=org"),
            "uid=cleo.ellison42,ou=People,dc=example,dc=org"
        );
    }
}
