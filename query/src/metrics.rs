//! Prometheus metrics of the query service.

use std::sync::LazyLock;

use prometheus::{
    Histogram, IntCounterVec, IntGauge, register_histogram, register_int_counter_vec,
    register_int_gauge,
};

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

/// Statements whose results are being produced now. A client that cancels
/// or disconnects drops its stream, which stops the query and takes it off.
pub static RUNNING: LazyLock<IntGauge> = LazyLock::new(|| {
    must(register_int_gauge!(
        "clicklake_query_running_statements",
        "Statements executing now (a cancelled or disconnected client's statement stops and leaves)"
    ))
});

/// Register every metric of the crate, so each is exported from the start.
pub fn register() {
    LazyLock::force(&STATEMENTS);
    LazyLock::force(&START_SECONDS);
    LazyLock::force(&RUNNING);
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
