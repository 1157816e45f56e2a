//! The rollup job: recompute the windows of every level that new raw commits
//! touched, from the raw events themselves.
//!
//! Progress lives in the rollup tables: each rollup commit carries a Delta
//! application transaction (`txn`, app id [`PROGRESS_APP_ID`]) whose version
//! is the `ad_clicks` version it reflects. A run reads the raw commits after
//! the smallest recorded version, collects the UTC dates they added files
//! to, and for each level rewrites exactly the windows of those dates (whole
//! months for the month level) with one atomic `replaceWhere` commit. A
//! restart resumes from the recorded version; running again over the same
//! raw version does nothing; re-running a window rewrites the same rows.
//!
//! Concurrency: ingest may append to `ad_clicks` while a run works, since
//! the run reads one pinned raw snapshot and records exactly that version.
//! One compactor per store is expected; a second one would rewrite the same
//! windows with the same rows (Delta's conflict check retries or fails the
//! later commit), so it is wasteful but not wrong.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use chrono::{Datelike, NaiveDate};
use clicklake_common::schema::{RAW_PARTITION, ROLLUP_PARTITION, UTC, raw_schema, rollup_schema};
use clicklake_common::{Level, RAW_TABLE, StorageConfig};
use clicklake_sql::{ROLLUP_SOURCE, rollup_sql};
use datafusion::common::{JoinType, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::prelude::{Expr, SessionContext, col, lit};
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tracing::{info, instrument};

use crate::error::{Error, Result};
use crate::metrics;

/// Application id of the progress marker in every rollup commit.
pub const PROGRESS_APP_ID: &str = "clicklake-rollup";

pub(crate) const DAY_MICROS: i64 = 86_400_000_000;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupMetrics {
    /// Raw versions taken in (0 when there was nothing new).
    pub raw_versions: u64,
    /// The raw version the rollups now reflect.
    pub raw_version: i64,
    /// UTC dates whose windows were recomputed (`None`: everything).
    pub dates: Option<usize>,
    /// Rollup rows written, per level, finest first.
    pub rows: [usize; 4],
}

/// The raw table and the four rollup tables of one store.
pub struct Rollups {
    raw: DeltaTable,
    levels: Vec<(Level, DeltaTable)>,
    /// Raw version known to need no work (newer than the recorded progress
    /// when commits added no files, e.g. an empty write).
    checked: Option<i64>,
}

impl std::fmt::Debug for Rollups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollups")
            .field("checked", &self.checked)
            .finish()
    }
}

pub(crate) fn delta(table: &str) -> impl FnOnce(deltalake::DeltaTableError) -> Error + '_ {
    move |source| Error::Delta {
        table: table.to_string(),
        source,
    }
}

impl Rollups {
    /// Open the raw and rollup tables, creating any that are missing.
    pub async fn open(storage: &StorageConfig) -> Result<Self> {
        let raw = storage
            .open_or_create(RAW_TABLE, &raw_schema(), &[RAW_PARTITION])
            .await?;
        let mut levels = Vec::new();
        for level in Level::ALL {
            let parts: &[&str] = if level.partitioned() {
                &[ROLLUP_PARTITION]
            } else {
                &[]
            };
            let table = storage
                .open_or_create(level.table(), &rollup_schema(level), parts)
                .await?;
            levels.push((level, table));
        }
        Ok(Self {
            raw,
            levels,
            checked: None,
        })
    }

    /// The raw version that every level reflects (`None`: never rolled up).
    pub async fn progress(&self) -> Result<Option<i64>> {
        let mut min: Option<i64> = None;
        for (level, table) in &self.levels {
            let state = table.snapshot().map_err(delta(level.table()))?;
            let v = state
                .transaction_version(table.log_store().as_ref(), PROGRESS_APP_ID)
                .await
                .map_err(delta(level.table()))?;
            match v {
                None => return Ok(None),
                Some(v) => min = Some(min.map_or(v, |m: i64| m.min(v))),
            }
        }
        Ok(min)
    }

