//! Prometheus metrics of the compactor.

use std::sync::LazyLock;

use prometheus::{
    GaugeVec, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, register_gauge_vec,
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec,
};

#[allow(clippy::expect_used)]
fn must<T>(r: prometheus::Result<T>) -> T {
    r.expect("metric registration")
}

/// Rollup runs that changed the rollup tables.
pub static ROLLUP_RUNS: LazyLock<IntCounter> = LazyLock::new(|| {
    must(register_int_counter!(
        "clicklake_compactor_rollup_runs_total",
        "Rollup runs that rewrote windows"
    ))
});

/// Rollup runs that failed (and will be retried).
pub static ROLLUP_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    must(register_int_counter!(
        "clicklake_compactor_rollup_errors_total",
        "Rollup runs that failed"
    ))
});

/// Raw table version every rollup level reflects.
pub static ROLLED_UP_VERSION: LazyLock<IntGauge> = LazyLock::new(|| {
    must(register_int_gauge!(
        "clicklake_compactor_rolled_up_version",
        "ad_clicks version all rollup levels reflect"
    ))
});

/// Duration of one rollup run.
pub static ROLLUP_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    must(register_histogram!(
        "clicklake_compactor_rollup_duration_seconds",
        "Time of one rollup run over all levels"
    ))
});

/// Differences found by the last reconcile, per level (0 after a repair).
pub static RECONCILE_DIFFERENCES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    must(register_int_gauge_vec!(
        "clicklake_compactor_reconcile_differences",
        "Windows whose rollup differed from a recount in the last reconcile",
        &["level"]
    ))
});

/// The watermark: newest event time minus the allowed lateness.
pub static WATERMARK: LazyLock<IntGauge> = LazyLock::new(|| {
    must(register_int_gauge!(
        "clicklake_compactor_watermark_seconds",
        "Watermark (newest event time minus allowed lateness), seconds since the epoch"
    ))
});

/// Events rolled up behind the watermark, by how far behind the newest event.
pub static LATE_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    must(register_int_counter_vec!(
        "clicklake_compactor_late_events_total",
        "Events that arrived behind the watermark, by lateness (behind the newest event time)",
        &["lateness"]
    ))
});

/// Optimize, retention or vacuum passes that failed.
pub static HOUSEKEEPING_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    must(register_int_counter!(
        "clicklake_compactor_housekeeping_errors_total",
        "Optimize, retention or vacuum passes that failed (retried on the next pass)"
    ))
});

/// Data-quality checks: 1 while a check fires (see `quality`).
pub static QUALITY_FIRING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    must(register_int_gauge_vec!(
        "clicklake_compactor_quality_firing",
        "Data-quality check state: 1 while firing, 0 otherwise",
        &["check"]
    ))
});

/// The value each data-quality check judged last.
pub static QUALITY_VALUE: LazyLock<GaugeVec> = LazyLock::new(|| {
    must(register_gauge_vec!(
        "clicklake_compactor_quality_value",
        "Value a data-quality check judged: clicks now / reference, ads dropped or spiked, late or duplicate share",
        &["check"]
    ))
});

/// Data files each table's newest version references (set after every
/// rollup run; optimize lowers it).
pub static TABLE_FILES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    must(register_int_gauge_vec!(
        "clicklake_compactor_table_files",
        "Data files referenced by the newest version of each table",
        &["table"]
    ))
});

/// Register every metric of the crate, so each is exported from the start.
pub fn register() {
    LazyLock::force(&ROLLUP_RUNS);
    LazyLock::force(&ROLLUP_ERRORS);
    LazyLock::force(&ROLLED_UP_VERSION);
    LazyLock::force(&ROLLUP_SECONDS);
    LazyLock::force(&WATERMARK);
    LazyLock::force(&HOUSEKEEPING_ERRORS);
    for level in clicklake_common::Level::ALL {
        RECONCILE_DIFFERENCES.with_label_values(&[level.unit()]);
    }
    for table in clicklake_common::schema::all_tables() {
        TABLE_FILES.with_label_values(&[table]);
    }
    for check in crate::quality::CHECKS {
        QUALITY_FIRING.with_label_values(&[check]);
        QUALITY_VALUE.with_label_values(&[check]);
    }
    for (label, _) in crate::rollup::LATENESS_BUCKETS {
        LATE_EVENTS.with_label_values(&[label]);
    }
}
