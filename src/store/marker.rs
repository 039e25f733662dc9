//! The engine's mark on a pending export: the lease its claimer took and the fact that an attempt may
//! have reached the directory, kept in `"PendingExports"."LastErrorStackTrace"`.
//!
//! Why that column: JIM's calls-based export path (the one its LDAP connector uses, and the one this
//! engine replaces) never writes it (`export-semantics.md` §2.7: "calls path never passes one"), and
//! JIM's other writers (the confirming import, sync merging new changes into a row) carry it over
//! unchanged. So the mark needs no table, trigger or migration, costs no extra row write (the claim,
//! persist and release statements update the row anyway), and is atomic with the status it goes with.
//! It survives every way a row can take back to the queue: a release (cancel, shutdown, the
//! directory-gone breaker) restores the pre-claim mark for rows the directory never saw and keeps it
//! for the others; a deferral restores it; a failure keeps it; the operator's `release_stranded` and
//! `reset_failed` leave the column alone; a crash leaves the claim's mark in place.
//!
//! The text reads, for a row claimed with a 900 s lease whose first attempt was claimed at that
//! instant, by the run (the [`crate::store::ExportQueue`]) with that id:
//!
//! ```text
//! jim-export: lease 900 s; may have reached the directory since 2026-12-06T05:19:20.123456Z; run 0b5d4f0e-…
//! ```
//!
//! - **run**: the claiming run. While the row is `Executing`, its exact mark is the run's lease token:
//!   renewals, persists and releases only touch a row still `Executing` with the mark the run wrote,
//!   so a row another engine claimed again (writing its own mark) is never overwritten, and a
//!   statement whose answer was lost can simply be sent again.
//! - **lease**: the lease the row's current (or last) claimer took. A row left `Executing` is eligible
//!   again only once *that* lease has passed since its `LastAttemptedAt`, whatever lease the reclaimer
//!   runs with.
//! - **since**: the claim time of the first attempt that may have written to the directory. The claim
//!   statement writes it (keeping an earlier one), which over-approximates "reached" by the rows of a
//!   claim the run never sent; a release or a deferral of such rows restores what was there before, so
//!   the mark means "some attempt since then may have written to the directory". An export whose row
//!   carries it is a re-attempt: a Create that meets an existing entry judges that entry's evidence
//!   (created at or after `since`, the values this export sends, its anchor held by no other CSO)
//!   before adopting it, instead of failing as a first attempt does.
//!
//! Success clears the mark (restoring what the column held before the claim, JIM's value).

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// The start of every mark; the SQL recognises marks by it.
pub(crate) const PREFIX: &str = "jim-export: lease ";

/// Between the lease and the time.
const MIDDLE: &str = " s; may have reached the directory since ";

/// Before the run id.
const RUN: &str = "; run ";

/// A parsed mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// The lease its claimer took, in seconds.
    pub lease_seconds: u64,
    /// The claim time of the first attempt that may have reached the directory.
    pub since: DateTime<Utc>,
    /// The run that claimed the row last.
    pub run: Option<Uuid>,
}

impl Marker {
    /// Reads a mark; `None` for anything else (NULL, a stack trace JIM's file path stored).
    pub fn parse(text: &str) -> Option<Marker> {
        let rest = text.strip_prefix(PREFIX)?;
        let (lease, rest) = rest.split_once(MIDDLE)?;
        let (since, run) = match rest.split_once(RUN) {
            Some((since, run)) => (since, Some(Uuid::parse_str(run.trim()).ok()?)),
            None => (rest, None),
        };
        Some(Marker {
            lease_seconds: lease.parse().ok()?,
            since: DateTime::parse_from_rfc3339(since.trim())
                .ok()?
                .with_timezone(&Utc),
            run,
        })
    }

    /// The text stored in the column.
    pub fn render(&self) -> String {
        let mut text = format!(
            "{PREFIX}{}{MIDDLE}{}",
            self.lease_seconds,
            self.since.to_rfc3339_opts(SecondsFormat::Micros, true)
        );
        if let Some(run) = self.run {
            text.push_str(RUN);
            text.push_str(&run.to_string());
        }
        text
    }
}