    /// Take in every raw commit since the last run.
    #[instrument(name = "compactor.rollup", skip_all)]
    pub async fn run_once(&mut self) -> Result<RollupMetrics> {
        let started = Instant::now();
        let result = self.run_inner().await;
        match &result {
            Ok(m) if m.raw_versions > 0 => {
                metrics::ROLLUP_RUNS.inc();
                metrics::ROLLUP_SECONDS.observe(started.elapsed().as_secs_f64());
            }
            Ok(_) => {}
            Err(_) => metrics::ROLLUP_ERRORS.inc(),
        }
        result
    }

    async fn run_inner(&mut self) -> Result<RollupMetrics> {
        let current = self.refresh().await?;
        let progress = self.progress().await?;
        let done = progress.max(self.checked).unwrap_or(-1);
        metrics::ROLLED_UP_VERSION.set(progress.unwrap_or(-1));
        if done >= current {
            return Ok(RollupMetrics {
                raw_version: current,
                ..Default::default()
            });
        }
        let dates = match progress {
            Some(p) => self.changed_dates(p + 1, current).await?,
            None => None,
        };
        let mut m = RollupMetrics {
            raw_versions: (current - done) as u64,
            raw_version: current,
            dates: dates.as_ref().map(BTreeSet::len),
            rows: [0; 4],
        };
        if dates.as_ref().is_some_and(BTreeSet::is_empty) {
            // The new commits added no data files: nothing to recompute.
            self.checked = Some(current);
            return Ok(m);
        }
        let ctx = self.raw_context(current).await?;
        let month_ranges = dates.as_ref().map(|d| level_ranges(Level::Month, d));
        load_candidates(&ctx, month_ranges.as_deref()).await?;
        for (i, (level, table)) in self.levels.iter_mut().enumerate() {
            let ranges = dates.as_ref().map(|d| level_ranges(*level, d));
            m.rows[i] =
                rewrite_level(&ctx, *level, table, ranges.as_deref(), Some(current)).await?;
        }
        self.checked = Some(current);
        metrics::ROLLED_UP_VERSION.set(current);
        info!(raw_version = current, dates = ?m.dates, rows = ?m.rows, "rollups updated");
        Ok(m)
    }

    /// The raw table's newest version, after a refresh of every table.
    pub async fn refresh(&mut self) -> Result<i64> {
        self.raw.update_state().await.map_err(delta(RAW_TABLE))?;
        for (level, table) in &mut self.levels {
            table.update_state().await.map_err(delta(level.table()))?;
        }
        Ok(self.raw.version().unwrap_or(0) as i64)
    }

    /// A session with `ad_clicks` registered at one pinned version.
    pub(crate) async fn raw_context(&self, version: i64) -> Result<SessionContext> {
        let query_err = |source| Error::Query {
            table: RAW_TABLE.to_string(),
            source,
        };
        let ctx = SessionContext::new();
        let mut pinned = self.raw.clone();
        pinned
            .load_version(version as u64)
            .await
            .map_err(delta(RAW_TABLE))?;
        pinned
            .update_datafusion_session(&ctx.state())
            .map_err(delta(RAW_TABLE))?;
        let provider = pinned.table_provider().await.map_err(query_err)?;
        ctx.register_table(RAW_TABLE, provider).map_err(query_err)?;
        Ok(ctx)
    }

    /// The rollup table of a level.
    pub(crate) fn level_table(&mut self, level: Level) -> &mut DeltaTable {
        let i = Level::ALL.iter().position(|l| *l == level).unwrap_or(0);
        &mut self.levels[i].1
    }

    /// UTC dates of the files that raw commits `from..=to` added, or `None`
    /// when a commit file is gone (log cleanup): then everything is recomputed.
    async fn changed_dates(&self, from: i64, to: i64) -> Result<Option<BTreeSet<i32>>> {
        let store = self.raw.log_store().object_store(None);
        let mut dates = BTreeSet::new();
        for version in from..=to {
            let path = Path::from(format!("_delta_log/{version:020}.json"));
            let bytes = match store.get(&path).await {
                Ok(r) => r.bytes().await,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => Err(e),
            }
            .map_err(|e| Error::Log {
                version,
                reason: e.to_string(),
            })?;
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let action: serde_json::Value =
                    serde_json::from_slice(line).map_err(|e| Error::Log {
                        version,
                        reason: format!("not a JSON action: {e}"),
                    })?;
                let Some(date) = action
                    .get("add")
                    .and_then(|a| a.get("partitionValues"))
                    .and_then(|p| p.get(RAW_PARTITION))
                    .and_then(|d| d.as_str())
                else {
                    continue;
                };
                let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|e| Error::Log {
                    version,
                    reason: format!("partition value {date:?}: {e}"),
                })?;
                dates.insert(days_since_epoch(day));
            }
        }
        Ok(Some(dates))
    }
}

