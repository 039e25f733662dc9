//! How hard to drive the directory: the tuning a run asks for ([`DirectoryTuning`]) and the pool's
//! sizing derived from it and the dialect's defaults.

use std::time::Duration;

use super::dialect::DirectoryProfile;
use super::limit;
use crate::config::{Concurrency, RunOptions};

/// How hard to drive the directory. `None` fields take the dialect's defaults
/// ([`concurrency_defaults`](super::concurrency_defaults)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryTuning {
    /// Connections.
    pub connections: Option<u32>,
    /// Outstanding operations per connection.
    pub in_flight_per_connection: Option<u32>,
    /// Outstanding operations over all connections: the limit with [`Concurrency::Fixed`]
    /// (connections × per connection when absent); the ceiling with [`Concurrency::Adaptive`]
    /// (connections × per connection when that is given, else four times the dialect's default,
    /// at most 256).
    pub max_in_flight: Option<u32>,
    /// Whether the in-flight limit adapts to the directory's pace or stays fixed.
    pub concurrency: Concurrency,
    /// The adaptive limit's floor (default 1).
    pub min_in_flight: Option<u32>,
    /// Where the adaptive limit starts (default: connections × per connection, within the bounds).
    pub initial_in_flight: Option<u32>,
    /// Where the adaptive limit resumes: what an earlier run to the same directory learnt (see
    /// [`Engine`](crate::engine::Engine)). Unlike [`initial_in_flight`](Self::initial_in_flight) it
    /// moves only the starting point: the floor that latency alone may lead to stays half the start
    /// above, so a directory that has slowed since is still followed down.
    pub resume_in_flight: Option<u32>,
    /// Cap on operations per second.
    pub ops_per_second: Option<u32>,
    /// In-run retries of an operation that met a transient condition.
    pub max_operation_retries: u32,
    /// The first retry's delay; it doubles with each further retry (capped at 5 s).
    pub retry_backoff: Duration,
    /// Read anchors back through RFC 4527 post-read when the server advertises it (else a base
    /// search after the Add).
    pub use_post_read: bool,
    /// Exports in progress at once in [`Directory::run`](super::Directory::run) and [`Directory::execute_all`](super::Directory::execute_all) (default:
    /// twice the operations in flight, so that every free slot finds work).
    pub max_active_exports: Option<usize>,
    /// How far the directory's clock may be behind the database's when a re-attempt judges whether an
    /// existing entry was created after the export's first attempt (see [`evidence`](super::evidence)).
    pub clock_skew: Duration,
}

impl Default for DirectoryTuning {
    fn default() -> Self {
        Self {
            connections: None,
            in_flight_per_connection: None,
            max_in_flight: None,
            concurrency: Concurrency::default(),
            min_in_flight: None,
            initial_in_flight: None,
            resume_in_flight: None,
            ops_per_second: None,
            max_operation_retries: 3,
            retry_backoff: Duration::from_millis(250),
            use_post_read: true,
            max_active_exports: None,
            clock_skew: Duration::from_secs(crate::config::DEFAULT_CLOCK_SKEW_SECONDS),
        }
    }
}

impl DirectoryTuning {
    /// The tuning a run's options ask for.
    pub fn from_run_options(options: &RunOptions) -> Self {
        Self {
            connections: options.connections,
            in_flight_per_connection: options.in_flight_per_connection,
            max_in_flight: options.max_in_flight,
            concurrency: options.effective_concurrency(),
            min_in_flight: options.min_in_flight,
            ops_per_second: options.ops_per_second,
            max_operation_retries: options.max_operation_retries,
            clock_skew: Duration::from_secs(options.clock_skew_seconds),
            ..Self::default()
        }
    }
}

/// The ceiling of an adaptive limit when none is configured, as a multiple of the dialect's
/// default: room to grow where a directory is faster (or farther) than its defaults assume.
const ADAPTIVE_HEADROOM: u32 = 4;
/// The highest default ceiling of an adaptive limit.
const ADAPTIVE_DEFAULT_CEILING: u32 = 256;

/// How the pool is sized from the tuning and the dialect's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sizing {
    pub(super) connections: u32,
    pub(super) per_connection: u32,
    /// The fixed limit, or the adaptive ceiling.
    pub(super) max_in_flight: u32,
    pub(super) adaptive: Option<limit::LimitBounds>,
}

impl Sizing {
    pub(super) fn new(tuning: &DirectoryTuning, profile: &DirectoryProfile) -> Self {
        let connections = tuning.connections.unwrap_or(profile.connections).max(1);
        let per_connection = tuning
            .in_flight_per_connection
            .unwrap_or(profile.in_flight_per_connection)
            .max(1);
        let start = connections.saturating_mul(per_connection);
        match tuning.concurrency {
            Concurrency::Fixed => Self {
                connections,
                per_connection,
                max_in_flight: tuning.max_in_flight.unwrap_or(start).clamp(1, start),
                adaptive: None,
            },
            Concurrency::Adaptive => {
                // An explicit per-connection depth is a hard cap (a server limit); otherwise the
                // connections are deepened so that the ceiling can be reached.
                let ceiling = match (tuning.max_in_flight, tuning.in_flight_per_connection) {
                    (Some(max), Some(_)) => max.clamp(1, start),
                    (Some(max), None) => max.max(1),
                    (None, Some(_)) => start,
                    (None, None) => start
                        .saturating_mul(ADAPTIVE_HEADROOM)
                        .min(ADAPTIVE_DEFAULT_CEILING)
                        .max(start),
                };
                let per_connection = if tuning.in_flight_per_connection.is_some() {
                    per_connection
                } else {
                    per_connection.max(ceiling.div_ceil(connections))
                };
                let bounds = limit::LimitBounds::new(
                    tuning.min_in_flight.unwrap_or(1).min(ceiling),
                    ceiling,
                    tuning.initial_in_flight.unwrap_or(start),
                );
                Self {
                    connections,
                    per_connection,
                    max_in_flight: bounds.max,
                    adaptive: Some(bounds),
                }
            }
        }
    }
}
