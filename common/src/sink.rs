//! The seam between a service that receives Arrow click batches (Flight
//! `DoPut` and Flight SQL bulk ingest, served next to the query service) and
//! the ingest writer that validates and stores them. The query crate only
//! sees this trait; the binary hands it the ingest node's implementation.

use std::fmt;

use arrow::array::RecordBatch;

/// Where Arrow batches of click events go.
#[async_trait::async_trait]
pub trait ClickSink: Send + Sync + fmt::Debug {
    /// Validate and store the rows of `batches` (one request), returning once
    /// the stored rows are durable. Good rows are kept whatever the others hold.
    async fn ingest_arrow(&self, batches: Vec<RecordBatch>) -> Result<SinkOutcome, SinkError>;
}

/// What happened to the rows of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkOutcome {
    /// Rows stored.
    pub accepted: usize,
    /// Rows refused: position in the request (across its batches), field, reason.
    pub rejected: Vec<RowRejection>,
}

/// One refused row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowRejection {
    pub index: usize,
    pub field: String,
    pub reason: String,
}

/// Why a whole request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// The request itself is unusable (a column of the wrong type, too many rows).
    Invalid(String),
    /// The buffer is full; retry later.
    Backpressure(String),
    /// The store or the node is unavailable; nothing of the request is acknowledged.
    Unavailable(String),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(m) | Self::Backpressure(m) | Self::Unavailable(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SinkError {}
