//! The connected system's export settings, as JIM's LDAP connector holds them.

use serde::{Deserialize, Serialize};

use super::validate::ConfigErrors;
use crate::model::{ConnectedSystemContainerScope, UnresolvedReferenceHandling};

/// JIM's bounds for `Modify Batch Size` (`LdapConnectorConstants.cs`); values outside are clamped.
pub const MODIFY_BATCH_SIZE_RANGE: (u32, u32) = (10, 5000);

/// The LDAP connector settings that shape an export (`ldap-export.md` §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSettings {
    /// `Delete Behaviour`: delete the entry, or disable it.
    #[serde(default)]
    pub delete_behaviour: DeleteBehaviour,
    /// `Disable Attribute`: `userAccountControl` (AD: set bit 0x2) or another attribute set to `TRUE`.
    #[serde(default = "default_disable_attribute")]
    pub disable_attribute: String,
    /// `Create containers as needed?`: create missing `OU=`/`CN=` parents of a Create (and of a move).
    #[serde(default)]
    pub create_containers_as_needed: bool,
    /// `Group Placeholder Member DN`: kept in `groupOfNames` groups that would otherwise be empty.
    #[serde(default = "default_placeholder")]
    pub placeholder_member_dn: String,
    /// `Modify Batch Size`: the most values of one attribute in one Add or Modify (JIM clamps to 10-5000).
    #[serde(default = "default_modify_batch_size")]
    pub modify_batch_size: u32,
    /// The containers the engine may write to; empty allows everything (JIM's managed scope).
    #[serde(default)]
    pub managed_scope: Vec<ScopeContainer>,
    /// How unresolvable references are reported; when absent, the connected system's
    /// `UnresolvedReferenceHandling` column applies.
    #[serde(default)]
    pub unresolved_reference_handling: Option<UnresolvedReferenceHandling>,
}

fn default_disable_attribute() -> String {
    "userAccountControl".into()
}

fn default_placeholder() -> String {
    "cn=placeholder".into()
}

fn default_modify_batch_size() -> u32 {
    1000
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            delete_behaviour: DeleteBehaviour::Delete,
            disable_attribute: default_disable_attribute(),
            create_containers_as_needed: false,
            placeholder_member_dn: default_placeholder(),
            modify_batch_size: default_modify_batch_size(),
            managed_scope: Vec::new(),
            unresolved_reference_handling: None,
        }
    }
}

/// `Delete Behaviour`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteBehaviour {
    /// Send a Delete (a missing entry counts as deleted).
    #[default]
    Delete,
    /// Disable the entry through the disable attribute.
    Disable,
}

/// One selected (or excluded) container of the managed scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeContainer {
    /// The container's DN.
    pub dn: String,
    /// Subtree (default) or one level.
    #[serde(default = "default_scope")]
    pub scope: ConnectedSystemContainerScope,
    /// True for an exclusion; the most specific container covering a DN decides.
    #[serde(default)]
    pub excluded: bool,
}

fn default_scope() -> ConnectedSystemContainerScope {
    ConnectedSystemContainerScope::Subtree
}

impl ExportSettings {
    /// The modify batch size after JIM's clamp to [10, 5000].
    pub fn effective_modify_batch_size(&self) -> usize {
        self.modify_batch_size
            .clamp(MODIFY_BATCH_SIZE_RANGE.0, MODIFY_BATCH_SIZE_RANGE.1) as usize
    }

    /// Records every invalid field under `path`.
    pub fn validate(&self, path: &str, errors: &mut ConfigErrors) {
        if self.delete_behaviour == DeleteBehaviour::Disable {
            errors.check(
                self.disable_attribute.trim().is_empty(),
                format!("{path}.disable_attribute"),
                "is required when delete_behaviour is disable",
            );
        }
        errors.check(
            self.placeholder_member_dn.trim().is_empty(),
            format!("{path}.placeholder_member_dn"),
            "must not be empty",
        );
        for (i, c) in self.managed_scope.iter().enumerate() {
            errors.check(
                c.dn.trim().is_empty(),
                format!("{path}.managed_scope[{i}].dn"),
                "must not be empty",
            );
        }
    }
}
