//! The SQL text of clicklake: the rollup query every level is computed with,
//! and the reconcile query that compares a rollup with a recount.
//! Its behaviour is pinned by the sqllogictest files in `slt/` (run by
//! `cargo test -p clicklake-sql`). No Rust service logic lives here.

/// The rollup query, with `{unit}` standing for the window width.
pub const ROLLUP_SQL_TEMPLATE: &str = include_str!("../rollup.sql");

/// The reconcile query: rows of `expected` (a recount) and `actual` (a
/// rollup table) that differ.
pub const RECONCILE_SQL: &str = include_str!("../reconcile.sql");

/// The name of the relation the rollup query reads.
pub const ROLLUP_SOURCE: &str = "rollup_source";

/// The rollup query for windows of one `unit` (`minute`, `hour`, `day`, `month`).
pub fn rollup_sql(unit: &str) -> String {
    ROLLUP_SQL_TEMPLATE.replace("{unit}", unit)
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
