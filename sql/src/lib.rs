//! The SQL of clicklake: the rollup query every level is computed with, the
//! reconcile query that compares a rollup with a recount, and the sketch
//! functions (`hll_sketch`, `hll_union`, `hll_estimate`) both use.
//! Its behaviour is pinned by the sqllogictest files in `slt/` (run by
//! `cargo test -p clicklake-sql`). No Rust service logic lives here.

pub mod sketch;

/// The rollup query, with `{unit}` standing for the window width.
pub const ROLLUP_SQL_TEMPLATE: &str = include_str!("../rollup.sql");

/// The reconcile query: rows of `expected` (a recount) and `actual` (a
/// rollup table) that differ.
pub const RECONCILE_SQL: &str = include_str!("../reconcile.sql");

/// The finality query: final/provisional flags and revision counts of
/// recounted windows (`fresh`) against the rows they replace (`previous`).
pub const FINALITY_SQL_TEMPLATE: &str = include_str!("../finality.sql");

/// The first-copies query: the first stored copy of every event id in
/// [`CANDIDATES`], computed once per run for every level.
pub const FIRST_COPIES_SQL: &str = include_str!("../first_copies.sql");

/// The name of the relation the first-copies query reads: every stored copy
/// of the event ids being recounted.
pub const CANDIDATES: &str = "rollup_candidates";

/// The name of the relation the rollup query reads.
pub const ROLLUP_SOURCE: &str = "rollup_source";

/// The rollup query for windows of one `unit` (`minute`, `hour`, `day`, `month`).
pub fn rollup_sql(unit: &str) -> String {
    ROLLUP_SQL_TEMPLATE.replace("{unit}", unit)
}

/// The finality query for windows of one `unit`, with the watermark now,
/// the watermark of the previous rows and the time of the rewrite, all in
/// microseconds since the epoch.
pub fn finality_sql(unit: &str, watermark: i64, previous: i64, now: i64) -> String {
    FINALITY_SQL_TEMPLATE
        .replace("{unit}", unit)
        .replace("{watermark}", &watermark.to_string())
        .replace("{previous}", &previous.to_string())
        .replace("{now}", &now.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_is_substituted_everywhere() {
        let sql = super::rollup_sql("hour");
        assert!(sql.contains("date_trunc('hour', event_time)"));
        assert!(!sql.contains("{unit}"));
    }
}
