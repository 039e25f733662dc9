//! What the host gets back from a run: the outcome message and log lines in JIM's wording (more of the
//! run's report lands here with the engine).

pub mod message;
