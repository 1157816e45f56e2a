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

    /// A statement that is not a query: the Flight SQL endpoint only reads.
    #[error(
        "clicklake's Flight SQL endpoint is read-only: only queries (SELECT, WITH, EXPLAIN, SHOW) are accepted; clicks are written through the ingest API"
    )]
    ReadOnly,

    /// A query reached a node that only ingests.
    #[error(
        "this node runs the ingest role only: send queries to a `clicklake query` or `clicklake serve` node"
    )]
    NoQueryRole,

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
            Error::ReadOnly => tonic::Status::permission_denied(err_text_read_only()),
            Error::BadRequest(msg) => tonic::Status::invalid_argument(msg),
            Error::NoQueryRole => tonic::Status::failed_precondition(err.to_string()),
        }
    }
}

fn err_text_read_only() -> String {
    Error::ReadOnly.to_string()
}

fn sql_status(e: datafusion::error::DataFusionError) -> tonic::Status {
    use datafusion::error::DataFusionError as D;
    let message = e.message().to_string();
    match root(&e) {
        D::SQL(..)
        | D::Plan(_)
        | D::SchemaError(..)
        | D::NotImplemented(_)
        | D::Configuration(_)
        | D::Execution(_)
        | D::ArrowError(..) => tonic::Status::invalid_argument(message),
        D::ResourcesExhausted(_) => tonic::Status::resource_exhausted(message),
        _ => {
            tracing::error!(error = %e, "query failed");
            tonic::Status::internal(message)
        }
    }
}

/// The error under the wrappers DataFusion adds (context, diagnostics, sharing).
fn root(e: &datafusion::error::DataFusionError) -> &datafusion::error::DataFusionError {
    use datafusion::error::DataFusionError as D;
    match e {
        D::Context(_, inner) | D::Diagnostic(_, inner) => root(inner),
        D::Shared(inner) => root(inner),
        D::Collection(all) => all.first().map_or(e, root),
        D::External(inner) => match inner.downcast_ref::<D>() {
            Some(inner) => root(inner),
            None => e,
        },
        _ => e,
    }
}
