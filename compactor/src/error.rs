//! Errors of the compactor.

use thiserror::Error;

/// A compactor job failure. A failed job leaves the tables as they were.
#[derive(Debug, Error)]
pub enum Error {
    /// Opening or creating a table failed.
    #[error(transparent)]
    Storage(#[from] clicklake_common::Error),

    /// A Delta operation on a table failed.
    #[error("delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },

    /// Running the rollup query failed.
    #[error("rollup query for {table}: {source}")]
    Query {
        table: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },

    /// A time range argument is unusable.
    #[error("invalid range: {0}")]
    Range(String),

    /// Reading the raw table's commit log failed.
    #[error("reading commit {version} of ad_clicks: {reason}")]
    Log { version: i64, reason: String },
}

/// Result with the compactor [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
