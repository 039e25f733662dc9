//! JIM's scale templates and the group layout and membership rules of Scenario 8's OpenLDAP
//! populator (`tests-and-scale.md` §2.4).
//!
//! Everything here is pure arithmetic on user and group indices: a group's members, its size and its
//! name are computed, never stored, so the 1,000,000-user templates need no membership tables in
//! memory.

use std::fmt;
use std::str::FromStr;

use crate::error::TestkitError;

/// One of JIM's scale templates (`Get-TemplateScale` and `Get-Scenario8GroupScale`), by JIM's name.
///
/// The user count and the group categories are Scenario 8's (`tests-and-scale.md` §2.4, "Scenario 8
/// group categories"); [`Template::groups`] is the number of groups the OpenLDAP populator really
/// creates, which differs from the declared total only where more than five companies are declared
/// (Large: 527, not 530).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Template {
    /// 3 users, 6 groups.
    Nano,
    /// 10 users, 12 groups.
    Micro,
    /// 100 users, 31 groups.
    Small,
    /// 1,000 users, 118 groups.
    Medium,
    /// 5,000 users, 273 groups.
    MediumLarge,
    /// 10,000 users, 527 groups (530 declared; the populator has only five company keys).
    Large,
    /// 100,000 users, 50 groups.
    Scale100k50Groups,
    /// 200,000 users, 55 groups.
    Scale200k55Groups,
    /// 500,000 users, 65 groups.
    Scale500k65Groups,
    /// 750,000 users, 70 groups.
    Scale750k70Groups,
    /// 1,000,000 users, 70 groups (Scenario 8 creates 70, although the generic table says 80).
    Scale1m80Groups,
    /// 100,000 users, 5,027 long-tail groups.
    Scale100k5kGroups,
    /// 200,000 users, 9,984 long-tail groups.
    Scale200k10kGroups,
    /// 500,000 users, 24,997 long-tail groups.
    Scale500k25kGroups,
    /// 750,000 users, 40,011 long-tail groups.
    Scale750k40kGroups,
    /// 1,000,000 users, 60,073 long-tail groups.
    Scale1m60kGroups,
}

/// The group categories of one template, as Scenario 8 declares them (`Get-Scenario8GroupScale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupScale {
    /// Users.
    pub users: usize,
    /// Company groups declared (the OpenLDAP populator creates at most five).
    pub companies: usize,
    /// Department groups: the first ten are keyed by `i mod 10`, the rest sized by a tier table.
    pub departments: usize,
    /// Location groups.
    pub locations: usize,
    /// Project groups.
    pub projects: usize,
    /// All-staff groups.
    pub all_staff: usize,
    /// Division groups.
    pub divisions: usize,
    /// Application access groups.
    pub applications: usize,
    /// Distribution lists.
    pub distribution_lists: usize,
    /// RBAC role groups.
    pub roles: usize,
}

impl GroupScale {
    /// The declared number of groups (the sum of every category).
    pub fn declared_groups(&self) -> usize {
        self.companies
            + self.departments
            + self.locations
            + self.projects
            + self.all_staff
            + self.divisions
            + self.applications
            + self.distribution_lists
            + self.roles
    }
}

const fn scale(
    users: usize,
    [companies, departments, locations, projects]: [usize; 4],
    [
        all_staff,
        divisions,
        applications,
        distribution_lists,
        roles,
    ]: [usize; 5],
) -> GroupScale {
    GroupScale {
        users,
        companies,
        departments,
        locations,
        projects,
        all_staff,
        divisions,
        applications,
        distribution_lists,
        roles,
    }
}

impl Template {
    /// Every template, smallest first within each family.
    pub const ALL: [Template; 16] = [
        Template::Nano,
        Template::Micro,
        Template::Small,
        Template::Medium,
        Template::MediumLarge,
        Template::Large,
        Template::Scale100k50Groups,
        Template::Scale200k55Groups,
        Template::Scale500k65Groups,
        Template::Scale750k70Groups,
        Template::Scale1m80Groups,
        Template::Scale100k5kGroups,
        Template::Scale200k10kGroups,
        Template::Scale500k25kGroups,
        Template::Scale750k40kGroups,
        Template::Scale1m60kGroups,
    ];

