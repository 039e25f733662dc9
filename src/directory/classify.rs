//! The one place where an LDAP result or a transport error becomes a decision (like vector's
//! `RetryLogic`): success, an outcome that already holds, a conflict to converge, something to retry
//! within the run, or a failure of that export with JIM's error type and a clear message.

use ldap3::LdapResult;

use crate::model::ConnectedSystemExportErrorType;

/// LDAP result codes the engine acts on.
pub mod rc {
    /// success
    pub const SUCCESS: u32 = 0;
    /// noSuchAttribute
    pub const NO_SUCH_ATTRIBUTE: u32 = 16;
    /// constraintViolation
    pub const CONSTRAINT_VIOLATION: u32 = 19;
    /// attributeOrValueExists
    pub const ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;
    /// invalidAttributeSyntax
    pub const INVALID_ATTRIBUTE_SYNTAX: u32 = 21;
    /// noSuchObject
    pub const NO_SUCH_OBJECT: u32 = 32;
    /// invalidCredentials
    pub const INVALID_CREDENTIALS: u32 = 49;
    /// busy
    pub const BUSY: u32 = 51;
    /// unavailable
    pub const UNAVAILABLE: u32 = 52;
    /// unwillingToPerform
    pub const UNWILLING_TO_PERFORM: u32 = 53;
    /// entryAlreadyExists
    pub const ENTRY_ALREADY_EXISTS: u32 = 68;
    /// other
    pub const OTHER: u32 = 80;
    /// assertionFailed (RFC 4528): the entry does not match the assertion control's filter.
    pub const ASSERTION_FAILED: u32 = 122;
}

/// The name RFC 4511 gives a result code.
pub fn rc_name(code: u32) -> &'static str {
    match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        54 => "loopDetect",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        71 => "affectsMultipleDSAs",
        80 => "other",
        122 => "assertionFailed",
        _ => "unknown",
    }
}

/// JIM's `IsNoSuchObjectResult`: code 32, or a message carrying AD's `00002030`
/// (ERROR_DS_NO_SUCH_OBJECT) or `DSID-0C090CE2`, which Samba AD often reports under "other" (80).
pub fn is_no_such_object(code: Option<u32>, message: Option<&str>) -> bool {
    code == Some(rc::NO_SUCH_OBJECT)
        || message.is_some_and(|m| m.contains("00002030") || m.contains("DSID-0C090CE2"))
}

/// Samba AD's answer to a value naming a DN that does not exist (`member` on an Add or a Modify):
/// noSuchObject (32) with `00000525` ("specified dn doesn't exist"), which is not the entry missing.
pub fn names_missing_reference(text: &str) -> bool {
    text.contains("00000525")
}

/// True when a Modify's result says a value is already there or already gone, so nothing was
/// applied: attributeOrValueExists (20) and noSuchAttribute (16) everywhere, and AD's own codes for
/// linked attributes such as `member`: entryAlreadyExists (68, ERROR_MEMBER_IN_GROUP `00000562`; a
/// Modify never creates an entry, so any 68 is a value) and unwillingToPerform (53) for a member
/// that is not there (ERROR_MEMBER_NOT_IN_GROUP `00000561`, Samba: "Attribute member doesn't exist
/// for target GUID"), which is otherwise back pressure.
pub fn is_value_conflict(code: u32, text: &str) -> bool {
    match code {
        rc::ATTRIBUTE_OR_VALUE_EXISTS | rc::NO_SUCH_ATTRIBUTE | rc::ENTRY_ALREADY_EXISTS => true,
        rc::UNWILLING_TO_PERFORM => {
            text.contains("00000561") || text.contains("doesn't exist for target GUID")
        }
        _ => false,
    }
}

/// A failure below the LDAP result: the operation got no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request never left this process (the connection was already gone): safe to resend.
    #[error("not sent: {0}")]
    NotSent(String),
    /// A timeout or a connection lost after sending: the server may or may not have applied it, so
    /// the directory is read before retrying.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// No connection could be made (every URL failed).
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// The client refused to build the request (a bug or an impossible value).
    #[error("{0}")]
    Client(String),
    /// Not sent: the run's lease on the export's row is gone (see [`crate::fence`]).
    #[error("not sent: the run's lease on the row is gone ({0:?})")]
    Fenced(crate::fence::Fenced),
}

/// The kind of operation a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// An Add of the exported entry.
    Add,
    /// A Modify.
    Modify,
    /// A ModifyDN.
    ModifyDn,
    /// A Delete.
    Delete,
    /// A base-scope read.
    Search,
    /// An Add of a parent container.
    ContainerAdd,
}

impl OpKind {
    fn label(self) -> &'static str {
        match self {
            OpKind::Add => "Add",
            OpKind::Modify => "Modify",
            OpKind::ModifyDn => "ModifyDN",
            OpKind::Delete => "Delete",
            OpKind::Search => "Search",
            OpKind::ContainerAdd => "Add of container",
        }
    }
}

