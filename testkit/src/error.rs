//! The testkit's error type.

/// Why a test server or seed step failed. Messages say what to install or set when a tool is missing.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A program the harness needs is not installed.
    #[error("{program} is not installed: {hint}")]
    Missing {
        /// The program.
        program: String,
        /// What to install, or which environment variable points at an existing server.
        hint: String,
    },
    /// A server is installed (or installable) but cannot run in this environment (e.g. it needs
    /// root). Tests may skip on this, as on [`TestkitError::Missing`].
    #[error("{server} cannot run here: {reason}")]
    Unavailable {
        /// Which server.
        server: &'static str,
        /// Why not, and what would make it run.
        reason: String,
    },
    /// A server failed to start or stop.
    #[error("{server}: {message}")]
    Server {
        /// Which server.
        server: &'static str,
        /// What happened, with the tail of its log where useful.
        message: String,
    },
    /// File system or process I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A database statement failed.
    #[error("{context}: {source}")]
    Sql {
        /// What was being done.
        context: String,
        /// The sqlx error.
        source: sqlx::Error,
    },
    /// An LDAP operation failed.
    #[error("{context}: {source}")]
    Ldap {
        /// What was being done.
        context: String,
        /// The ldap3 error (boxed: it is large, and would make every `Result` large).
        source: Box<ldap3::LdapError>,
    },
    /// Generating test certificates failed.
    #[error("certificate generation: {0}")]
    Certificate(String),
    /// Seed parameters or data are inconsistent.
    #[error("seed: {0}")]
    Seed(String),
}

/// The testkit's result type.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;

/// Adds context to I/O errors.
pub(crate) trait IoContext<T> {
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| TestkitError::Io {
            context: context(),
            source,
        })
    }
}

/// Adds context to sqlx errors.
pub(crate) trait SqlContext<T> {
    fn sql_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SqlContext<T> for std::result::Result<T, sqlx::Error> {
    fn sql_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| TestkitError::Sql {
            context: context(),
            source,
        })
    }
}