    /// JIM's name for the template (`-Template` of its integration runner).
    pub const fn name(self) -> &'static str {
        match self {
            Template::Nano => "Nano",
            Template::Micro => "Micro",
            Template::Small => "Small",
            Template::Medium => "Medium",
            Template::MediumLarge => "MediumLarge",
            Template::Large => "Large",
            Template::Scale100k50Groups => "Scale100k50Groups",
            Template::Scale200k55Groups => "Scale200k55Groups",
            Template::Scale500k65Groups => "Scale500k65Groups",
            Template::Scale750k70Groups => "Scale750k70Groups",
            Template::Scale1m80Groups => "Scale1m80Groups",
            Template::Scale100k5kGroups => "Scale100k5kGroups",
            Template::Scale200k10kGroups => "Scale200k10kGroups",
            Template::Scale500k25kGroups => "Scale500k25kGroups",
            Template::Scale750k40kGroups => "Scale750k40kGroups",
            Template::Scale1m60kGroups => "Scale1m60kGroups",
        }
    }

    /// Scenario 8's category counts for this template.
    pub const fn scale(self) -> GroupScale {
        match self {
            Template::Nano => scale(3, [1, 2, 1, 2], [0; 5]),
            Template::Micro => scale(10, [2, 3, 2, 5], [0; 5]),
            Template::Small => scale(100, [3, 5, 3, 20], [0; 5]),
            Template::Medium => scale(1_000, [5, 8, 5, 100], [0; 5]),
            Template::MediumLarge => scale(5_000, [5, 10, 8, 250], [0; 5]),
            Template::Large => scale(10_000, [8, 12, 10, 500], [0; 5]),
            Template::Scale100k50Groups => scale(100_000, [5, 10, 5, 30], [0; 5]),
            Template::Scale200k55Groups => scale(200_000, [5, 10, 5, 35], [0; 5]),
            Template::Scale500k65Groups => scale(500_000, [5, 10, 5, 45], [0; 5]),
            Template::Scale750k70Groups => scale(750_000, [5, 10, 5, 50], [0; 5]),
            Template::Scale1m80Groups => scale(1_000_000, [5, 10, 5, 50], [0; 5]),
            Template::Scale100k5kGroups => {
                scale(100_000, [0, 100, 15, 3_000], [2, 10, 500, 1_000, 400])
            }
            Template::Scale200k10kGroups => {
                scale(200_000, [0, 150, 20, 6_000], [2, 12, 800, 2_000, 1_000])
            }
            Template::Scale500k25kGroups => {
                scale(500_000, [0, 250, 30, 16_000], [2, 15, 1_500, 5_000, 2_200])
            }
            Template::Scale750k40kGroups => {
                scale(750_000, [0, 350, 40, 27_000], [3, 18, 2_500, 7_500, 2_600])
            }
            Template::Scale1m60kGroups => scale(
                1_000_000,
                [0, 500, 50, 38_000],
                [3, 20, 4_000, 13_000, 4_500],
            ),
        }
    }

    /// Users in this template.
    pub const fn users(self) -> usize {
        self.scale().users
    }

    /// Groups the OpenLDAP populator creates for this template (companies capped at five).
    pub fn groups(self) -> usize {
        self.layout().groups()
    }

    /// Users plus groups: the number of objects (and of pending exports) a seed stages.
    pub fn objects(self) -> usize {
        self.users() + self.groups()
    }

    /// The group count of JIM's generic template table (`Get-TemplateScale`), used by the scenarios
    /// other than Scenario 8. Shown for reference; seeds use [`Template::groups`].
    pub const fn generic_groups(self) -> usize {
        match self {
            Template::Nano => 1,
            Template::Micro => 3,
            Template::Small => 20,
            Template::Medium => 100,
            Template::MediumLarge => 250,
            Template::Large => 500,
            Template::Scale100k50Groups => 50,
            Template::Scale200k55Groups => 55,
            Template::Scale500k65Groups => 65,
            Template::Scale750k70Groups => 70,
            Template::Scale1m80Groups => 80,
            Template::Scale100k5kGroups => 5_027,
            Template::Scale200k10kGroups => 9_984,
            Template::Scale500k25kGroups => 24_997,
            Template::Scale750k40kGroups => 40_011,
            Template::Scale1m60kGroups => 60_073,
        }
    }

    /// The template's groups in creation order, with their membership rules.
    pub fn layout(self) -> GroupLayout {
        GroupLayout::new(self.scale())
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Template {
    type Err = TestkitError;

    /// Parses JIM's template name, ignoring ASCII case (`"Medium"`, `"scale100k5kgroups"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                TestkitError::Seed(format!(
                    "unknown template {s:?}; expected one of {}",
                    Template::ALL.map(Template::name).join(", ")
                ))
            })
    }
}

