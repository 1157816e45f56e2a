//! Reconcile: recount the raw events of a range per window and level,
//! compare with every rollup table, report each (level, window, ad) that
//! differs, and optionally repair the levels that differ by rewriting the
//! range from the raw events.
//!
//! Concurrency: read-only without `--repair`; with it, the same as a
//! backfill of the differing levels (see [`crate::backfill`]).

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use clicklake_common::Level;
use clicklake_common::schema::UTC;
use clicklake_sql::RECONCILE_SQL;
use datafusion::datasource::MemTable;
use tracing::info;

use crate::backfill::Backfill;
use crate::error::{Error, Result};
use crate::metrics;
use crate::rollup::{Rollups, counts_schema, level_ranges, level_rows, load_candidates, recount};

/// One (level, window, ad) whose rollup differs from the recount. `None`
/// means the row is missing on that side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub level: Level,
    /// Window start, microseconds since the epoch (UTC).
    pub window_start: i64,
    pub ad_id: String,
    pub expected_clicks: Option<i64>,
    pub actual_clicks: Option<i64>,
    pub expected_unique_users: Option<i64>,
    pub actual_unique_users: Option<i64>,
    pub expected_conversions: Option<i64>,
    pub actual_conversions: Option<i64>,
    pub breakdowns_differ: bool,
}

/// The outcome of a reconcile.
#[derive(Debug, Clone, Default)]
pub struct ReconcileReport {
    /// The raw version recounted.
    pub raw_version: i64,
    /// Differences found (before any repair).
    pub differences: Vec<Difference>,
    /// Levels rewritten by `--repair`.
    pub repaired: Vec<Level>,
}

/// A reconcile of `[from, to)` over every level.
#[derive(Debug, Clone)]
pub struct Reconcile {
    range: Backfill,
    repair: bool,
    /// Recount this raw version instead of the newest.
    raw_version: Option<i64>,
}

impl Reconcile {
    /// Compare every level over `[from, to)` (microseconds, UTC).
    pub fn new(from: i64, to: i64) -> Result<Self> {
        Ok(Self {
            range: Backfill::new(from, to)?,
            repair: false,
            raw_version: None,
        })
    }

    /// Recount raw version `v` (the one the rollups reflect) rather than the
    /// newest, so commits not rolled up yet are not reported as differences.
    pub fn at_raw_version(mut self, v: i64) -> Self {
        self.raw_version = Some(v);
        self
    }

    /// Rewrite every level that differs.
    pub fn with_repair(mut self, repair: bool) -> Self {
        self.repair = repair;
        self
    }

    /// Run it.
    pub async fn run(&self, rollups: &mut Rollups) -> Result<ReconcileReport> {
        let newest = rollups.refresh().await?;
        let raw_version = self.raw_version.map_or(newest, |v| v.min(newest));
        let ctx = rollups.raw_context(raw_version).await?;
        let dates = self.range.dates();
        load_candidates(&ctx, Some(&level_ranges(Level::Month, &dates))).await?;
        let mut report = ReconcileReport {
            raw_version,
            ..Default::default()
        };
        for level in Level::ALL {
            let query_err = |source| Error::Query {
                table: level.table().to_string(),
                source,
            };
            let ranges = level_ranges(level, &dates);
            let expected = recount(&ctx, level, Some(&ranges)).await?;
            let expected =
                MemTable::try_new(counts_schema(level), vec![expected]).map_err(query_err)?;
            let actual = level_rows(&ctx, level, rollups.level_table(level), Some(&ranges)).await?;
            for name in ["expected", "actual"] {
                ctx.deregister_table(name).map_err(query_err)?;
            }
            ctx.register_table("expected", Arc::new(expected))
                .map_err(query_err)?;
            ctx.register_table("actual", actual.into_view())
                .map_err(query_err)?;
            let batches = ctx
                .sql(RECONCILE_SQL)
                .await
                .map_err(query_err)?
                .collect()
                .await
                .map_err(query_err)?;
            let found = differences(level, &batches).map_err(|e| query_err(e.into()))?;
            metrics::RECONCILE_DIFFERENCES
                .with_label_values(&[level.unit()])
                .set(found.len() as i64);
            info!(%level, differences = found.len(), "reconciled");
            report.differences.extend(found);
        }
        if self.repair {
            let finality = rollups.finality_of(&ctx).await?;
            let levels: Vec<Level> = Level::ALL
                .into_iter()
                .filter(|l| report.differences.iter().any(|d| d.level == *l))
                .collect();
            for level in &levels {
                let ranges = level_ranges(*level, &dates);
                let table = rollups.level_table(*level);
                crate::rollup::rewrite_level(&ctx, *level, table, Some(&ranges), None, finality)
                    .await?;
                metrics::RECONCILE_DIFFERENCES
                    .with_label_values(&[level.unit()])
                    .set(0);
                info!(%level, "repaired");
            }
            report.repaired = levels;
        }
        Ok(report)
    }
}

fn differences(
    level: Level,
    batches: &[RecordBatch],
) -> Result<Vec<Difference>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    for b in batches {
        let ts = cast(
            b.column(0),
            &DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        )?;
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        let ad = cast(b.column(1), &DataType::Utf8)?;
        let ad = ad.as_string::<i32>();
        let ints = (2..8)
            .map(|i| cast(b.column(i), &DataType::Int64))
            .collect::<Result<Vec<_>, _>>()?;
        let int = |col: usize, row: usize| {
            let a = ints[col].as_primitive::<Int64Type>();
            (!a.is_null(row)).then(|| a.value(row))
        };
        let flags = b.column(8).as_boolean();
        for row in 0..b.num_rows() {
            out.push(Difference {
                level,
                window_start: ts.value(row),
                ad_id: ad.value(row).to_string(),
                expected_clicks: int(0, row),
                actual_clicks: int(1, row),
                expected_unique_users: int(2, row),
                actual_unique_users: int(3, row),
                expected_conversions: int(4, row),
                actual_conversions: int(5, row),
                breakdowns_differ: flags.value(row),
            });
        }
    }
    Ok(out)
}
