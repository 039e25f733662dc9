//! Returning claims a run did not execute: each row goes back to the status, `LastAttemptedAt` and
//! `LastErrorStackTrace` it had before the claim, in one statement, now or (when the database does
//! not answer) in the background as soon as it does.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ExportQueue;
use crate::error::Result;
use crate::store::claim::Held;
use crate::store::marker::run_pattern;
use crate::store::retry::{self, with_retries};
use crate::store::{Store, sql};

impl ExportQueue {
    /// Returns claimed rows that were not executed (cancellation, shutdown) to the status,
    /// `LastAttemptedAt` and `LastErrorStackTrace` they had before the claim; rows recovered from an
    /// expired lease go back to Pending; a row the directory may have seen keeps the claim's mark
    /// ([`ExportQueue::set_dispatched`]). Rows not held are ignored. One statement, tried again across
    /// a database restart; returns the number of rows restored.
    pub async fn release(&self, ids: &[Uuid]) -> Result<usize> {
        let _shared = self.gate.read().await;
        let entries: Vec<(Uuid, Held)> = {
            let held = self.held();
            ids.iter()
                .filter_map(|id| held.get(id).map(|h| (*id, h.clone())))
                .collect()
        };
        self.release_entries(entries).await
    }

    /// Releases every row this run still holds (see [`ExportQueue::release`]).
    pub async fn release_all(&self) -> Result<usize> {
        let _shared = self.gate.read().await;
        let entries: Vec<(Uuid, Held)> =
            self.held().iter().map(|(id, h)| (*id, h.clone())).collect();
        self.release_entries(entries).await
    }

    /// Hands every row this run still holds to the store, which releases them (as
    /// [`ExportQueue::release_all`]) as soon as the database answers again; for a run ending because
    /// the database stopped answering. Returns how many rows were handed over.
    pub fn release_all_later(&self) -> usize {
        let entries: Vec<(Uuid, Held)> = self.held().drain().collect();
        let n = entries.len();
        let mut release = Release::of(&entries);
        // And any row a claim marked for this run without the run knowing (a claim cut short).
        release.strays = Some((self.schema.connected_system_id, run_pattern(self.run_id)));
        self.store.release_in_background(release);
        n
    }

    async fn release_entries(&self, entries: Vec<(Uuid, Held)>) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let release = Release::of(&entries);
        let n = with_retries(
            self.store.policy(),
            "returning unexecuted claims",
            || release.send(&self.store),
            retry::nothing,
        )
        .await?;
        let mut held = self.held();
        for (id, h) in &entries {
            if held.remove(id).is_some() {
                h.fence.lose();
            }
        }
        Ok(n)
    }
}

/// The bind arrays of one release statement (`sql::RELEASE`), and optionally the run whose other
/// stranded rows go back too (`sql::RELEASE_UNHELD`: system, mark pattern).
#[derive(Debug, Clone, Default)]
pub(crate) struct Release {
    ids: Vec<Uuid>,
    tokens: Vec<String>,
    previous_status: Vec<i32>,
    previous_attempted_at: Vec<Option<DateTime<Utc>>>,
    traces: Vec<Option<String>>,
    strays: Option<(i32, String)>,
}

impl Release {
    fn of(entries: &[(Uuid, Held)]) -> Self {
        let mut r = Release::default();
        for (id, h) in entries {
            r.ids.push(*id);
            r.tokens.push(h.token.clone());
            r.previous_status.push(h.previous_status);
            r.previous_attempted_at.push(h.previous_attempted_at);
            r.traces.push(h.trace_on_release());
        }
        r
    }

    /// The rows it returns.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Sends the statement once (and the strays' one, after it); returns the rows restored.
    pub(crate) async fn send(&self, store: &Store) -> std::result::Result<usize, sqlx::Error> {
        let mut n = 0;
        if !self.ids.is_empty() {
            store.count(1);
            n += sqlx::query(sql::RELEASE)
                .bind(&self.ids)
                .bind(&self.tokens)
                .bind(&self.previous_status)
                .bind(&self.previous_attempted_at)
                .bind(&self.traces)
                .fetch_all(store.pool())
                .await?
                .len();
        }
        if let Some((system, pattern)) = &self.strays {
            store.count(1);
            let none: Vec<Uuid> = Vec::new();
            n += sqlx::query(sql::RELEASE_UNHELD)
                .bind(system)
                .bind(pattern)
                .bind(&none)
                .execute(store.pool())
                .await?
                .rows_affected() as usize;
        }
        Ok(n)
    }
}
