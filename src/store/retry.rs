//! Riding out a database that goes away for a while: which errors are worth another try, and the
//! loop that tries again with backoff for a bounded time.
//!
//! Every statement the store sends is bounded twice: by PostgreSQL's `statement_timeout` (set on each
//! session, see `super::session`), and by a client-side deadline a little longer, which also covers a
//! server that stopped answering altogether (a frozen or unplugged host, where the server-side timeout
//! never fires). A statement that fails for a reason that passes (the connection was lost or refused,
//! the server is shutting down or starting, a deadline passed, a serialization failure) is sent again
//! after 100 ms, then 200 ms, doubling up to 5 s, until the retry window (`retry_window_ms`) has passed
//! since the first failure; then the error is returned, naming what was being done and for how long it
//! failed. Errors that repeat whatever the timing (bad SQL, a constraint) are returned at once.
//!
//! Every statement the store retries is safe to send twice: claims mark rows with the run's id, so a
//! claim whose answer was lost is undone before the next try (`sql::RELEASE_UNHELD`); renewals,
//! persists and releases only touch rows still `Executing` under the run's mark, so a second copy of
//! one that already committed changes nothing (and a persist reads back what the first copy wrote).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::config::{DEFAULT_RETRY_WINDOW_MS, DEFAULT_STATEMENT_TIMEOUT_MS, EffectiveDatabase};
use crate::error::{Error, Result};

/// The first retry's delay; it doubles per retry up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long the store keeps trying, and how long one statement may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long after the first failure a statement is still tried again.
    pub window: Duration,
    /// The client-side deadline of one statement (the server's `statement_timeout` plus a margin).
    pub deadline: Duration,
    /// Errors carry the server's DETAIL (Npgsql's `Include Error Detail`).
    pub include_error_detail: bool,
}

/// The client-side deadline of a statement beyond the server's `statement_timeout`.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

impl RetryPolicy {
    /// The policy of a database configuration's settings in effect.
    pub fn for_database(settings: &EffectiveDatabase) -> Self {
        Self {
            window: settings.retry_window,
            deadline: settings.statement_timeout + DEADLINE_MARGIN,
            include_error_detail: settings.include_error_detail,
        }
    }
}

impl Default for RetryPolicy {
    /// The policy of a configuration with every default (for stores built over a test pool).
    fn default() -> Self {
        Self {
            window: Duration::from_millis(DEFAULT_RETRY_WINDOW_MS),
            deadline: Duration::from_millis(DEFAULT_STATEMENT_TIMEOUT_MS) + DEADLINE_MARGIN,
            include_error_detail: false,
        }
    }
}

/// One try's failure.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The statement failed with this error.
    Sql(sqlx::Error),
    /// No answer within the client-side deadline.
    Deadline(Duration),
}

impl Failure {
    /// True when trying again later can succeed.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Failure::Deadline(_) => true,
            Failure::Sql(e) => is_transient(e),
        }
    }

    /// The crate error for this failure.
    pub(crate) fn into_error(self) -> Error {
        self.into_error_with(false)
    }

    /// The crate error for this failure, with the server's DETAIL when `detail` is set.
    pub(crate) fn into_error_with(self, detail: bool) -> Error {
        match self {
            Failure::Sql(sqlx::Error::Database(db)) if detail => {
                let extra = db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| pg.detail())
                    .map(|d| format!(" (detail: {d})"))
                    .unwrap_or_default();
                Error::Database(format!("{db}{extra}"))
            }
            Failure::Sql(e) => Error::from(e),
            Failure::Deadline(d) => Error::Database(format!(
                "no answer from PostgreSQL within {} ms",
                d.as_millis()
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Failure::Sql(e) => e.to_string(),
            Failure::Deadline(d) => format!("no answer within {} ms", d.as_millis()),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Sql(e)
    }
}

/// True for errors that come from the connection or the server's state rather than from the statement:
/// worth sending the statement again once the database is back.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs of a server that is going away, starting, overloaded or breaking a tie: class 08
/// (connection exception), 57P01-57P05 (admin/crash shutdown, cannot connect now, idle session
/// timeout), 57014 (statement timeout or cancel), 53300 (too many connections), 40001 and 40P01
/// (serialization failure, deadlock).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("57P")
        || matches!(code, "57014" | "53300" | "53400" | "40001" | "40P01")
}

/// The delay before retry `n` (1-based).
pub(crate) fn backoff(n: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// Runs `op` once within the policy's deadline.
pub(crate) async fn attempt<T, Fut>(policy: RetryPolicy, op: Fut) -> Result<T, Failure>
where
    Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
{
    match tokio::time::timeout(policy.deadline, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Sql(e)),
        Err(_) => Err(Failure::Deadline(policy.deadline)),
    }
}