/// What one result means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Applied.
    Success,
    /// The entry does not exist (32, or Samba's "other" with `00002030`/`DSID-0C090CE2`). A Delete or a
    /// disable takes it as done; a read as "absent"; anything else fails with the message.
    NoSuchObject(String),
    /// The entry already exists (68): a container counts as created; an Add is adopted only on a
    /// re-attempt, else it fails with the message.
    EntryExists(String),
    /// A Modify met a value that is already there (20) or already gone (16): converge value by
    /// value, so nothing is reported done without being applied.
    ValueConflict(String),
    /// Retry within the run (busy, unavailable, unwilling, timeouts, lost connections).
    Transient {
        /// True when the server may have applied the operation (read before retrying).
        outcome_unknown: bool,
        /// True when the directory gave no answer at all (no connection, a lost connection, a
        /// timeout), rather than saying it is busy, unavailable or unwilling.
        no_answer: bool,
        /// What happened.
        message: String,
    },
    /// A failure of this export.
    Fail {
        /// JIM's error type.
        error_type: ConnectedSystemExportErrorType,
        /// The message, with the server's diagnostic text.
        message: String,
    },
    /// Not sent: the run may no longer write this export (its lease on the row is gone).
    Fenced(crate::fence::Fenced),
}

/// The context a result is read in.
#[derive(Debug, Clone, Copy)]
pub struct OpContext<'a> {
    /// The operation.
    pub kind: OpKind,
    /// The entry it targets.
    pub dn: &'a str,
    /// True when it carries the group placeholder member: a refusal is then JIM's
    /// `PlaceholderMemberConstraintViolation`, never a retry.
    pub placeholder: bool,
}

/// Builds the message for a result: operation, DN, code name and number, the server's text.
pub fn describe(ctx: &OpContext<'_>, result: &LdapResult) -> String {
    let mut m = format!(
        "{} of '{}' failed: {} ({})",
        ctx.kind.label(),
        ctx.dn,
        rc_name(result.rc),
        result.rc
    );
    let text = result.text.trim();
    if !text.is_empty() {
        m.push_str(": ");
        m.push_str(text);
    }
    if result.rc == rc::NO_SUCH_OBJECT && !result.matched.is_empty() {
        m.push_str(&format!(" (nearest existing entry: '{}')", result.matched));
    }
    m
}

/// Classifies an operation's outcome.
pub fn classify(ctx: &OpContext<'_>, outcome: &Result<LdapResult, TransportError>) -> Verdict {
    let result = match outcome {
        Ok(r) => r,
        Err(e) => return classify_transport(ctx, e),
    };
    let code = result.rc;
    if code == rc::SUCCESS {
        return Verdict::Success;
    }
    let message = describe(ctx, result);
    if code == rc::NO_SUCH_OBJECT && names_missing_reference(&result.text) {
        // The entry exists; a DN among the values does not (read as "gone" it would be retried).
        return Verdict::Fail {
            error_type: ConnectedSystemExportErrorType::General,
            message: format!("{message}. A DN among the values does not exist in the directory"),
        };
    }
    if is_no_such_object(Some(code), Some(&result.text)) {
        return Verdict::NoSuchObject(message);
    }
    if code == rc::ASSERTION_FAILED {
        // Only the identity assertion is sent (`execute::identity`).
        return Verdict::Fail {
            error_type: ConnectedSystemExportErrorType::General,
            message: format!(
                "{message}. The entry at '{}' is not this object (its anchor is not the one JIM \
                 holds): nothing was written to it, and it is left as it is",
                ctx.dn
            ),
        };
    }
    if code == rc::ENTRY_ALREADY_EXISTS && matches!(ctx.kind, OpKind::Add | OpKind::ContainerAdd) {
        return Verdict::EntryExists(message);
    }
    if ctx.kind == OpKind::Modify && is_value_conflict(code, &result.text) {
        return Verdict::ValueConflict(message);
    }
    if ctx.placeholder
        && matches!(
            code,
            rc::CONSTRAINT_VIOLATION | rc::UNWILLING_TO_PERFORM | rc::INVALID_ATTRIBUTE_SYNTAX
        )
    {
        return Verdict::Fail {
            error_type: ConnectedSystemExportErrorType::PlaceholderMemberConstraintViolation,
            message: format!(
                "{message}. The directory refused the group placeholder member; it may have \
                 referential integrity enabled: set the placeholder member DN to an existing entry"
            ),
        };
    }
    if is_back_pressure_code(code) {
        return Verdict::Transient {
            outcome_unknown: false,
            no_answer: false,
            message,
        };
    }
    Verdict::Fail {
        error_type: ConnectedSystemExportErrorType::General,
        message,
    }
}

