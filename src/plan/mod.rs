//! **plan**: one pending export plus its context becomes an ordered list of LDAP operations.
//!
//! Pure and synchronous (no tokio, sqlx or ldap3): [`Planner::plan`](crate::plan::Planner::plan) takes a [`PlanInput`](crate::plan::PlanInput) (the
//! export with its changes, the attribute definitions, the CSO) and returns an [`ExportPlan`](crate::plan::ExportPlan) whose
//! [`PlannedStep`](crate::plan::PlannedStep)s the directory executes strictly in order, or a [`PlanFailure`](crate::plan::PlanFailure) that becomes the
//! export's outcome without any LDAP call (outside the managed scope, an invalid DN, no DN at all).
//!
//! The behaviour follows JIM's LDAP connector (`ldap-export.md` §3, §4, §7) with the fixes its §11
//! asks for: no chunked `replace` that keeps only the last chunk, no `RemoveAll` that drops the other
//! values of its attribute, placeholder members counted for clears too and removed when real members
//! arrive, container values unescaped, parents created for moves, and every step recording the
//! change ids it writes so that partial progress can be reported.

mod dn;
mod encode;
mod input;
mod modify;
mod planner;
mod scope;
#[cfg(test)]
mod tests;

use uuid::Uuid;

use crate::model::{ConnectedSystemExportErrorType, PendingExportChangeType};

pub use dn::{Ava, Dn, DnError, Rdn, build_rdn, dn_key, escape_value, same_text_ignoring_case};
pub use encode::{
    encode_value, guid_from_microsoft_bytes, guid_to_microsoft_bytes, protected_default,
};
pub use input::{PlanInput, container_chain, member_attribute, requires_placeholder};
pub use planner::Planner;
pub use scope::ManagedScope;

/// The kind of one LDAP modification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModKind {
    /// Add values.
    Add,
    /// Delete the given values (or the whole attribute when there are none).
    Delete,
    /// Replace all values (clear the attribute when there are none).
    Replace,
}

/// One modification of one attribute within a Modify request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modification {
    /// add, delete or replace.
    pub kind: ModKind,
    /// The attribute name as staged.
    pub attribute: String,
    /// The encoded values, without duplicates.
    pub values: Vec<Vec<u8>>,
    /// True when this modification adds or removes the group placeholder member rather than a
    /// staged value.
    pub placeholder: bool,
}

/// One attribute of an Add request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute name as staged.
    pub name: String,
    /// The encoded values, without duplicates.
    pub values: Vec<Vec<u8>>,
}

impl Attribute {
    /// An attribute with text values.
    pub fn text(name: impl Into<String>, values: &[&str]) -> Self {
        Self {
            name: name.into(),
            values: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
        }
    }
}

/// Why a Modify is sent; decides how its result codes read (see the directory's classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModifyPurpose {
    /// The staged changes of an Update.
    Update,
    /// Values of a Create beyond the modify batch size, added after the Add.
    Overflow,
    /// A disable (`Delete Behaviour = Disable` with an attribute other than `userAccountControl`):
    /// a missing entry counts as done.
    Disable,
    /// Removing the placeholder member once real members are there: a placeholder that is already
    /// gone counts as done.
    RemovePlaceholder,
}

/// A parent container to make sure of before a Create or a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The container's DN, exactly as it appears in the staged DN.
    pub dn: String,
    /// The structural class to create it with (`organizationalUnit` for `OU=`; for `CN=`,
    /// `container` on AD and Samba, `nsContainer` on 389-ds, `organizationalRole` elsewhere).
    pub object_class: String,
    /// The naming attributes with their unescaped values.
    pub attributes: Vec<Attribute>,
}

/// One LDAP operation of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Make sure a parent container exists: read it, add it when missing. Each container is created
    /// once per run, across all exports; an existing one (or a concurrent 68) counts as created.
    EnsureContainer(ContainerSpec),
    /// Add the entry.
    Add {
        /// The new entry's DN, exactly as staged.
        dn: String,
        /// objectClass first, then the staged attributes (at most the modify batch size of values
        /// each).
        attributes: Vec<Attribute>,
        /// True when the placeholder member was injected.
        placeholder: bool,
    },
    /// Modify the entry.
    Modify {
        /// The entry's DN (the new one after a rename).
        dn: String,
        /// The modifications, in order.
        modifications: Vec<Modification>,
        /// Why it is sent.
        purpose: ModifyPurpose,
    },
    /// Rename and/or move the entry. As in JIM, `new_superior` is always given and the old RDN
    /// value is deleted (`ldap-export.md` §11.15).
    ModifyDn {
        /// The current DN.
        dn: String,
        /// The new leaf RDN, exactly as staged.
        new_rdn: String,
        /// True: the old RDN value is removed.
        delete_old_rdn: bool,
        /// The new parent, exactly as staged (`None` only for a single-RDN DN).
        new_superior: Option<String>,
        /// The full new DN.
        new_dn: String,
    },
    /// Delete the entry; a missing entry counts as deleted.
    Delete {
        /// The entry's DN.
        dn: String,
    },
    /// Disable an AD account: read `userAccountControl`, set bit 0x2, write it back when it changed.
    /// A missing entry counts as done.
    DisableAccount {
        /// The entry's DN.
        dn: String,
    },
}