/// Runs `op` until it succeeds, fails for a reason that does not pass, or keeps failing for longer
/// than the policy's window. `before_retry` runs before each further try (e.g. to undo what a try whose
/// answer was lost may have done); its own failures count like the statement's. `what` names the
/// statement in logs and in the final error.
pub(crate) async fn with_retries<T, Op, Fut, Undo, UndoFut>(
    policy: RetryPolicy,
    what: &str,
    mut op: Op,
    mut before_retry: Undo,
) -> Result<T>
where
    Op: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    Undo: FnMut() -> UndoFut,
    UndoFut: Future<Output = std::result::Result<(), sqlx::Error>>,
{
    let mut first_failure: Option<Instant> = None;
    let mut tries = 0u32;
    loop {
        let outcome = match first_failure {
            Some(_) => match attempt(policy, before_retry()).await {
                Ok(()) => attempt(policy, op()).await,
                Err(e) => Err(e),
            },
            None => attempt(policy, op()).await,
        };
        let failure = match outcome {
            Ok(v) => {
                if tries > 0 {
                    tracing::info!(what, tries, "the database answers again");
                }
                return Ok(v);
            }
            Err(f) => f,
        };
        if !failure.is_transient() {
            return Err(failure.into_error_with(policy.include_error_detail));
        }
        let since = *first_failure.get_or_insert_with(Instant::now);
        tries += 1;
        if since.elapsed() >= policy.window {
            return Err(Error::DatabaseUnavailable(format!(
                "{what} failed: PostgreSQL did not answer for {} s ({} tries; last: {})",
                since.elapsed().as_secs(),
                tries,
                failure.describe()
            )));
        }
        let delay = backoff(tries);
        tracing::warn!(what, tries, delay_ms = delay.as_millis() as u64, error = %failure.describe(), "the database did not answer; trying again");
        tokio::time::sleep(delay).await;
    }
}

/// No undo step.
pub(crate) async fn nothing() -> std::result::Result<(), sqlx::Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn the_policy_follows_the_settings_in_effect_and_defaults_to_the_configurations() {
        let cfg = crate::config::DatabaseConfig::new(
            "Host=h;Command Timeout=45;Include Error Detail=true",
        );
        let policy = RetryPolicy::for_database(&cfg.effective().unwrap());
        assert_eq!(policy.deadline, Duration::from_secs(45) + DEADLINE_MARGIN);
        assert_eq!(policy.window, Duration::from_secs(120));
        assert!(policy.include_error_detail);
        let defaults = crate::config::DatabaseConfig::new("postgres://jim@h/jim");
        assert_eq!(
            RetryPolicy::default(),
            RetryPolicy::for_database(&defaults.effective().unwrap())
        );
    }

    #[test]
    fn backoff_doubles_to_five_seconds() {
        let ms: Vec<u128> = (1..=8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn connection_and_shutdown_errors_are_transient_and_statement_errors_are_not() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_transient(&sqlx::Error::PoolClosed));
        for code in [
            "08006", "08001", "57P01", "57P03", "57014", "40001", "40P01",
        ] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
    }

    fn policy(window_ms: u64) -> RetryPolicy {
        RetryPolicy {
            window: Duration::from_millis(window_ms),
            deadline: Duration::from_millis(200),
            include_error_detail: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_retried_after_undoing_and_then_succeeds() {
        let tries = AtomicU32::new(0);
        let undone = AtomicU32::new(0);
        let v = with_retries(
            policy(10_000),
            "test",
            || async {
                match tries.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(sqlx::Error::PoolTimedOut),
                    // No answer at all: the client deadline ends the try.
                    1 => std::future::pending().await,
                    _ => Ok(7),
                }
            },
            || async {
                undone.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 7);
        assert_eq!(tries.load(Ordering::SeqCst), 3);
        assert_eq!(undone.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_window_the_error_says_for_how_long() {
        let err = with_retries(
            policy(1_000),
            "persisting a flush",
            || async { Err::<(), _>(sqlx::Error::PoolTimedOut) },
            nothing,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::DatabaseUnavailable(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("persisting a flush failed"), "{text}");
        assert!(text.contains("did not answer"), "{text}");
    }

    #[tokio::test]
    async fn a_statement_error_is_returned_at_once() {
        let tries = AtomicU32::new(0);
        let err = with_retries(
            policy(10_000),
            "test",
            || async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(sqlx::Error::RowNotFound)
            },
            nothing,
        )
        .await
        .unwrap_err();
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        assert!(matches!(err, Error::Database(_)));
    }
}