fn classify_transport(ctx: &OpContext<'_>, e: &TransportError) -> Verdict {
    let message = format!("{} of '{}': {e}", ctx.kind.label(), ctx.dn);
    match e {
        TransportError::Fenced(why) => Verdict::Fenced(*why),
        TransportError::NotSent(_) | TransportError::Unavailable(_) => Verdict::Transient {
            outcome_unknown: false,
            no_answer: true,
            message,
        },
        TransportError::OutcomeUnknown(_) => Verdict::Transient {
            outcome_unknown: true,
            no_answer: true,
            message,
        },
        TransportError::Client(_) => Verdict::Fail {
            error_type: ConnectedSystemExportErrorType::General,
            message,
        },
    }
}

/// True for result codes by which a directory says it is overloaded or unwilling for now (busy,
/// unavailable, unwilling to perform): the in-flight limit backs off on them, and the executor
/// retries the operation in the run.
pub fn is_back_pressure_code(code: u32) -> bool {
    matches!(code, rc::BUSY | rc::UNAVAILABLE | rc::UNWILLING_TO_PERFORM)
}

/// True when a result is back pressure: a back-pressure code that is not AD's way of saying a member
/// is already gone ([`is_value_conflict`]).
pub fn is_back_pressure_result(code: u32, text: &str) -> bool {
    is_back_pressure_code(code) && !is_value_conflict(code, text)
}

