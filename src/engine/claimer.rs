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
        loop {
            if cancel.is_cancelled() {
                // A page claimed before the pass began is returned with the run's other claims.
                return;
            }
            let claimed = match first.take() {
                Some(page) => Ok(page),
                None => queue.claim(pass, cursor, page_size).await,
            };
            let page = match claimed {
                Ok(mut page) => {
                    if pass == Pass::References
                        && let Err(e) = queue.resolve_references(&mut page.exports).await
                    {
                        let _ = tx.send(Claimed::Failed(e)).await;
                        return;
                    }
                    page
                }
                Err(e) => {
                    let _ = tx.send(Claimed::Failed(e)).await;
                    return;
                }
            };
            let last = page.is_last();
            cursor = page.cursor.or(cursor);
            if tx.send(Claimed::Page(page)).await.is_err() {
                return;
            }
            if last {
                break;
            }
        }
    }
}
