//! Prometheus metrics of the ingest service, registered in the process-wide
//! default registry and exported on `/metrics`.

use std::sync::LazyLock;

use crate::event::FIELDS;

use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, exponential_buckets,
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge,
};

#[allow(clippy::expect_used)]
fn must<T>(r: prometheus::Result<T>) -> T {
    // Registration fails only for a duplicate or malformed name: a programming error.
    r.expect("metric registration")
}

/// Events acknowledged to producers (durable in `ad_clicks`).
pub static EVENTS_ACCEPTED: LazyLock<IntCounter> = LazyLock::new(|| {
    must(register_int_counter!(
        "clicklake_ingest_events_accepted_total",
        "Events acknowledged after their commit to ad_clicks"
    ))
});

/// Events refused by validation, by field.
pub static EVENTS_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    must(register_int_counter_vec!(
        "clicklake_ingest_events_rejected_total",
        "Events refused by validation, by the field at fault",
        &["field"]
    ))
});

/// Events committed by flushes.
pub static FLUSHED_EVENTS: LazyLock<IntCounter> = LazyLock::new(|| {
    must(register_int_counter!(
        "clicklake_ingest_flushed_events_total",
        "Events acknowledged by flushes (copies of an id dropped within a flush included)"
    ))
});

/// Events waiting in the buffer for their commit.
pub static BUFFERED_EVENTS: LazyLock<IntGauge> = LazyLock::new(|| {
    must(register_int_gauge!(
        "clicklake_ingest_buffered_events",
        "Events received and not yet committed"
    ))
});

/// Failed commit attempts to the raw table.
pub static COMMIT_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    must(register_int_counter!(
        "clicklake_ingest_commit_errors_total",
        "Failed append attempts to ad_clicks"
    ))
});

/// Time to build and commit one flush.
pub static FLUSH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    must(register_histogram!(
        "clicklake_ingest_flush_duration_seconds",
        "Time to write and commit one flush to ad_clicks"
    ))
});

/// Version of `ad_clicks` after this node's last commit.
pub static TABLE_VERSION: LazyLock<IntGauge> = LazyLock::new(|| {
    must(register_int_gauge!(
        "clicklake_ingest_table_version",
        "Version of ad_clicks after this node's last commit"
    ))
});

/// Requests refused because the buffer was full.
pub static BACKPRESSURE_REFUSALS: LazyLock<IntCounter> = LazyLock::new(|| {
    must(register_int_counter!(
        "clicklake_ingest_backpressure_refusals_total",
        "Requests refused with RESOURCE_EXHAUSTED / 503 because the buffer was full"
    ))
});

/// Requests received, by ingest path.
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    must(register_int_counter_vec!(
        "clicklake_ingest_requests_total",
        "Ingest requests received, by path (grpc_unary, grpc_batch, grpc_stream, http, flight)",
        &["path"]
    ))
});

/// Request bytes received, by ingest path.
pub static RECEIVED_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    must(register_int_counter_vec!(
        "clicklake_ingest_received_bytes_total",
        "Request body bytes received (as sent, before decompression), by path",
        &["path"]
    ))
});

/// Time from a request's arrival in the buffer to its acknowledgement.
pub static ACK_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    must(register_histogram_vec!(
        "clicklake_ingest_ack_duration_seconds",
        "Time from handing a request's events to the writer until their commit, by path",
        &["path"],
        must(exponential_buckets(0.005, 2.0, 14))
    ))
});

/// Events per flush (one Delta commit).
pub static BATCH_EVENTS: LazyLock<Histogram> = LazyLock::new(|| {
    must(register_histogram!(
        "clicklake_ingest_flush_events",
        "Events per flush (one commit to ad_clicks)",
        must(exponential_buckets(10.0, 4.0, 9))
    ))
});

/// Copies of an event id dropped because an earlier copy was in the same flush.
pub static DUPLICATES_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    must(register_int_counter!(
        "clicklake_ingest_duplicates_dropped_total",
        "Events not written because a copy with the same event id was already in the flush"
    ))
});

/// Appends whose outcome was unknown and that turned out committed.
pub static AMBIGUOUS_COMMITS: LazyLock<IntCounter> = LazyLock::new(|| {
    must(register_int_counter!(
        "clicklake_ingest_ambiguous_commits_total",
        "Failed append attempts found committed on re-reading the table (not appended again)"
    ))
});

/// Register every metric of the crate, so each is exported from the start.
pub fn register() {
    LazyLock::force(&EVENTS_ACCEPTED);
    LazyLock::force(&EVENTS_REJECTED);
    LazyLock::force(&FLUSHED_EVENTS);
    LazyLock::force(&BUFFERED_EVENTS);
    LazyLock::force(&COMMIT_ERRORS);
    LazyLock::force(&FLUSH_SECONDS);
    LazyLock::force(&TABLE_VERSION);
    LazyLock::force(&BACKPRESSURE_REFUSALS);
    LazyLock::force(&REQUESTS);
    LazyLock::force(&RECEIVED_BYTES);
    LazyLock::force(&ACK_SECONDS);
    LazyLock::force(&BATCH_EVENTS);
    LazyLock::force(&DUPLICATES_DROPPED);
    LazyLock::force(&AMBIGUOUS_COMMITS);
    // Every label value exists at zero from the start, so `rate()` sees the
    // first increment of each series.
    for path in Path::ALL {
        REQUESTS.with_label_values(&[path.label()]);
        RECEIVED_BYTES.with_label_values(&[path.label()]);
        ACK_SECONDS.with_label_values(&[path.label()]);
    }
    for field in REJECTION_LABELS.iter().chain(&FIELDS) {
        EVENTS_REJECTED.with_label_values(&[field]);
    }
}

/// The `field` label values of [`EVENTS_REJECTED`] besides the event fields:
/// the whole event, the raw table's time column, and any field outside
/// [`FIELDS`] (one label, so a producer's field names cannot grow the metric).
const REJECTION_LABELS: [&str; 3] = ["event", "event_time", UNKNOWN_FIELD];
const UNKNOWN_FIELD: &str = "unknown_field";

/// Count one event refused for `field`.
pub fn rejected(field: &str) {
    let label = if FIELDS.contains(&field) || REJECTION_LABELS.contains(&field) {
        field
    } else {
        UNKNOWN_FIELD
    };
    EVENTS_REJECTED.with_label_values(&[label]).inc();
}

/// The label values of [`REQUESTS`], [`RECEIVED_BYTES`] and [`ACK_SECONDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    GrpcUnary,
    GrpcBatch,
    GrpcStream,
    Http,
    Flight,
}

impl Path {
    pub const ALL: [Path; 5] = [
        Self::GrpcUnary,
        Self::GrpcBatch,
        Self::GrpcStream,
        Self::Http,
        Self::Flight,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::GrpcUnary => "grpc_unary",
            Self::GrpcBatch => "grpc_batch",
            Self::GrpcStream => "grpc_stream",
            Self::Http => "http",
            Self::Flight => "flight",
        }
    }

    /// Count one request of `bytes` on this path.
    pub fn received(self, bytes: usize) {
        REQUESTS.with_label_values(&[self.label()]).inc();
        RECEIVED_BYTES
            .with_label_values(&[self.label()])
            .inc_by(bytes as u64);
    }
}