/// A group category of Scenario 8, in the order the populator creates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// `Company-<key>`: every user with `i mod 5` equal to the company's key.
    Company,
    /// `Dept-<name>`: keyed by `i mod 10` for the first ten, tier-sized after that.
    Department,
    /// `Location-<name>`: a fraction of the users.
    Location,
    /// `Project-<name>`: small absolute sizes.
    Project,
    /// `AllStaff-<name>`: all users, then 80 %.
    AllStaff,
    /// `Division-<name>`: 25 % down to 5 % of the users.
    Division,
    /// `App-<name>`: 300 down to 10 members.
    Application,
    /// `DL-<name>`: 150 down to 10 members.
    DistributionList,
    /// `Role-<name>`: 500 down to 20 members.
    Role,
}

/// Keys of the company groups; a user's company is `i mod 5` (display name in the user's `o`).
pub(crate) const COMPANIES: [(&str, &str); 5] = [
    ("Aurora", "Aurora Holdings"),
    ("Borealis", "Borealis Group"),
    ("Cascade", "Cascade Partners"),
    ("Driftwood", "Driftwood Labs"),
    ("Ember", "Ember Industries"),
];

/// Department names; the first ten are the keyed departments (`i mod 10`, the user's
/// `departmentNumber`).
pub(crate) const DEPARTMENTS: [&str; 20] = [
    "Engineering",
    "Finance",
    "Human Resources",
    "Information Technology",
    "Legal",
    "Marketing",
    "Operations",
    "Procurement",
    "Research",
    "Sales",
    "Customer Support",
    "Quality Assurance",
    "Product Management",
    "Data Science",
    "Security",
    "Facilities",
    "Executive Office",
    "Compliance",
    "Communications",
    "Training",
];

const LOCATIONS: [&str; 20] = [
    "Sydney",
    "Melbourne",
    "London",
    "Manchester",
    "NewYork",
    "SanFrancisco",
    "Tokyo",
    "Singapore",
    "Berlin",
    "Paris",
    "Toronto",
    "Dubai",
    "Mumbai",
    "Shanghai",
    "HongKong",
    "Seoul",
    "Amsterdam",
    "Zurich",
    "Dublin",
    "Stockholm",
];

const PROJECTS: [&str; 24] = [
    "Phoenix", "Titan", "Mercury", "Apollo", "Voyager", "Nebula", "Quantum", "Fusion", "Platform",
    "Gateway", "Engine", "Hub", "Core", "Bridge", "Matrix", "Vector", "Horizon", "Catalyst",
    "Pulse", "Nova", "Vertex", "Zenith", "Prism", "Vortex",
];

const ALL_STAFF: [&str; 3] = ["Everyone", "Employees", "Staff"];

const DIVISIONS: [&str; 10] = [
    "Corporate",
    "Consumer",
    "Enterprise",
    "Government",
    "Healthcare",
    "Industrial",
    "International",
    "Platforms",
    "Services",
    "Ventures",
];

const APPLICATIONS: [&str; 20] = [
    "Payroll",
    "Ledger",
    "Wiki",
    "Tickets",
    "Builds",
    "Crm",
    "Expenses",
    "Timesheets",
    "Vault",
    "Intranet",
    "Analytics",
    "Backups",
    "Mail",
    "Chat",
    "Calendar",
    "Storage",
    "Monitoring",
    "Reports",
    "Recruiting",
    "Learning",
];

const DISTRIBUTION_LISTS: [&str; 20] = [
    "Announcements",
    "Newsletter",
    "Social",
    "Wellbeing",
    "Events",
    "Volunteers",
    "Sustainability",
    "Innovation",
    "Alumni",
    "Parents",
    "Runners",
    "BookClub",
    "Cyclists",
    "Photography",
    "Music",
    "Gaming",
    "Travel",
    "Cooking",
    "Languages",
    "Mentoring",
];

