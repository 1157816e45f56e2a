//! Errors of the ingest service.

use thiserror::Error;

/// An ingest failure that is not about one event's content (those are
/// [`crate::Rejection`]s and never fail a whole request).
#[derive(Debug, Error)]
pub enum Error {
    /// The raw table could not be opened or created.
    #[error("opening the raw table: {0}")]
    Storage(#[from] clicklake_common::Error),

    /// Appending a batch to the raw table failed after retries; the events
    /// were not acknowledged and may be sent again.
    #[error("committing events to {table}: {reason}")]
    Commit { table: String, reason: String },

    /// The buffer is full (the store is slow or down): retry later.
    #[error(
        "ingest buffer full ({buffered} events waiting for their commit, limit {limit}); retry shortly"
    )]
    Backpressure { buffered: usize, limit: usize },

    /// A request holds more events than one request may.
    #[error("a request may hold at most {limit} events, this one has {events}; split it")]
    TooLarge { events: usize, limit: usize },

    /// The writer is shutting down and takes no new events.
    #[error("ingest is shutting down")]
    ShuttingDown,

    /// The request body could not be read at all (not one event's problem).
    #[error("request body: {0}")]
    Body(String),
}

/// Result with the ingest [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::Storage(_) | Error::Commit { .. } => {
                tracing::error!(error = %err, "ingest failed");
                tonic::Status::unavailable(format!("{err}; the events were not stored, retry"))
            }
            Error::ShuttingDown => tonic::Status::unavailable(err.to_string()),
            Error::Backpressure { .. } => tonic::Status::resource_exhausted(err.to_string()),
            Error::TooLarge { .. } => tonic::Status::invalid_argument(err.to_string()),
            Error::Body(_) => tonic::Status::invalid_argument(err.to_string()),
        }
    }
}