/// Name of the in-memory table of candidate rows that one run, backfill or
/// reconcile recounts every level from.
const CANDIDATES: &str = "rollup_candidates";

/// Read, once for all levels, every stored copy of the event ids that have a
/// copy in `ranges` (the whole table when `None`), wherever in the table the
/// copies are: the first copy decides where an event counts. Pass the
/// coarsest (month) ranges: they hold every finer level's windows.
pub(crate) async fn load_candidates(
    ctx: &SessionContext,
    ranges: Option<&[(i64, i64)]>,
) -> Result<()> {
    let query_err = |source| Error::Query {
        table: RAW_TABLE.to_string(),
        source,
    };
    let raw = ctx.table(RAW_TABLE).await.map_err(query_err)?;
    let rows = match ranges {
        None => raw,
        Some(ranges) => {
            let ids = ctx
                .table(RAW_TABLE)
                .await
                .map_err(query_err)?
                .filter(range_filter(ranges, "event_time", Some(RAW_PARTITION)))
                .map_err(query_err)?
                .select(vec![col("event_id").alias("wanted_id")])
                .map_err(query_err)?
                .distinct()
                .map_err(query_err)?;
            raw.join(ids, JoinType::LeftSemi, &["event_id"], &["wanted_id"], None)
                .map_err(query_err)?
        }
    };
    let schema = Arc::new(rows.schema().as_arrow().clone());
    let batches = rows.collect().await.map_err(query_err)?;
    let table = MemTable::try_new(schema, vec![batches]).map_err(query_err)?;
    ctx.deregister_table(CANDIDATES).map_err(query_err)?;
    ctx.register_table(CANDIDATES, Arc::new(table))
        .map_err(query_err)?;
    Ok(())
}

/// Run the rollup query of `level` over the candidates (see
/// [`load_candidates`]), counting the events whose first copy lies in
/// `ranges` (all when `None`); batches come in the table's exact schema.
pub(crate) async fn recount(
    ctx: &SessionContext,
    level: Level,
    ranges: Option<&[(i64, i64)]>,
) -> Result<Vec<RecordBatch>> {
    let query_err = |source| Error::Query {
        table: level.table().to_string(),
        source,
    };
    let in_range = ranges.map_or_else(
        || lit(true),
        |r| range_filter(r, "event_time", Some(RAW_PARTITION)),
    );
    let source = ctx
        .table(CANDIDATES)
        .await
        .and_then(|df| df.with_column("in_range", in_range))
        .map_err(query_err)?;
    ctx.deregister_table(ROLLUP_SOURCE).map_err(query_err)?;
    ctx.register_table(ROLLUP_SOURCE, source.into_view())
        .map_err(query_err)?;
    let batches = ctx
        .sql(&rollup_sql(level.unit()))
        .await
        .map_err(query_err)?
        .collect()
        .await
        .map_err(query_err)?;
    conform(batches, rollup_schema(level)).map_err(|e| query_err(e.into()))
}

/// Recompute one level over `ranges` (or entirely) and swap the result in
/// with one commit. `progress`, when given, is recorded as the raw version
/// the level now reflects (a partial rewrite such as a backfill records none).
#[instrument(name = "compactor.rewrite_level", skip(ctx, table, ranges), fields(table = level.table()))]
pub(crate) async fn rewrite_level(
    ctx: &SessionContext,
    level: Level,
    table: &mut DeltaTable,
    ranges: Option<&[(i64, i64)]>,
    progress: Option<i64>,
) -> Result<usize> {
    let mut batches = recount(ctx, level, ranges).await?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    if batches.is_empty() {
        // No window left: still one commit, so the old windows go and the
        // progress marker is recorded.
        batches.push(RecordBatch::new_empty(rollup_schema(level)));
    }
    let mut props = CommitProperties::default();
    if let Some(version) = progress {
        props = props.with_application_transaction(Transaction::new(PROGRESS_APP_ID, version));
    }
    let mut write = table
        .clone()
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_commit_properties(props);
    if let Some(ranges) = ranges {
        let partition = level.partitioned().then_some(ROLLUP_PARTITION);
        write = write.with_replace_where(range_filter(ranges, "window_start", partition));
    }
    *table = write.await.map_err(delta(level.table()))?;
    Ok(rows)
}

