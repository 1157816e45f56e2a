//! Errors of the query service, and how each reaches a Flight SQL client.

use thiserror::Error;

/// A query failure.
#[derive(Debug, Error)]
pub enum Error {
    /// Opening a table failed.
    #[error(transparent)]
    Storage(#[from] clicklake_common::Error),

    /// Refreshing a table's snapshot failed.
    #[error("delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },

    /// Planning or running the SQL failed (bad SQL, unknown table, bad argument).
    #[error("{0}")]
    Sql(#[from] datafusion::error::DataFusionError),

    /// The request itself is malformed (bad ticket, bad handle).
    #[error("{0}")]
    BadRequest(String),
}

/// Result with the query [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Storage(e) => {
                tracing::error!(error = %e, "query storage error");
                tonic::Status::unavailable(format!("storage unavailable: {e}"))
            }
            Error::Delta { table, source } => {
                tracing::error!(%table, error = %source, "query table refresh failed");
                tonic::Status::unavailable(format!("table {table} is unavailable"))
            }
            Error::Sql(e) => sql_status(e),
            Error::BadRequest(msg) => tonic::Status::invalid_argument(msg),
        }
    }
}

fn sql_status(e: datafusion::error::DataFusionError) -> tonic::Status {
    use datafusion::error::DataFusionError as D;
    match e {
        D::SQL(..) | D::Plan(_) | D::SchemaError(..) | D::NotImplemented(_) => {
            tonic::Status::invalid_argument(e.strip_backtrace().to_string())
        }
        D::ResourcesExhausted(_) => {
            tonic::Status::resource_exhausted(e.strip_backtrace().to_string())
        }
        D::Execution(_) | D::ArrowError(..) => {
            tonic::Status::invalid_argument(e.strip_backtrace().to_string())
        }
        D::Context(_, inner) => sql_status(*inner),
        other => {
            tracing::error!(error = %other, "query failed");
            tonic::Status::internal(other.strip_backtrace().to_string())
        }
    }
}