/// The `LIKE` pattern matching every mark written by `run`.
pub(crate) fn run_pattern(run: Uuid) -> String {
    format!("{PREFIX}%{RUN}{run}")
}

/// True when `text` is one of the engine's marks.
pub fn is_marker(text: Option<&str>) -> bool {
    text.is_some_and(|t| Marker::parse(t).is_some())
}

/// The SQL expression for the lease recorded in `"LastErrorStackTrace"` of the row aliased `$alias`,
/// in seconds as float8, or NULL when the row carries no mark.
macro_rules! marker_lease {
    ($alias:literal) => {
        concat!(
            "substring(",
            $alias,
            r#"."LastErrorStackTrace" from '^jim-export: lease ([0-9]{1,9}) s; ')::float8"#
        )
    };
}
pub(crate) use marker_lease;

/// The SQL expression for the mark a claim writes on the row aliased `$alias` (its values before the
/// claim): the lease bound as `$lease` (seconds), the first attempt's time (the row's earlier mark's;
/// for a row left `Executing` without a mark, its `LastAttemptedAt`; else now), and the run id bound
/// as `$run`.
macro_rules! marker_on_claim {
    ($alias:literal, $lease:literal, $run:literal) => {
        concat!(
            r#"'jim-export: lease ' || round("#,
            $lease,
            r#"::float8)::int8 || ' s; may have reached the directory since ' || COALESCE(substring("#,
            $alias,
            r#"."LastErrorStackTrace" from '^jim-export: lease [0-9]+ s; may have reached the directory since ([0-9T:.+Z-]+)'), CASE WHEN "#,
            $alias,
            r#"."Status" = 2 THEN to_char("#,
            $alias,
            r#"."LastAttemptedAt" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) || '; run ' || "#,
            $run,
            "::uuid::text"
        )
    };
}
pub(crate) use marker_on_claim;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_mark_reads_back_what_was_written() {
        let run = Uuid::parse_str("0b5d4f0e-7c1a-4e8e-9a51-2f7c5d1e9b00").unwrap();
        let m = Marker {
            lease_seconds: 900,
            since: Utc.with_ymd_and_hms(2026, 12, 6, 5, 19, 20).unwrap()
                + chrono::Duration::microseconds(123_456),
            run: Some(run),
        };
        let text = m.render();
        assert_eq!(
            text,
            "jim-export: lease 900 s; may have reached the directory since 2026-12-06T05:19:20.123456Z; \
             run 0b5d4f0e-7c1a-4e8e-9a51-2f7c5d1e9b00"
        );
        assert_eq!(Marker::parse(&text), Some(m));
        assert!(is_marker(Some(&text)));
        let pattern = run_pattern(run);
        assert!(pattern.starts_with(PREFIX) && pattern.ends_with(&run.to_string()));
        let bare = Marker { run: None, ..m };
        assert_eq!(Marker::parse(&bare.render()), Some(bare));
    }

    #[test]
    fn anything_else_is_not_a_mark() {
        for text in [
            "",
            "   at JIM.Connectors.LDAP.LdapConnector.Export()",
            "jim-export: lease x s; may have reached the directory since 2026-12-06T05:19:20Z",
            "jim-export: lease 900 s; may have reached the directory since yesterday",
        ] {
            assert_eq!(Marker::parse(text), None, "{text}");
        }
        assert!(!is_marker(None));
    }

    /// The SQL's regular expressions must agree with [`Marker::render`].
    #[test]
    fn the_sql_recognises_the_rendered_form() {
        let lease = marker_lease!("pe");
        assert!(lease.contains("^jim-export: lease ([0-9]{1,9}) s; "));
        assert!(
            Marker::render(&Marker {
                lease_seconds: 10,
                since: Utc::now(),
                run: None,
            })
            .starts_with("jim-export: lease 10 s; ")
        );
        let claim = marker_on_claim!("p", "$3", "$5");
        assert!(claim.contains("' s; may have reached the directory since '"));
        assert!(claim.contains(MIDDLE.trim_end()));
    }
}
