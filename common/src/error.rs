//! Errors of the shared crate.

use thiserror::Error;

/// A failure opening, creating or describing a clicklake table.
#[derive(Debug, Error)]
pub enum Error {
    /// The `--store` value is neither a local path nor a supported URL.
    #[error("invalid store location {location:?}: {reason}")]
    InvalidStore { location: String, reason: String },

    /// A Delta operation on a table failed.
    #[error("delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },

    /// A local directory for the embedded store could not be created.
    #[error("creating local store directory {path}: {source}")]
    LocalDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result with the shared [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
