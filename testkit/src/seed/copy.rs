//! Streaming `COPY ... FROM STDIN (FORMAT binary)`: rows are encoded on a blocking thread into ~1 MiB
//! chunks that travel through a small bounded channel to the connection, so generation and
//! PostgreSQL's work overlap and memory stays bounded whatever the row count.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::error::{Result, SqlContext, TestkitError};

/// Chunk size handed to the connection.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the encoder and the connection.
const CHANNEL: usize = 4;
/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// The encoder stopped because the receiving side went away (the COPY failed).
#[derive(Debug)]
pub(crate) struct Closed;

/// Encodes rows of the binary COPY format into chunks.
pub(crate) struct CopyWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Vec<u8>>,
    rows: u64,
}

impl CopyWriter {
    fn new(tx: mpsc::Sender<Vec<u8>>) -> Self {
        let mut buf = Vec::with_capacity(CHUNK + 64 * 1024);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        Self { buf, tx, rows: 0 }
    }

    /// Starts a row of `columns` fields; hands a full chunk to the connection first.
    pub fn row(&mut self, columns: i16) -> std::result::Result<(), Closed> {
        if self.buf.len() >= CHUNK {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 64 * 1024));
            self.tx.blocking_send(full).map_err(|_| Closed)?;
        }
        self.rows += 1;
        self.buf.extend_from_slice(&columns.to_be_bytes());
        Ok(())
    }

    fn field(&mut self, bytes: &[u8]) {
        // Field lengths are i32; our values are short texts and fixed-size scalars.
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    /// A NULL field.
    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A `uuid` field.
    pub fn uuid(&mut self, v: Uuid) {
        self.field(v.as_bytes());
    }

    /// An `integer` field.
    pub fn i32(&mut self, v: i32) {
        self.field(&v.to_be_bytes());
    }

    /// A `boolean` field.
    pub fn bool(&mut self, v: bool) {
        self.field(&[u8::from(v)]);
    }

    /// A `text` field.
    pub fn text(&mut self, v: &str) {
        self.field(v.as_bytes());
    }

    /// A `timestamp with time zone` field.
    pub fn timestamptz(&mut self, v: DateTime<Utc>) {
        self.field(&(v.timestamp_micros() - PG_EPOCH_OFFSET_MICROS).to_be_bytes());
    }

    fn finish(mut self) -> std::result::Result<u64, Closed> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        let last = std::mem::take(&mut self.buf);
        self.tx.blocking_send(last).map_err(|_| Closed)?;
        Ok(self.rows)
    }
}

/// Runs `COPY <table> (<columns>) FROM STDIN (FORMAT binary)` on `conn`, with rows produced by
/// `produce` on a blocking thread. Returns the number of rows PostgreSQL stored.
pub(crate) async fn copy_in<F>(
    conn: &mut PgConnection,
    table: &str,
    columns: &[&str],
    produce: F,
) -> Result<u64>
where
    F: FnOnce(&mut CopyWriter) -> std::result::Result<(), Closed> + Send + 'static,
{
    let column_list = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let statement = format!("COPY \"{table}\" ({column_list}) FROM STDIN (FORMAT binary)");
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CHANNEL);
    let producer = tokio::task::spawn_blocking(move || {
        let mut w = CopyWriter::new(tx);
        produce(&mut w)?;
        w.finish()
    });

    let mut copy = conn
        .copy_in_raw(&statement)
        .await
        .sql_context(|| format!("starting COPY into {table}"))?;
    let mut send_error = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = copy.send(chunk).await {
            send_error = Some(e);
            break;
        }
    }
    // Closing the receiver stops the producer if the connection failed mid-way.
    drop(rx);
    let produced = producer.await;
    if let Some(e) = send_error {
        copy.abort("seed data could not be sent").await.ok();
        return Err(TestkitError::Sql {
            context: format!("sending COPY data into {table}"),
            source: e,
        });
    }
    match produced {
        Ok(Ok(rows)) => {
            let stored = copy
                .finish()
                .await
                .sql_context(|| format!("finishing COPY into {table}"))?;
            if stored != rows {
                return Err(TestkitError::Seed(format!(
                    "COPY into {table}: encoded {rows} rows but PostgreSQL stored {stored}"
                )));
            }
            Ok(stored)
        }
        Ok(Err(Closed)) => {
            copy.abort("seed data producer stopped").await.ok();
            Err(TestkitError::Seed(format!(
                "COPY into {table}: the connection stopped accepting data"
            )))
        }
        Err(join) => {
            copy.abort("seed data producer panicked").await.ok();
            Err(TestkitError::Seed(format!(
                "COPY into {table}: the row producer failed: {join}"
            )))
        }
    }
}
