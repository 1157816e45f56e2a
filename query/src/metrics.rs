//! Prometheus metrics of the query service.

use std::sync::LazyLock;

use prometheus::{Histogram, IntCounterVec, register_histogram, register_int_counter_vec};

#[allow(clippy::expect_used)]
fn must<T>(r: prometheus::Result<T>) -> T {
    r.expect("metric registration")
}

/// Statements answered, by outcome (`ok`, `invalid`, `refused`, `unauthenticated`,
/// `resources`, `unavailable`, `error`).
pub static STATEMENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    must(register_int_counter_vec!(
        "clicklake_query_statements_total",
        "Flight SQL statements (plain and prepared) by outcome of planning and start of execution",
        &["outcome"]
    ))
});

/// Time from a statement's DoGet to its first result batch being ready to stream.
pub static START_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    must(register_histogram!(
        "clicklake_query_start_duration_seconds",
        "Time to plan a statement and start its execution"
    ))
});

/// Register every metric of the crate, so each is exported from the start.
pub fn register() {
    LazyLock::force(&STATEMENTS);
    LazyLock::force(&START_SECONDS);
    // Every outcome exists at zero from the start, so `rate()` sees the first one.
    for outcome in OUTCOMES {
        STATEMENTS.with_label_values(&[outcome]);
    }
}

/// The label values [`outcome`] gives.
const OUTCOMES: [&str; 7] = [
    "ok",
    "invalid",
    "refused",
    "unauthenticated",
    "resources",
    "unavailable",
    "error",
];

/// The outcome label of a status.
pub fn outcome(status: Option<&tonic::Status>) -> &'static str {
    use tonic::Code;
    match status.map(tonic::Status::code) {
        None => "ok",
        Some(Code::InvalidArgument | Code::NotFound) => "invalid",
        Some(Code::PermissionDenied) => "refused",
        Some(Code::Unauthenticated) => "unauthenticated",
        Some(Code::ResourceExhausted) => "resources",
        Some(Code::Unavailable) => "unavailable",
        Some(_) => "error",
    }
}