const ROLES: [&str; 20] = [
    "Approver",
    "Auditor",
    "Administrator",
    "Reviewer",
    "Operator",
    "Publisher",
    "Editor",
    "Viewer",
    "Contributor",
    "Owner",
    "Steward",
    "Analyst",
    "Planner",
    "Dispatcher",
    "Supervisor",
    "Trainer",
    "Custodian",
    "Architect",
    "Controller",
    "Coordinator",
];

/// How many keyed companies and departments the OpenLDAP populator knows.
const COMPANY_KEYS: usize = 5;
const DEPARTMENT_KEYS: usize = 10;

/// A tier table entry: a fraction of the users, or an absolute member count.
#[derive(Debug, Clone, Copy)]
enum Tier {
    Fraction(f64),
    Absolute(usize),
}

impl Category {
    /// Every category, in creation order.
    pub const ALL: [Category; 9] = [
        Category::Company,
        Category::Department,
        Category::Location,
        Category::Project,
        Category::AllStaff,
        Category::Division,
        Category::Application,
        Category::DistributionList,
        Category::Role,
    ];

    /// The `cn` prefix of the category's groups.
    pub const fn prefix(self) -> &'static str {
        match self {
            Category::Company => "Company",
            Category::Department => "Dept",
            Category::Location => "Location",
            Category::Project => "Project",
            Category::AllStaff => "AllStaff",
            Category::Division => "Division",
            Category::Application => "App",
            Category::DistributionList => "DL",
            Category::Role => "Role",
        }
    }

    /// The multiplier of the category index that gives a slice's start (`offset = index * stride mod
    /// users`). All-staff slices start at user 0.
    const fn stride(self) -> usize {
        match self {
            Category::Department => 19,
            Category::Location => 29,
            Category::Project => 11,
            Category::Division => 31,
            Category::Application => 17,
            Category::DistributionList => 23,
            Category::Role => 13,
            Category::Company | Category::AllStaff => 0,
        }
    }

    /// The size tiers, indexed by `index mod len` (JIM's `Get-LongTailGroupSize`).
    fn tiers(self) -> &'static [Tier] {
        use Tier::{Absolute as A, Fraction as F};
        match self {
            Category::AllStaff => &[F(1.0), F(0.8)],
            Category::Division => &[
                F(0.25),
                F(0.20),
                F(0.18),
                F(0.15),
                F(0.12),
                F(0.10),
                F(0.08),
                F(0.07),
                F(0.06),
                F(0.05),
            ],
            Category::Location => &[
                F(0.10),
                F(0.08),
                F(0.06),
                F(0.05),
                F(0.04),
                F(0.03),
                F(0.025),
                F(0.02),
                F(0.015),
                F(0.012),
                F(0.01),
                F(0.008),
                F(0.006),
                F(0.004),
                F(0.002),
            ],
            Category::Department => &[
                A(3000),
                A(2500),
                A(2000),
                A(1500),
                A(1200),
                A(1000),
                A(800),
                A(600),
                A(500),
                A(400),
                A(300),
                A(250),
                A(200),
            ],
            Category::Application => &[
                A(300),
                A(200),
                A(150),
                A(100),
                A(80),
                A(60),
                A(50),
                A(40),
                A(30),
                A(25),
                A(20),
                A(15),
                A(10),
            ],
            Category::Project => &[
                A(30),
                A(25),
                A(20),
                A(18),
                A(15),
                A(12),
                A(10),
                A(8),
                A(7),
                A(6),
                A(5),
                A(8),
                A(10),
                A(50),
                A(5),
            ],
            Category::DistributionList => &[
                A(150),
                A(120),
                A(100),
                A(80),
                A(60),
                A(50),
                A(40),
                A(30),
                A(25),
                A(20),
                A(15),
                A(12),
                A(10),
            ],
            Category::Role => &[
                A(500),
                A(300),
                A(200),
                A(150),
                A(100),
                A(80),
                A(60),
                A(50),
                A(40),
                A(30),
                A(25),
                A(20),
            ],
            Category::Company => &[],
        }
    }

    /// The slice length of the category's `index`-th tier-sized group for `users` users.
    fn tier_size(self, index: usize, users: usize) -> usize {
        let tiers = self.tiers();
        if tiers.is_empty() || users == 0 {
            return users.min(1);
        }
        match tiers[index % tiers.len()] {
            // Floating point on purpose: JIM computes floor(users * fraction) in doubles.
            Tier::Fraction(f) => ((users as f64 * f).floor() as usize).clamp(1, users),
            Tier::Absolute(n) => n.min(users),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Category::Company => &[],
            Category::Department => &DEPARTMENTS,
            Category::Location => &LOCATIONS,
            Category::Project => &PROJECTS,
            Category::AllStaff => &ALL_STAFF,
            Category::Division => &DIVISIONS,
            Category::Application => &APPLICATIONS,
            Category::DistributionList => &DISTRIBUTION_LISTS,
            Category::Role => &ROLES,
        }
    }
}

