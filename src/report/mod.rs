//! What the host gets back from a run: the result with JIM's `ExportExecutionResult` fields and the
//! engine's metrics, per-flush batch reports, progress events, and the outcome message and log lines
//! in JIM's wording.

pub(crate) mod assemble;
pub mod batch;
pub(crate) mod counters;
pub mod message;
pub mod progress;
pub mod result;
pub mod watch;

pub(crate) use assemble::{PassFigures, pass_message};
pub use batch::{AnchorChange, BatchReport, ItemStatus, ReportItem};
pub(crate) use counters::Counters;
pub use progress::{ProgressEvent, ProgressThrottle};
pub use result::{OperationCounts, RunMetrics, RunResult};
pub use watch::{WakeUps, WatchMode, WatchResult, WatchSystemResult};
