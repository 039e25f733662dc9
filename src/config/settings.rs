//! The connected system's export settings, as JIM's LDAP connector holds them.

use serde::{Deserialize, Serialize};

use super::validate::ConfigErrors;
use crate::model::{ConnectedSystemContainerScope, UnresolvedReferenceHandling};

/// JIM's bounds for `Modify Batch Size` (`LdapConnectorConstants.cs`); values outside are clamped.
pub const MODIFY_BATCH_SIZE_RANGE: (u32, u32) = (10, 5000);

/// The LDAP connector settings that shape an export (`ldap-export.md` §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct ExportSettings {
    /// `Delete Behaviour`: delete the entry, or disable it; [`DeleteBehaviour::Delete`] when absent
    /// (optional because UniFFI has no default for an enum field).
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub delete_behaviour: Option<DeleteBehaviour>,
    /// `Disable Attribute`: `userAccountControl` (AD: set bit 0x2) or another attribute set to `TRUE`
    /// (default [`DEFAULT_DISABLE_ATTRIBUTE`]).
    #[serde(default = "default_disable_attribute")]
    #[cfg_attr(feature = "uniffi", uniffi(default = "userAccountControl"))]
    pub disable_attribute: String,
    /// `Create containers as needed?`: create missing `OU=`/`CN=` parents of a Create (and of a move).
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub create_containers_as_needed: bool,
    /// `Group Placeholder Member DN`: kept in `groupOfNames` groups that would otherwise be empty
    /// (default [`DEFAULT_PLACEHOLDER_MEMBER_DN`]).
    #[serde(default = "default_placeholder")]
    #[cfg_attr(feature = "uniffi", uniffi(default = "cn=placeholder"))]
    pub placeholder_member_dn: String,
    /// `Modify Batch Size`: the most values of one attribute in one Add or Modify (JIM clamps to
    /// 10-5000; default [`DEFAULT_MODIFY_BATCH_SIZE`]).
    #[serde(default = "default_modify_batch_size")]
    #[cfg_attr(feature = "uniffi", uniffi(default = 1000))]
    pub modify_batch_size: u32,
    /// The containers the engine may write to; empty allows everything (JIM's managed scope).
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub managed_scope: Vec<ScopeContainer>,
    /// How unresolvable references are reported; when absent, the connected system's
    /// `UnresolvedReferenceHandling` column applies.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub unresolved_reference_handling: Option<UnresolvedReferenceHandling>,
}

/// The default of [`ExportSettings::disable_attribute`].
pub const DEFAULT_DISABLE_ATTRIBUTE: &str = "userAccountControl";
/// The default of [`ExportSettings::placeholder_member_dn`].
pub const DEFAULT_PLACEHOLDER_MEMBER_DN: &str = "cn=placeholder";
/// The default of [`ExportSettings::modify_batch_size`].
pub const DEFAULT_MODIFY_BATCH_SIZE: u32 = 1000;

fn default_disable_attribute() -> String {
    DEFAULT_DISABLE_ATTRIBUTE.into()
}

fn default_placeholder() -> String {
    DEFAULT_PLACEHOLDER_MEMBER_DN.into()
}

fn default_modify_batch_size() -> u32 {
    DEFAULT_MODIFY_BATCH_SIZE
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            delete_behaviour: None,
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
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
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
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct ScopeContainer {
    /// The container's DN.
    pub dn: String,
    /// Subtree or one level; [`ConnectedSystemContainerScope::Subtree`] when absent (optional because
    /// UniFFI has no default for an enum field).
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub scope: Option<ConnectedSystemContainerScope>,
    /// True for an exclusion; the most specific container covering a DN decides.
    #[serde(default)]
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub excluded: bool,
}

impl ScopeContainer {
    /// The scope in effect: the one given, else a subtree.
    pub fn effective_scope(&self) -> ConnectedSystemContainerScope {
        self.scope.unwrap_or(ConnectedSystemContainerScope::Subtree)
    }
}

impl ExportSettings {
    /// The delete behaviour in effect: the one given, else [`DeleteBehaviour::default`].
    pub fn effective_delete_behaviour(&self) -> DeleteBehaviour {
        self.delete_behaviour.unwrap_or_default()
    }

    /// The modify batch size after JIM's clamp to [10, 5000].
    pub fn effective_modify_batch_size(&self) -> usize {
        self.modify_batch_size
            .clamp(MODIFY_BATCH_SIZE_RANGE.0, MODIFY_BATCH_SIZE_RANGE.1) as usize
    }

    /// Records every invalid field under `path`.
    pub fn validate(&self, path: &str, errors: &mut ConfigErrors) {
        if self.effective_delete_behaviour() == DeleteBehaviour::Disable {
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
