//! The claimer task: claims pages, plain exports first and then reference-bearing ones (whose
//! references it resolves in one query per page), into a small bounded channel, so at most a couple of
//! pages wait ahead of the coordinator whatever the queue's size.

use std::sync::Arc;

use super::CancellationToken;
use crate::error::Error;
use crate::store::{ClaimedPage, ExportQueue, Pass};
use tokio::sync::mpsc;

/// What the claimer sends the coordinator.
pub(crate) enum Claimed {
    /// A claimed (and, in the reference pass, resolved) page.
    Page(ClaimedPage),
    /// Claiming failed; the claimer has stopped.
    Failed(Error),
}

/// Claims pages, plain exports first and then reference-bearing ones (whose references are resolved
/// in one query per page), until both passes are exhausted or the run is cancelled. `first` is the
/// plain pass's first page when the run claimed it already (beside its count of what is due).
///
/// In the reference pass the next page is claimed while this one's references are resolved: the
/// claim needs only this page's cursor, and the two statements run on two of the pool's
/// connections. Done one after the other they left the directory idle between reference pages of
/// membership changes, whose claim reads each group's member sample.
pub(crate) async fn claim_pages(
    queue: Arc<ExportQueue>,
    page_size: u32,
    first: Option<ClaimedPage>,
    cancel: CancellationToken,
    tx: mpsc::Sender<Claimed>,
) {
    let mut first = first;
    for pass in [Pass::Plain, Pass::References] {
        let mut cursor = None;
        let mut claimed = match first.take() {
            Some(page) => Ok(page),
            None => queue.claim(pass, cursor, page_size).await,
        };
        loop {
            if cancel.is_cancelled() {
                // A page claimed before the pass began, or ahead of the one sent last, is returned
                // with the run's other claims.
                return;
            }
            let mut page = match claimed {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Claimed::Failed(e)).await;
                    return;
                }
            };
            let last = page.is_last();
            cursor = page.cursor.or(cursor);
            let (resolved, next) = match (pass, last) {
                (Pass::References, false) => {
                    let (resolved, next) = tokio::join!(
                        queue.resolve_references(&mut page.exports),
                        queue.claim(pass, cursor, page_size)
                    );
                    (resolved.map(drop), Some(next))
                }
                (Pass::References, true) => (
                    queue.resolve_references(&mut page.exports).await.map(drop),
                    None,
                ),
                (Pass::Plain, _) => (Ok(()), None),
            };
            if let Err(e) = resolved {
                let _ = tx.send(Claimed::Failed(e)).await;
                return;
            }
            if tx.send(Claimed::Page(page)).await.is_err() {
                return;
            }
            if last {
                break;
            }
            claimed = match next {
                Some(next) => next,
                None => queue.claim(pass, cursor, page_size).await,
            };
        }
    }
}
