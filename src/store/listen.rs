//! The `LISTEN` side of the notifying trigger ([`super::notify`]): a watch hears through it which
//! connected systems have new work. The store is the only way into PostgreSQL, so the listening
//! connection is the store's too, though it sits outside the pool: a pool of one of its own, so a
//! watch never takes a connection its passes need.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};

use super::{NOTIFY_CHANNEL, Store};
use crate::error::Result;

/// How long opening the listening connection may wait for it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection listening on [`NOTIFY_CHANNEL`].
pub struct QueueListener {
    listener: PgListener,
}

/// What a [`QueueListener`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A notification naming a connected system (`None` when the payload is not a system id).
    Notification(Option<i32>),
    /// The connection was lost and re-established; it listens again, but notifications sent in
    /// between are gone, so the caller re-scans what it watches.
    Reconnected,
    /// The connection is lost (why, as text for the log): open a new listener with
    /// [`Store::listen`].
    Lost(String),
}

impl Store {
    /// Opens a connection of its own (with the store's connection options) that listens on
    /// [`NOTIFY_CHANNEL`].
    pub async fn listen(&self) -> Result<QueueListener> {
        let options = self.pool().connect_options().as_ref().clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(QueueListener { listener })
    }
}

impl QueueListener {
    /// Waits for the next thing heard.
    pub async fn next(&mut self) -> Heard {
        match self.listener.try_recv().await {
            Ok(Some(n)) => Heard::Notification(n.payload().parse::<i32>().ok()),
            Ok(None) => Heard::Reconnected,
            Err(e) => Heard::Lost(e.to_string()),
        }
    }
}