/// `column` within any of the `[start, end)` ranges (microseconds), plus the
/// matching date-partition bounds so whole partitions are skipped.
pub(crate) fn range_filter(ranges: &[(i64, i64)], column: &str, date_column: Option<&str>) -> Expr {
    let ts = |us: i64| {
        lit(ScalarValue::TimestampMicrosecond(
            Some(us),
            Some(UTC.into()),
        ))
    };
    let date = |us: i64| lit(ScalarValue::Date32(Some(us.div_euclid(DAY_MICROS) as i32)));
    ranges
        .iter()
        .map(|&(start, end)| {
            let mut e = col(column).gt_eq(ts(start)).and(col(column).lt(ts(end)));
            if let Some(d) = date_column {
                // The last date is the one holding `end - 1µs`.
                e = e
                    .and(col(d).gt_eq(date(start)))
                    .and(col(d).lt_eq(date(end - 1)));
            }
            e
        })
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false))
}

/// The `[start, end)` ranges (microseconds) of a level's windows that hold
/// the given dates: the dates themselves for minute, hour and day, their
/// whole months for month. Adjacent ranges are merged.
pub fn level_ranges(level: Level, dates: &BTreeSet<i32>) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for &d in dates {
        let (start, end) = match level {
            Level::Month => month_of(d),
            _ => (d as i64 * DAY_MICROS, (d as i64 + 1) * DAY_MICROS),
        };
        match ranges.last_mut() {
            Some(last) if last.1 >= start => last.1 = last.1.max(end),
            _ => ranges.push((start, end)),
        }
    }
    ranges
}

pub(crate) fn days_since_epoch(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163
}

fn month_of(day: i32) -> (i64, i64) {
    let date = NaiveDate::from_num_days_from_ce_opt(day + 719_163).unwrap_or_default();
    let first = date.with_day(1).unwrap_or(date);
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    (
        days_since_epoch(first) as i64 * DAY_MICROS,
        days_since_epoch(next) as i64 * DAY_MICROS,
    )
}

/// Give the query's batches the exact column order and types of the table.
fn conform(
    batches: Vec<RecordBatch>,
    schema: SchemaRef,
) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    batches
        .into_iter()
        .map(|b| {
            let columns = schema
                .fields()
                .iter()
                .map(|f| {
                    let c = b.column_by_name(f.name()).ok_or_else(|| {
                        arrow::error::ArrowError::SchemaError(format!(
                            "rollup query has no column {}",
                            f.name()
                        ))
                    })?;
                    if c.data_type() == f.data_type() {
                        Ok(Arc::clone(c))
                    } else {
                        cast(c, f.data_type())
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(schema.clone(), columns)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> i32 {
        days_since_epoch(NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date"))
    }

    #[test]
    fn epoch_days() {
        // 1970-01-01 is day 0; 2017-11-07 is day 17477 (1510012800 / 86400).
        assert_eq!(day("1970-01-01"), 0);
        assert_eq!(day("2017-11-07"), 17_477);
    }

    #[test]
    fn day_ranges_merge_and_months_cover_whole_months() {
        let dates: BTreeSet<i32> = [
            day("2017-11-06"),
            day("2017-11-07"),
            day("2017-11-30"),
            day("2017-12-01"),
        ]
        .into_iter()
        .collect();
        let us = |s: &str| day(s) as i64 * DAY_MICROS;
        assert_eq!(
            level_ranges(Level::Hour, &dates),
            vec![
                (us("2017-11-06"), us("2017-11-08")),
                (us("2017-11-30"), us("2017-12-02"))
            ]
        );
        assert_eq!(
            level_ranges(Level::Month, &dates),
            vec![(us("2017-11-01"), us("2018-01-01"))]
        );
    }
}
