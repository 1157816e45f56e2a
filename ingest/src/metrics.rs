//! Prometheus metrics of the ingest service, registered in the process-wide
//! default registry and exported on `/metrics`.

use std::sync::LazyLock;

use prometheus::{
    Histogram, IntCounter, IntCounterVec, IntGauge, register_histogram, register_int_counter,
    register_int_counter_vec, register_int_gauge,
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
        "Events appended to ad_clicks by flushes"
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
}
