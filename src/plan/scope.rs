//! The managed scope: the containers the host allows the engine to write to (JIM's selected and
//! excluded containers, `ldap-export.md` §2.2 step 2).
//!
//! A DN is in scope when the most specific container covering it is a selection rather than an
//! exclusion. A subtree container covers itself and everything beneath it; a one-level container
//! covers itself and its direct children. Comparison ignores case and spaces after commas. An empty
//! scope allows everything. Containers the engine created earlier in the run count as subtree
//! selections, as in JIM, unless an exclusion is more specific.

use super::dn::{Dn, dn_key};
use crate::config::ScopeContainer;
use crate::model::ConnectedSystemContainerScope;

#[derive(Debug, Clone)]
struct Entry {
    dn: Option<Dn>,
    key: String,
    one_level: bool,
    excluded: bool,
}

/// The managed scope, parsed once per run.
#[derive(Debug, Clone, Default)]
pub struct ManagedScope {
    entries: Vec<Entry>,
}

impl ManagedScope {
    /// Parses the configured containers. A container whose DN does not parse is compared as
    /// normalised text.
    pub fn new(containers: &[ScopeContainer]) -> Self {
        Self {
            entries: containers
                .iter()
                .map(|c| Entry {
                    dn: Dn::parse(&c.dn).ok(),
                    key: dn_key(&c.dn),
                    one_level: c.effective_scope() == ConnectedSystemContainerScope::OneLevel,
                    excluded: c.excluded,
                })
                .collect(),
        }
    }

    /// True when no container is configured (everything is allowed).
    pub fn is_unrestricted(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when the engine may write `dn`. `created` lists containers created earlier in this run.
    pub fn permits(&self, dn: &str, created: &[String]) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        let target = Dn::parse(dn).ok();
        let target_key = dn_key(dn);
        // (depth below the container, excluded): the smallest depth is the most specific container;
        // at equal depth an exclusion wins.
        let mut best: Option<(usize, bool)> = None;
        let mut consider = |depth: usize, excluded: bool| {
            best = match best {
                Some((d, e)) if d < depth || (d == depth && e) => Some((d, e)),
                _ => Some((depth, excluded)),
            };
        };
        for entry in &self.entries {
            let depth = match (&target, &entry.dn) {
                (Some(t), Some(c)) => t.depth_below(c),
                _ => text_depth(&target_key, &entry.key),
            };
            let Some(depth) = depth else { continue };
            if entry.one_level && depth > 1 {
                continue;
            }
            consider(depth, entry.excluded);
        }
        for container in created {
            let depth = match (&target, Dn::parse(container)) {
                (Some(t), Ok(c)) => t.depth_below(&c),
                _ => text_depth(&target_key, &dn_key(container)),
            };
            if let Some(depth) = depth {
                consider(depth, false);
            }
        }
        matches!(best, Some((_, false)))
    }
}

/// Depth of one normalised DN text below another, counting commas, for DNs that do not parse.
fn text_depth(target: &str, container: &str) -> Option<usize> {
    if target == container {
        return Some(0);
    }
    let prefix = target.strip_suffix(container)?.strip_suffix(',')?;
    Some(prefix.matches(',').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(dn: &str, one_level: bool, excluded: bool) -> ScopeContainer {
        ScopeContainer {
            dn: dn.into(),
            scope: Some(if one_level {
                ConnectedSystemContainerScope::OneLevel
            } else {
                ConnectedSystemContainerScope::Subtree
            }),
            excluded,
        }
    }

    fn scope(containers: &[ScopeContainer]) -> ManagedScope {
        ManagedScope::new(containers)
    }

    /// `ExecuteAsync_NoScopeSupplied_WritesAsUsualAsync`.
    #[test]
    fn empty_scope_allows_everything() {
        assert!(scope(&[]).permits("cn=x,dc=anything", &[]));
        assert!(scope(&[]).is_unrestricted());
    }

    /// `ExecuteAsync_TargetOutsideSelectedContainers_…`, `…InsideASelectedContainer…`,
    /// `…InsideANestedSelectedContainer…`, `…TargetIsASelectedContainerItself…`.
    #[test]
    fn subtree_selection() {
        let s = scope(&[container("OU=Users,DC=example,DC=org", false, false)]);
        assert!(s.permits("CN=a,OU=Users,DC=example,DC=org", &[]));
        assert!(s.permits("CN=a,OU=Deep,OU=Deeper,OU=Users,DC=example,DC=org", &[]));
        assert!(!s.permits("CN=a,OU=Other,DC=example,DC=org", &[]));
        assert!(s.permits("OU=Users,DC=example,DC=org", &[]));
        let root = scope(&[container("DC=example,DC=org", false, false)]);
        assert!(root.permits("CN=direct,DC=example,DC=org", &[]));
    }

    /// `ExecuteAsync_ScopeMatchIsCaseInsensitiveAsync`, plus spaces after commas.
    #[test]
    fn case_and_spaces_do_not_matter() {
        let s = scope(&[container("ou=users,dc=example,dc=org", false, false)]);
        assert!(s.permits("CN=a,OU=Users,DC=Example,DC=ORG", &[]));
        assert!(s.permits("CN=a, OU=Users, DC=example, DC=org", &[]));
    }

    /// `…TargetBeneathAOneLevelContainer_Fails…`, `…TargetDirectlyWithinAOneLevelContainer…`.
    #[test]
    fn one_level_selection() {
        let s = scope(&[container("OU=Users,DC=example,DC=org", true, false)]);
        assert!(s.permits("CN=a,OU=Users,DC=example,DC=org", &[]));
        assert!(!s.permits("CN=a,OU=Sub,OU=Users,DC=example,DC=org", &[]));
    }

    /// `…TargetWithinAnExcludedBranch_Fails…`, `…TargetElsewhereInABranchWithAnExclusion…`,
    /// `…TargetWithinASelectionBeneathAnExclusion…` (most specific wins).
    #[test]
    fn exclusions_and_most_specific_wins() {
        let s = scope(&[
            container("DC=example,DC=org", false, false),
            container("OU=Hidden,DC=example,DC=org", false, true),
            container("OU=Back,OU=Hidden,DC=example,DC=org", false, false),
        ]);
        assert!(!s.permits("CN=a,OU=Hidden,DC=example,DC=org", &[]));
        assert!(s.permits("CN=a,OU=Visible,DC=example,DC=org", &[]));
        assert!(s.permits("CN=a,OU=Back,OU=Hidden,DC=example,DC=org", &[]));
    }

    #[test]
    fn created_containers_count_unless_excluded() {
        let s = scope(&[
            container("OU=Users,DC=example,DC=org", true, false),
            container("OU=Secret,OU=New,OU=Users,DC=example,DC=org", false, true),
        ]);
        let created = vec!["OU=New,OU=Users,DC=example,DC=org".to_string()];
        assert!(!s.permits("CN=a,OU=New,OU=Users,DC=example,DC=org", &[]));
        assert!(s.permits("CN=a,OU=New,OU=Users,DC=example,DC=org", &created));
        assert!(!s.permits("CN=a,OU=Secret,OU=New,OU=Users,DC=example,DC=org", &created));
    }

    #[test]
    fn unparseable_dns_fall_back_to_text() {
        let s = scope(&[container("OU=Users,DC=example,DC=org", false, false)]);
        assert!(s.permits("CN=bad\\4,OU=Users, DC=example,DC=org", &[]));
        assert!(!s.permits("CN=bad\\4,OU=Other,DC=example,DC=org", &[]));
        assert!(!s.permits("garbage", &[]));
    }
}