/// Who belongs to a group, besides its initial member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Users whose index is `key` modulo `modulus` (keyed companies and departments).
    Keyed {
        /// 5 for companies, 10 for departments.
        modulus: usize,
        /// The group's key.
        key: usize,
    },
    /// A contiguous slice of the user list, wrapping at the end.
    Slice {
        /// Index of the first user.
        offset: usize,
        /// Number of users in the slice (never more than the user count).
        len: usize,
    },
}

/// One group of a template: its category, name and members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    /// The group's index among all groups of the template (creation order).
    pub index: usize,
    /// Its category.
    pub category: Category,
    /// Its index within the category.
    pub category_index: usize,
    /// The rule that picks its members.
    pub membership: Membership,
    /// The user the group is created with (`groupOfNames` needs a member); a member even when the
    /// rule leaves it out.
    pub initial_member: usize,
    users: usize,
}

impl GroupRule {
    /// The group's `cn`, e.g. `Dept-Engineering` or `Project-Phoenix3`.
    pub fn cn(&self) -> String {
        format!("{}-{}", self.category.prefix(), self.name())
    }

    /// The name part of the `cn`, without the category prefix.
    pub fn name(&self) -> String {
        if self.category == Category::Company {
            return COMPANIES[self.category_index % COMPANY_KEYS].0.to_string();
        }
        let names = self.category.names();
        let base = names[self.category_index % names.len()].replace(' ', "");
        let round = self.category_index / names.len();
        if round == 0 {
            base
        } else {
            format!("{base}{}", round + 1)
        }
    }

    /// The group's `description`.
    pub fn description(&self) -> String {
        match self.category {
            Category::Company => format!(
                "Company group for {}",
                COMPANIES[self.category_index % COMPANY_KEYS].1
            ),
            Category::Department => format!("Department group for {}", self.display_name()),
            Category::Location => format!("Location group for {}", self.name()),
            Category::Project => format!("Project group for {}", self.name()),
            Category::AllStaff => format!("All-staff group: {}", self.name()),
            Category::Division => format!("Division group for {}", self.name()),
            Category::Application => format!("Application access group: {}", self.name()),
            Category::DistributionList => format!("Distribution list: {}", self.name()),
            Category::Role => format!("RBAC role: {}", self.name()),
        }
    }

    fn display_name(&self) -> String {
        let names = self.category.names();
        let base = names[self.category_index % names.len()];
        let round = self.category_index / names.len();
        if round == 0 {
            base.to_string()
        } else {
            format!("{base} {}", round + 1)
        }
    }

    /// Whether user `u` is a member.
    pub fn contains(&self, u: usize) -> bool {
        u == self.initial_member || self.rule_contains(u)
    }

    fn rule_contains(&self, u: usize) -> bool {
        if u >= self.users {
            return false;
        }
        match self.membership {
            Membership::Keyed { modulus, key } => u % modulus == key,
            Membership::Slice { offset, len } => (u + self.users - offset) % self.users < len,
        }
    }

    /// The number of members (rule members plus the initial member when the rule leaves it out).
    pub fn member_count(&self) -> usize {
        let rule = match self.membership {
            Membership::Keyed { modulus, key } => {
                if key < self.users {
                    (self.users - key).div_ceil(modulus)
                } else {
                    0
                }
            }
            Membership::Slice { len, .. } => len,
        };
        rule + usize::from(!self.rule_contains(self.initial_member))
    }

