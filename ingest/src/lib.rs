//! clicklake ingest: receives click events (gRPC `TrackAdClick`,
//! `TrackAdClicks` and the `TrackAdClickStream` client stream, HTTP
//! `POST /v1/clicks`, Arrow batches over Flight through
//! [`clicklake_common::sink::ClickSink`]), validates them with one set of
//! rules, buffers them into Arrow batches and appends them to the raw Delta
//! table `ad_clicks`. A request is acknowledged only after the commit that
//! holds its events has succeeded.
//!
//! It never answers queries and never touches the rollup tables.

pub mod arrow_batch;
pub mod error;
pub mod event;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod writer;

use std::time::Duration;

use clicklake_common::StorageConfig;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use event::{ClickEvent, Rejection, UnknownFields};
pub use writer::{IngestHandle, WriterConfig};

/// Ingest flags.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Flush the buffer to the raw table once it holds this many events.
    #[arg(long, env = "CLICKLAKE_FLUSH_ROWS", default_value_t = 100_000)]
    pub flush_rows: usize,

    /// Flush the buffer at least this often while it holds events.
    #[arg(long, env = "CLICKLAKE_FLUSH_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,

    /// Most events held in memory awaiting their commit; past it requests get
    /// RESOURCE_EXHAUSTED (HTTP 503) and producers retry.
    #[arg(
        long,
        env = "CLICKLAKE_MAX_BUFFERED_EVENTS",
        default_value_t = 1_000_000
    )]
    pub max_buffered_events: usize,

    /// Most events in one request (gRPC batch or HTTP body).
    #[arg(long, env = "CLICKLAKE_MAX_REQUEST_EVENTS", default_value_t = 100_000)]
    pub max_request_events: usize,

    /// Fields that are not event fields: `ignore` stores the event without
    /// them, `reject` refuses the event naming the field.
    #[arg(long, env = "CLICKLAKE_UNKNOWN_FIELDS", value_enum, default_value_t = UnknownFields::Ignore)]
    pub unknown_fields: UnknownFields,

    /// Refuse events whose time is further than this ahead of the server clock.
    #[arg(long, env = "CLICKLAKE_MAX_FUTURE", default_value = "1day", value_parser = humantime::parse_duration)]
    pub max_future: Duration,
}

impl IngestArgs {
    /// Typed writer configuration.
    pub fn writer_config(&self) -> WriterConfig {
        WriterConfig {
            flush_rows: self.flush_rows.max(1),
            flush_interval: self.flush_interval,
            max_future: self.max_future,
            max_buffered_events: self.max_buffered_events.max(1),
            max_request_events: self.max_request_events.max(1),
            unknown_fields: self.unknown_fields,
        }
    }
}

/// Start the ingest writer on `storage`; it stops, after a final flush, when
/// `shutdown` is cancelled.
pub async fn start(
    storage: &StorageConfig,
    config: WriterConfig,
    shutdown: CancellationToken,
) -> Result<IngestHandle> {
    writer::IngestHandle::start(storage, config, shutdown).await
}