impl Operation {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::EnsureContainer(_) => "ensure_container",
            Operation::Add { .. } => "add",
            Operation::Modify { .. } => "modify",
            Operation::ModifyDn { .. } => "modify_dn",
            Operation::Delete { .. } => "delete",
            Operation::DisableAccount { .. } => "disable_account",
        }
    }

    /// True when the operation carries the group placeholder member (an Add that injected it, or a
    /// Modify adding or removing it).
    pub fn carries_placeholder(&self) -> bool {
        match self {
            Operation::Add { placeholder, .. } => *placeholder,
            Operation::Modify { modifications, .. } => modifications.iter().any(|m| m.placeholder),
            _ => false,
        }
    }
}

/// One step of a plan: an operation and the ids of the attribute changes it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    /// The operation.
    pub operation: Operation,
    /// The `PendingExportAttributeValueChanges` ids this operation writes.
    pub change_ids: Vec<Uuid>,
}

/// How the anchor read back after a Create is turned into JIM's external id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorEncoding {
    /// 16 raw bytes in Microsoft byte order (AD's `objectGUID`), given as a lower-case hyphenated
    /// GUID. Always read as bytes, never as text (`ldap-export.md` §11.9).
    MicrosoftGuid,
    /// A text value, trimmed (e.g. OpenLDAP's `entryUUID`).
    Text,
    /// The anchor is the DN itself; nothing to read.
    Dn,
}

/// The anchor attribute to read back after a Create (the attribute JIM flags `IsExternalId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorRead {
    /// The attribute name.
    pub attribute: String,
    /// How its value becomes the external id.
    pub encoding: AnchorEncoding,
}

/// The object's primary anchor as JIM holds it (the CSO's external id), with how the directory
/// returns it: a re-attempted rename, delete or disable checks that the entry it finds is this object
/// before acting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAnchor {
    /// The anchor attribute and its encoding.
    pub read: AnchorRead,
    /// The value, as [`crate::model::ValueSlots::reference_string`] renders it.
    pub value: String,
}

impl KnownAnchor {
    /// True when `other` (read from an entry) is this anchor.
    pub fn matches(&self, other: &str) -> bool {
        same_text_ignoring_case(self.value.trim(), other.trim())
    }
}

/// A value the engine writes instead of the staged one (JIM's protected defaults: clearing
/// `accountExpires` writes "never expires"), so the caller can expect it at confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSubstitution {
    /// The change whose value was replaced.
    pub change_id: Uuid,
    /// The attribute.
    pub attribute: String,
    /// The value written.
    pub value: String,
}

/// The planned LDAP work for one pending export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPlan {
    /// The pending export's id.
    pub export_id: Uuid,
    /// Create, Update or Delete.
    pub change_type: PendingExportChangeType,
    /// The entry's DN once the plan has run (the new DN of a Create or a rename).
    pub dn: String,
    /// The DN before a rename (Update with a DN change), else `None`.
    pub previous_dn: Option<String>,
    /// The steps, to run strictly in order.
    pub steps: Vec<PlannedStep>,
    /// For a Create: the anchor to read back.
    pub anchor: Option<AnchorRead>,
    /// For an Update or a Delete of an object JIM knows the anchor of: that anchor.
    pub known_anchor: Option<KnownAnchor>,
    /// Writable changes that need no LDAP write of their own (the DN when not renamed, the leaf RDN
    /// attribute, a Remove or Add without a value, an attribute with no definition): done when the
    /// export succeeds.
    pub unsent_change_ids: Vec<Uuid>,
    /// Values written instead of the staged ones.
    pub substitutions: Vec<ValueSubstitution>,
    /// Things the caller should log (skipped values and why).
    pub warnings: Vec<String>,
}

impl ExportPlan {
    /// The number of operations the plan sends at most (a container step counts as one).
    pub fn operation_count(&self) -> usize {
        self.steps.len()
    }

    /// True when the plan needs no LDAP call (e.g. an Update whose only change is already there).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Every change id the plan accounts for (written by a step or needing no write).
    pub fn all_change_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.steps
            .iter()
            .flat_map(|s| s.change_ids.iter().copied())
            .chain(self.unsent_change_ids.iter().copied())
    }
}

/// Why an export cannot be planned; it becomes the export's failure without any LDAP call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanFailure {
    /// JIM's error type (`OutsideManagedScope`, `InvalidGeneratedExternalId` or `General`).
    pub error_type: ConnectedSystemExportErrorType,
    /// A message naming the export's DN and the problem.
    pub message: String,
}

impl PlanFailure {
    fn general(message: impl Into<String>) -> Self {
        Self {
            error_type: ConnectedSystemExportErrorType::General,
            message: message.into(),
        }
    }

    fn invalid_dn(message: impl Into<String>) -> Self {
        Self {
            error_type: ConnectedSystemExportErrorType::InvalidGeneratedExternalId,
            message: message.into(),
        }
    }

    fn outside_scope(message: impl Into<String>) -> Self {
        Self {
            error_type: ConnectedSystemExportErrorType::OutsideManagedScope,
            message: message.into(),
        }
    }
}
