//! Stops a run when the directory has gone away, instead of failing the rest of the queue.
//!
//! Each export rides out a short outage with its own retries. One that still fails because the
//! directory gave no answer at all (no connection, lost connections, timeouts) through every retry is
//! a sign the directory is down, not that the export is wrong. Without a breaker the run would go on
//! claiming, and every export of a 500,000-row queue would fail in turn, each one an `ErrorCount`
//! nearer to `Failed` (where only an operator brings it back). After enough such failures in a row,
//! with no answer of any kind from the directory in between, the run stops: the exports it had not
//! started keep their state, and the next run (or the next watch pass) starts afresh.

use crate::directory::{ExportResult as DirectoryResult, ExportStatus};

/// Exports in a row that fail without an answer before the run stops. Each has already been retried
/// (`max_operation_retries`, with backoff) and the exports in flight together fail at about the same
/// moment, so a handful means a sustained outage; a directory that answers anything, even an error,
/// resets the count.
pub(crate) const UNANSWERED_EXPORTS_TO_STOP: u32 = 16;

/// Counts exports that failed without an answer from the directory, in a row.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    streak: u32,
    tripped: bool,
}

impl Breaker {
    /// A breaker that trips after `threshold` unanswered failures in a row (at least one).
    pub(crate) fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            streak: 0,
            tripped: false,
        }
    }

    /// Records one export's result; returns why the run must stop the first time it must.
    pub(crate) fn record(&mut self, result: &DirectoryResult) -> Option<String> {
        let last = match &result.status {
            ExportStatus::Failed { message, .. } if result.no_answer => message,
            _ => {
                self.streak = 0;
                return None;
            }
        };
        self.streak += 1;
        if self.tripped || self.streak < self.threshold {
            return None;
        }
        self.tripped = true;
        Some(format!(
            "it stopped answering mid-run: {} exports in a row failed without an answer through \
             every retry (the last: {last}); the run stopped, and the exports it had not started are \
             left as they were for the next run",
            self.streak
        ))
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::model::ConnectedSystemExportErrorType;

    fn result(no_answer: Option<bool>) -> DirectoryResult {
        let mut r = DirectoryResult::failed(
            Uuid::nil(),
            ConnectedSystemExportErrorType::General,
            "Add of 'uid=a': directory unavailable: connection refused (gave up after 3 attempts)",
        );
        match no_answer {
            None => r.status = ExportStatus::Succeeded,
            Some(no_answer) => r.no_answer = no_answer,
        }
        r
    }

    #[test]
    fn trips_once_after_the_threshold_in_a_row() {
        let mut b = Breaker::new(3);
        assert_eq!(b.record(&result(Some(true))), None);
        assert_eq!(b.record(&result(Some(true))), None);
        let why = b.record(&result(Some(true))).expect("the third trips it");
        assert!(why.contains("3 exports in a row"), "{why}");
        assert!(why.contains("connection refused"), "{why}");
        assert_eq!(b.record(&result(Some(true))), None, "only once");
    }

    #[test]
    fn any_answer_resets_the_count() {
        let mut b = Breaker::new(3);
        for reset in [None, Some(false)] {
            b.record(&result(Some(true)));
            b.record(&result(Some(true)));
            // A success, or a failure the directory answered (a constraint violation, busy).
            assert_eq!(b.record(&result(reset)), None);
            assert_eq!(b.record(&result(Some(true))), None, "{reset:?}");
            assert_eq!(b.record(&result(Some(true))), None, "{reset:?}");
            assert!(b.record(&result(Some(true))).is_some(), "{reset:?}");
            b = Breaker::new(3);
        }
    }
}