/// True for verdicts that say the directory is struggling (back pressure for a concurrency limiter).
pub fn is_back_pressure(v: &Verdict) -> bool {
    matches!(v, Verdict::Transient { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: u32, text: &str) -> Result<LdapResult, TransportError> {
        Ok(LdapResult {
            rc: code,
            matched: String::new(),
            text: text.into(),
            refs: Vec::new(),
            ctrls: Vec::new(),
        })
    }

    fn ctx(kind: OpKind, placeholder: bool) -> OpContext<'static> {
        OpContext {
            kind,
            dn: "cn=x,dc=example,dc=org",
            placeholder,
        }
    }

    /// `LdapConnectorExportDeleteIdempotencyTests` (the 9 `IsNoSuchObjectResult` cases).
    #[test]
    fn no_such_object_detection() {
        assert!(is_no_such_object(Some(32), None));
        assert!(is_no_such_object(Some(32), Some("whatever")));
        assert!(is_no_such_object(
            Some(80),
            Some("0000208D: NameErr: DSID-03100288, problem 2001 (NO_OBJECT) 00002030")
        ));
        assert!(is_no_such_object(
            Some(80),
            Some("error in DSID-0C090CE2 somewhere")
        ));
        assert!(!is_no_such_object(Some(0), None));
        assert!(!is_no_such_object(Some(50), Some("Access denied")));
        assert!(is_no_such_object(None, Some("00002030: ...")));
        assert!(!is_no_such_object(None, None));
        assert!(!is_no_such_object(Some(80), Some("")));
    }

    /// What Samba AD 4.17 answers for member changes that already hold, and for a member DN that
    /// does not exist (captured from a real DC).
    #[test]
    fn ad_member_answers() {
        let m = ctx(OpKind::Modify, false);
        let exists =
            "Attribute member already exists for target GUID b212e52a-fdaa-436f-a074-3b8d39026572";
        assert!(matches!(
            classify(&m, &result(68, exists)),
            Verdict::ValueConflict(_)
        ));
        let windows = "00000562: UpdErr: DSID-031A11C4, problem 6005 (ENTRY_EXISTS), data 0";
        assert!(matches!(
            classify(&m, &result(68, windows)),
            Verdict::ValueConflict(_)
        ));
        let absent =
            "Attribute member doesn't exist for target GUID 47ee589d-ae4d-4deb-8917-034b09c037d3";
        assert!(matches!(
            classify(&m, &result(53, absent)),
            Verdict::ValueConflict(_)
        ));
        let windows = "00000561: SvcErr: DSID-031A1021, problem 5003 (WILL_NOT_PERFORM), data 0";
        assert!(matches!(
            classify(&m, &result(53, windows)),
            Verdict::ValueConflict(_)
        ));
        // Any other 53 stays back pressure; a 68 on an Add stays "the entry exists".
        assert!(matches!(
            classify(&m, &result(53, "00002035: busy elsewhere")),
            Verdict::Transient { .. }
        ));
        assert!(matches!(
            classify(&ctx(OpKind::Add, false), &result(68, exists)),
            Verdict::EntryExists(_)
        ));
        // A member DN that does not exist: the entry is there, so it is no "noSuchObject".
        let missing = "00000525: specified dn doesn't exist at ../../source4/dsdb/samdb/ldb_modules/extended_dn_store.c:160:extended_dn_handle_fpo_attr";
        for kind in [OpKind::Add, OpKind::Modify] {
            match classify(&ctx(kind, false), &result(32, missing)) {
                Verdict::Fail { message, .. } => {
                    assert!(message.contains("does not exist"), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
        // Samba's own noSuchObject for the entry itself.
        let gone = "00002030: No such Base DN: CN=Ghost,OU=probe,DC=gentian,DC=local";
        assert!(matches!(
            classify(&m, &result(32, gone)),
            Verdict::NoSuchObject(_)
        ));
    }

    /// `ExecuteAsync_HardDelete_NoSuchObjectResponse_…` and `…SambaNoSuchObjectException_…`.
    #[test]
    fn delete_of_missing_entry_reads_as_no_such_object() {
        let d = ctx(OpKind::Delete, false);
        assert!(matches!(
            classify(&d, &result(32, "")),
            Verdict::NoSuchObject(_)
        ));
        assert!(matches!(
            classify(&d, &result(80, "00002030: ... DSID-0C090CE2 ...")),
            Verdict::NoSuchObject(_)
        ));
        assert_eq!(classify(&d, &result(0, "")), Verdict::Success);
    }

    #[test]
    fn conflicts_and_existing_entries() {
        assert!(matches!(
            classify(&ctx(OpKind::Modify, false), &result(20, "value exists")),
            Verdict::ValueConflict(_)
        ));
        assert!(matches!(
            classify(&ctx(OpKind::Modify, false), &result(16, "")),
            Verdict::ValueConflict(_)
        ));
        assert!(matches!(
            classify(&ctx(OpKind::Add, false), &result(68, "")),
            Verdict::EntryExists(_)
        ));
        assert!(matches!(
            classify(&ctx(OpKind::ContainerAdd, false), &result(68, "")),
            Verdict::EntryExists(_)
        ));
        assert!(matches!(
            classify(&ctx(OpKind::ModifyDn, false), &result(68, "")),
            Verdict::Fail { .. }
        ));
    }

    #[test]
    fn transient_conditions() {
        for code in [51, 52, 53] {
            assert!(
                matches!(
                    classify(&ctx(OpKind::Modify, false), &result(code, "")),
                    Verdict::Transient {
                        outcome_unknown: false,
                        no_answer: false,
                        ..
                    }
                ),
                "{code}"
            );
        }
        let unknown = classify(
            &ctx(OpKind::Add, false),
            &Err(TransportError::OutcomeUnknown("timeout".into())),
        );
        assert!(matches!(
            unknown,
            Verdict::Transient {
                outcome_unknown: true,
                no_answer: true,
                ..
            }
        ));
        assert!(is_back_pressure(&unknown));
        assert!(matches!(
            classify(
                &ctx(OpKind::Add, false),
                &Err(TransportError::NotSent("closed".into()))
            ),
            Verdict::Transient {
                outcome_unknown: false,
                no_answer: true,
                ..
            }
        ));
    }

    /// `ProcessCreate_PlaceholderRejected_ReturnsConstraintViolationErrorAsync`,
    /// `ProcessUpdate_PlaceholderAddRejected_OnLastMemberRemoval_…`, on every path (§11.2), and a
    /// missing parent is not a placeholder problem.
    #[test]
    fn placeholder_refusals() {
        for kind in [OpKind::Add, OpKind::Modify] {
            for code in [19, 53] {
                match classify(&ctx(kind, true), &result(code, "refused")) {
                    Verdict::Fail {
                        error_type,
                        message,
                    } => {
                        assert_eq!(
                            error_type,
                            ConnectedSystemExportErrorType::PlaceholderMemberConstraintViolation
                        );
                        assert!(message.contains("placeholder"), "{message}");
                        assert!(message.contains("referential integrity"), "{message}");
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        assert!(matches!(
            classify(&ctx(OpKind::Add, true), &result(32, "")),
            Verdict::NoSuchObject(_)
        ));
        assert!(matches!(
            classify(&ctx(OpKind::Add, false), &result(19, "")),
            Verdict::Fail {
                error_type: ConnectedSystemExportErrorType::General,
                ..
            }
        ));
    }

    #[test]
    fn messages_name_the_operation_code_and_server_text() {
        let r = LdapResult {
            rc: 32,
            matched: "dc=example,dc=org".into(),
            text: "parent missing".into(),
            refs: Vec::new(),
            ctrls: Vec::new(),
        };
        let m = describe(&ctx(OpKind::Add, false), &r);
        assert_eq!(
            m,
            "Add of 'cn=x,dc=example,dc=org' failed: noSuchObject (32): parent missing (nearest existing entry: 'dc=example,dc=org')"
        );
        match classify(&ctx(OpKind::Modify, false), &result(50, "no write access")) {
            Verdict::Fail { message, .. } => assert!(
                message.contains("insufficientAccessRights (50): no write access"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