    /// The members' user indices: the initial member first when the rule leaves it out, then the
    /// rule's members in slice (or index) order. Each user appears once.
    pub fn members(&self) -> impl Iterator<Item = usize> + '_ {
        let extra = (!self.rule_contains(self.initial_member)).then_some(self.initial_member);
        let users = self.users;
        let (keyed, slice) = match self.membership {
            Membership::Keyed { modulus, key } => (Some((key..users).step_by(modulus)), None),
            Membership::Slice { offset, len } => {
                (None, Some((0..len).map(move |k| (offset + k) % users)))
            }
        };
        extra
            .into_iter()
            .chain(keyed.into_iter().flatten())
            .chain(slice.into_iter().flatten())
    }
}

/// A template's groups in creation order (companies, departments, locations, projects, all-staff,
/// divisions, applications, distribution lists, roles), each computed on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLayout {
    users: usize,
    /// (category, number of groups), in creation order.
    counts: [(Category, usize); 9],
    keyed_departments: usize,
}

impl GroupLayout {
    /// The layout for a Scenario 8 category table.
    pub fn new(scale: GroupScale) -> Self {
        let counts = [
            (Category::Company, scale.companies.min(COMPANY_KEYS)),
            (Category::Department, scale.departments),
            (Category::Location, scale.locations),
            (Category::Project, scale.projects),
            (Category::AllStaff, scale.all_staff),
            (Category::Division, scale.divisions),
            (Category::Application, scale.applications),
            (Category::DistributionList, scale.distribution_lists),
            (Category::Role, scale.roles),
        ];
        Self {
            users: scale.users,
            counts,
            keyed_departments: scale.departments.min(DEPARTMENT_KEYS),
        }
    }

    /// Users of the template.
    pub fn users(&self) -> usize {
        self.users
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.counts.iter().map(|(_, n)| n).sum()
    }

    /// Number of groups of `category`.
    pub fn count(&self, category: Category) -> usize {
        self.counts
            .iter()
            .find(|(c, _)| *c == category)
            .map_or(0, |(_, n)| *n)
    }

    /// The total number of memberships (member values over all groups).
    pub fn memberships(&self) -> u64 {
        (0..self.groups())
            .filter_map(|g| self.group(g))
            .map(|r| r.member_count() as u64)
            .sum()
    }

    /// Group `g` (creation order), or `None` past the end.
    pub fn group(&self, g: usize) -> Option<GroupRule> {
        let users = self.users;
        if users == 0 {
            return None;
        }
        let mut start = 0;
        for &(category, count) in &self.counts {
            if g >= start + count {
                start += count;
                continue;
            }
            let i = g - start;
            let (membership, initial_member) = match category {
                Category::Company => {
                    let key = i;
                    (
                        Membership::Keyed {
                            modulus: COMPANY_KEYS,
                            key,
                        },
                        if key < users { key } else { 0 },
                    )
                }
                Category::Department if i < self.keyed_departments => (
                    Membership::Keyed {
                        modulus: DEPARTMENT_KEYS,
                        key: i,
                    },
                    if i < users { i } else { 0 },
                ),
                Category::Department => {
                    // Long-tail departments are sized by their index among the long-tail ones, but
                    // created with the user at their overall department index.
                    let t = i - self.keyed_departments;
                    (
                        Membership::Slice {
                            offset: (t * category.stride()) % users,
                            len: category.tier_size(t, users),
                        },
                        i % users,
                    )
                }
                Category::AllStaff => (
                    Membership::Slice {
                        offset: 0,
                        len: category.tier_size(i, users),
                    },
                    i % users,
                ),
                _ => (
                    Membership::Slice {
                        offset: (i * category.stride()) % users,
                        len: category.tier_size(i, users),
                    },
                    i % users,
                ),
            };
            return Some(GroupRule {
                index: g,
                category,
                category_index: i,
                membership,
                initial_member,
                users,
            });
        }
        None
    }

    /// Every group, in creation order.
    pub fn iter(&self) -> impl Iterator<Item = GroupRule> + '_ {
        (0..self.groups()).filter_map(|g| self.group(g))
    }
}

