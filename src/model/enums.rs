//! JIM's enums, with the exact integer values JIM stores in PostgreSQL.
//!
//! Every enum is stored as `integer` (`../shared/jim/schema.md` §1.3, §3). Several of JIM's enums take
//! implicit (positional) values in C#, so the numbers below are part of the database contract and must
//! never be renumbered. Reading an unknown number is an [`UnknownEnumValue`] error, never a panic.

use serde::{Deserialize, Serialize};

/// A number read from the database (or a request) that is not a value of the named JIM enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value} is not a known {enum_name} value")]
pub struct UnknownEnumValue {
    /// The JIM enum, e.g. `PendingExportStatus`.
    pub enum_name: &'static str,
    /// The number that was read.
    pub value: i32,
}

/// Declares a JIM enum with explicit values, its conversions to and from `i32`, and its list of values.
/// (The values are `tt`, not `literal`: UniFFI's derive needs to see the bare literal token.)
/// With the `uniffi` feature it is also a UniFFI enum whose `.value` (Python, Kotlin) is JIM's number.
macro_rules! jim_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $value:tt ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
        #[repr(i32)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value ),+
        }

        impl $name {
            /// Every value of this enum, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The integer JIM stores for this value.
            pub const fn as_i32(self) -> i32 {
                self as i32
            }

            /// The value JIM stores as `value`, or an error naming the enum and the number.
            pub const fn from_i32(value: i32) -> Result<Self, UnknownEnumValue> {
                match value {
                    $( $value => Ok($name::$variant), )+
                    _ => Err(UnknownEnumValue { enum_name: stringify!($name), value }),
                }
            }

            /// The C# member name of this value.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => stringify!($variant), )+
                }
            }
        }

        impl TryFrom<i32> for $name {
            type Error = UnknownEnumValue;
            fn try_from(value: i32) -> Result<Self, UnknownEnumValue> {
                Self::from_i32(value)
            }
        }

        impl From<$name> for i32 {
            fn from(value: $name) -> i32 {
                value.as_i32()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

jim_enum! {
    /// `PendingExports.ChangeType` (`PendingExportChangeType`).
    PendingExportChangeType { Create = 0, Update = 1, Delete = 2 }
}

jim_enum! {
    /// `PendingExports.Status` (`PendingExportStatus`).
    PendingExportStatus { Pending = 0, ExportNotConfirmed = 1, Executing = 2, Failed = 3, Exported = 4 }
}

jim_enum! {
    /// `PendingExportAttributeValueChanges.ChangeType` (`PendingExportAttributeChangeType`).
    PendingExportAttributeChangeType {
        /// Add one value to a multi-valued attribute (LDAP `add`).
        Add = 0,
        /// Set a single-valued attribute (LDAP `replace`); all value slots NULL means clear.
        Update = 1,
        /// Remove one value (LDAP `delete` of that value).
        Remove = 2,
        /// Clear the whole attribute (LDAP `replace` with no values).
        RemoveAll = 3,
    }
}

jim_enum! {
    /// `PendingExportAttributeValueChanges.Status` (`PendingExportAttributeChangeStatus`).
    PendingExportAttributeChangeStatus {
        Pending = 0,
        ExportedPendingConfirmation = 1,
        ExportedNotConfirmed = 2,
        Failed = 3,
    }
}

jim_enum! {
    /// `ConnectedSystemObjects.Status` (`ConnectedSystemObjectStatus`).
    ConnectedSystemObjectStatus { Normal = 0, Obsolete = 1, PendingProvisioning = 2 }
}

jim_enum! {
    /// `ConnectedSystemObjects.JoinType` (`ConnectedSystemObjectJoinType`).
    ConnectedSystemObjectJoinType { NotJoined = 0, Projected = 1, Provisioned = 2, Joined = 3 }
}

jim_enum! {
    /// `ConnectedSystemAttributes.Type` (`AttributeDataType`): which typed slot holds a value.
    AttributeDataType {
        NotSet = 0,
        Text = 1,
        Number = 2,
        DateTime = 3,
        Binary = 4,
        Reference = 5,
        Guid = 6,
        Boolean = 7,
        LongNumber = 8,
        Decimal = 9,
    }
}

jim_enum! {
    /// `ConnectedSystemAttributes.AttributePlurality`.
    AttributePlurality { SingleValued = 0, MultiValued = 1 }
}

jim_enum! {
    /// `ConnectedSystemAttributes.Writability` (`AttributeWritability`).
    AttributeWritability { Writable = 0, ReadOnly = 1, WritableOnCreate = 2 }
}

jim_enum! {
    /// `ConnectedSystems.Status` (`ConnectedSystemStatus`).
    ConnectedSystemStatus { Active = 0, Disabled = 1, Deleting = 2 }
}

jim_enum! {
    /// `ConnectedSystems.UnresolvedReferenceHandling`: what an unresolvable reference produces.
    UnresolvedReferenceHandling { Error = 0, Warn = 1, Ignore = 2 }
}

jim_enum! {
    /// `ConnectedSystemContainers.Scope` (`ConnectedSystemContainerScope`).
    ConnectedSystemContainerScope { Subtree = 0, OneLevel = 1 }
}

jim_enum! {
    /// `ConnectorDefinitionSettings.Type` (`ConnectedSystemSettingType`).
    ConnectedSystemSettingType {
        String = 0,
        StringEncrypted = 1,
        Integer = 2,
        Heading = 3,
        Label = 4,
        Text = 5,
        DropDown = 6,
        CheckBox = 7,
        Divider = 8,
        File = 9,
    }
}

jim_enum! {
    /// `ConnectorDefinitionSettings.Category` (`ConnectedSystemSettingCategory`).
    ConnectedSystemSettingCategory {
        Connectivity = 0,
        General = 1,
        Capabilities = 2,
        Schema = 3,
        Import = 4,
        Export = 5,
    }
}

jim_enum! {
    /// `ConnectedSystemRunProfiles.RunType` and `Activities.ConnectedSystemRunType`.
    ConnectedSystemRunType {
        NotSet = 0,
        FullImport = 1,
        DeltaImport = 2,
        FullSynchronisation = 3,
        DeltaSynchronisation = 4,
        Export = 5,
    }
}

jim_enum! {
    /// `MetaverseObjects.Status` (`MetaverseObjectStatus`).
    MetaverseObjectStatus { Normal = 0, Obsolete = 1 }
}

jim_enum! {
    /// `MetaverseObjects.Origin` (`MetaverseObjectOrigin`).
    MetaverseObjectOrigin { Projected = 0, Internal = 1 }
}

jim_enum! {
    /// What a connector reports as the kind of a failed export (`ConnectedSystemExportErrorType`; not
    /// persisted by JIM, but carried in the per-export report so the host can build its run history).
    ConnectedSystemExportErrorType {
        General = 0,
        InvalidGeneratedExternalId = 1,
        OutsideManagedScope = 2,
        PlaceholderMemberConstraintViolation = 3,
        MissingDependency = 4,
        ConcurrencyConflict = 5,
    }
}

jim_enum! {
    /// Why a reference is not yet written (`UnresolvedReferenceReason`, JIM's UI/DTO enum).
    UnresolvedReferenceReason { Resolvable = 0, AwaitingAnchor = 1, NotInTargetSystem = 2 }
}

jim_enum! {
    /// The phase a progress report describes (`ExportPhase`).
    ExportPhase { Preparing = 0, Executing = 1, ResolvingReferences = 2, Completed = 3 }
}

jim_enum! {
    /// `ActivityRunProfileExecutionItems.ObjectChangeType` (`ObjectChangeType`); export writes
    /// `Exported`, `Deprovisioned` and `PendingExport`.
    ObjectChangeType {
        NotSet = 0,
        Added = 1,
        Updated = 2,
        Deleted = 3,
        Projected = 4,
        Joined = 5,
        AttributeFlow = 6,
        Disconnected = 7,
        DisconnectedOutOfScope = 8,
        OutOfScopeRetainJoin = 9,
        DriftCorrection = 10,
        Exported = 11,
        Deprovisioned = 12,
        NoChange = 13,
        PendingExport = 14,
        PendingExportConfirmed = 15,
        Created = 16,
    }
}

jim_enum! {
    /// `ActivityRunProfileExecutionItems.ErrorType`; export uses `UnresolvedReference`,
    /// `InvalidGeneratedExternalId` and `UnhandledError`.
    ActivityRunProfileExecutionItemErrorType {
        NotSet = 0,
        AmbiguousMatch = 1,
        CouldNotMatchObjectType = 2,
        CouldNotJoinDueToExistingJoin = 3,
        DuplicateImportedAttributes = 4,
        MissingExternalIdAttributeValue = 5,
        UnexpectedAttribute = 6,
        UnresolvedReference = 7,
        UnsupportedExternalIdAttributeType = 8,
        ExportNotConfirmed = 9,
        ExportConfirmationFailed = 10,
        CsoCreationFailed = 11,
        DuplicateObject = 12,
        InvalidGeneratedExternalId = 13,
        UnhandledError = 14,
        ExpressionEvaluationError = 15,
        ExpressionMissingInput = 16,
        MultiValuedToSingleValued = 17,
        DeltaImportFallbackToFullImport = 18,
        ImportHashVerificationFailed = 19,
        ImportAttributeValueError = 20,
        ConnectorConfigurationError = 21,
        CouldNotExportDueToExistingConnectedSystemObject = 22,
    }
}

impl ConnectedSystemExportErrorType {
    /// The run-history error type JIM's worker records for a failed export of this kind
    /// (`InvalidGeneratedExternalId` maps to 13, everything else to 14; schema.md §3).
    pub const fn run_history_error_type(self) -> ActivityRunProfileExecutionItemErrorType {
        match self {
            Self::InvalidGeneratedExternalId => {
                ActivityRunProfileExecutionItemErrorType::InvalidGeneratedExternalId
            }
            _ => ActivityRunProfileExecutionItemErrorType::UnhandledError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JIM's numbers, one table for the whole crate (`jim_enums.txt`): enum name to (number,
    /// member) pairs in declaration order.
    fn jim_table() -> std::collections::BTreeMap<&'static str, Vec<(i32, &'static str)>> {
        crate::model::JIM_ENUM_TABLE
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (name, values) = l.split_once(':').expect("`Name: values`");
                let values = values
                    .split(',')
                    .map(|v| {
                        let (n, member) = v.trim().split_once(' ').expect("`number Member`");
                        (n.parse().expect("a number"), member)
                    })
                    .collect();
                (name.trim(), values)
            })
            .collect()
    }

    /// An enum's values as (number, member) pairs, checked to convert to their number and back.
    macro_rules! rows {
        ($name:ident) => {{
            let rows: Vec<(i32, &'static str)> = $name::ALL
                .iter()
                .map(|v| {
                    assert_eq!($name::from_i32(v.as_i32()), Ok(*v));
                    assert_eq!($name::try_from(i32::from(*v)), Ok(*v));
                    let json = serde_json::to_string(v).unwrap();
                    assert_eq!(serde_json::from_str::<$name>(&json).unwrap(), *v);
                    (v.as_i32(), v.name())
                })
                .collect();
            (stringify!($name), rows)
        }};
    }

    #[test]
    fn values_match_jims_table() {
        let table = jim_table();
        let ours = [
            rows!(PendingExportChangeType),
            rows!(PendingExportStatus),
            rows!(PendingExportAttributeChangeType),
            rows!(PendingExportAttributeChangeStatus),
            rows!(ConnectedSystemObjectStatus),
            rows!(ConnectedSystemObjectJoinType),
            rows!(AttributeDataType),
            rows!(AttributePlurality),
            rows!(AttributeWritability),
            rows!(ConnectedSystemStatus),
            rows!(UnresolvedReferenceHandling),
            rows!(ConnectedSystemContainerScope),
            rows!(ConnectedSystemSettingType),
            rows!(ConnectedSystemSettingCategory),
            rows!(ConnectedSystemRunType),
            rows!(MetaverseObjectStatus),
            rows!(MetaverseObjectOrigin),
            rows!(ConnectedSystemExportErrorType),
            rows!(UnresolvedReferenceReason),
            rows!(ExportPhase),
            rows!(ObjectChangeType),
            rows!(ActivityRunProfileExecutionItemErrorType),
        ];
        for (name, rows) in &ours {
            assert_eq!(
                Some(rows),
                table.get(name),
                "{name} differs from jim_enums.txt"
            );
        }
        assert_eq!(
            ours.len(),
            table.len(),
            "jim_enums.txt lists an enum model/enums.rs lacks"
        );
    }

    #[test]
    fn unknown_values_are_errors_naming_the_enum() {
        let err = PendingExportStatus::from_i32(7).unwrap_err();
        assert_eq!(
            err,
            UnknownEnumValue {
                enum_name: "PendingExportStatus",
                value: 7
            }
        );
        assert_eq!(
            err.to_string(),
            "7 is not a known PendingExportStatus value"
        );
        assert!(PendingExportChangeType::try_from(-1).is_err());
        assert!(AttributeDataType::from_i32(10).is_err());
    }

    #[test]
    fn run_history_error_types() {
        assert_eq!(
            ConnectedSystemExportErrorType::InvalidGeneratedExternalId.run_history_error_type(),
            ActivityRunProfileExecutionItemErrorType::InvalidGeneratedExternalId
        );
        assert_eq!(
            ConnectedSystemExportErrorType::OutsideManagedScope.run_history_error_type(),
            ActivityRunProfileExecutionItemErrorType::UnhandledError
        );
    }
}