/// Group-size buckets of JIM's Scale100k5kGroups measurement: `< 50`, `50-199`, `200-999`,
/// `1,000-4,999`, `5,000-19,999`, `20,000-49,999`, `>= 50,000` members.
pub fn size_buckets(layout: &GroupLayout) -> [usize; 7] {
    let mut buckets = [0usize; 7];
    for rule in layout.iter() {
        let n = rule.member_count();
        let b = match n {
            0..50 => 0,
            50..200 => 1,
            200..1_000 => 2,
            1_000..5_000 => 3,
            5_000..20_000 => 4,
            20_000..50_000 => 5,
            _ => 6,
        };
        buckets[b] += 1;
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively() {
        for t in Template::ALL {
            assert_eq!(t.name().parse::<Template>().unwrap(), t);
            assert_eq!(t.name().to_lowercase().parse::<Template>().unwrap(), t);
        }
        assert!("Huge".parse::<Template>().is_err());
    }

    #[test]
    fn group_counts_follow_the_openldap_populator() {
        let expected = [
            (Template::Nano, 3, 6, 10),
            (Template::Micro, 10, 12, 60),
            (Template::Small, 100, 31, 490),
            (Template::Medium, 1_000, 118, 3_758),
            (Template::MediumLarge, 5_000, 273, 16_096),
            (Template::Large, 10_000, 527, 37_994),
            (Template::Scale100k50Groups, 100_000, 50, 233_491),
            (Template::Scale1m80Groups, 1_000_000, 70, 2_330_848),
            (Template::Scale100k5kGroups, 100_000, 5_027, 751_767),
            (Template::Scale200k10kGroups, 200_000, 9_984, 1_624_626),
        ];
        for (t, users, groups, memberships) in expected {
            let layout = t.layout();
            assert_eq!(t.users(), users, "{t}");
            assert_eq!(layout.groups(), groups, "{t}");
            assert_eq!(layout.memberships(), memberships, "{t}");
        }
        for t in Template::ALL {
            let declared = t.scale().declared_groups();
            let capped = t.scale().companies.saturating_sub(COMPANY_KEYS);
            assert_eq!(t.groups(), declared - capped, "{t}");
        }
    }

    #[test]
    fn scale100k5k_matches_jims_size_buckets() {
        let layout = Template::Scale100k5kGroups.layout();
        assert_eq!(
            size_buckets(&layout),
            [3_698, 1_022, 232, 49, 22, 2, 2],
            "JIM measured <50: 3,698; 50-199: 1,022; 200-999: 232; 1,000-4,999: 49; \
             5,000-19,999: 22; 20,000-49,999: 2; >=50,000: 2"
        );
    }

    #[test]
    fn members_are_distinct_and_counted() {
        for t in [
            Template::Nano,
            Template::Micro,
            Template::Small,
            Template::Medium,
        ] {
            let layout = t.layout();
            for rule in layout.iter() {
                let members: Vec<usize> = rule.members().collect();
                let mut sorted = members.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), members.len(), "{t} {}", rule.cn());
                assert_eq!(members.len(), rule.member_count(), "{t} {}", rule.cn());
                assert!(members.contains(&rule.initial_member));
                assert!(members.iter().all(|&u| u < t.users() && rule.contains(u)));
                let outsiders = (0..t.users()).filter(|&u| rule.contains(u)).count();
                assert_eq!(outsiders, members.len(), "{t} {}", rule.cn());
            }
        }
    }

    #[test]
    fn group_names_are_unique() {
        for t in [Template::Medium, Template::Scale100k5kGroups] {
            let mut names: Vec<String> = t.layout().iter().map(|r| r.cn()).collect();
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), n, "{t}");
        }
    }

    #[test]
    fn keyed_groups_follow_the_user_index() {
        let layout = Template::Medium.layout();
        let company = layout.group(2).unwrap();
        assert_eq!(company.category, Category::Company);
        assert_eq!(company.member_count(), 200);
        assert!(company.members().all(|u| u % 5 == 2));
        let dept = layout.group(5 + 3).unwrap();
        assert_eq!(dept.category, Category::Department);
        assert_eq!(dept.cn(), "Dept-InformationTechnology");
        assert!(dept.members().all(|u| u % 10 == 3));
    }
}
