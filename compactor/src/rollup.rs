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
//! Finality: the watermark is the newest event time in `ad_clicks` minus
//! the allowed lateness. A window that ends at or before it is final
//! (`is_final`), a later one provisional. A run also rewrites the dates the
//! watermark moved across, so the flags stay current; a final window whose
//! values change is counted as revised (`revision`, `revised_at`), and the
//! events that arrived behind the watermark are counted by lateness
//! (`clicklake_compactor_late_events_total`).
//!
//! Concurrency: ingest may append to `ad_clicks` while a run works, since
//! the run reads one pinned raw snapshot and records exactly that version.
//! One compactor per store is expected; a second one would rewrite the same
//! windows with the same rows (Delta's conflict check retries or fails the
//! later commit), so it is wasteful but not wrong.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{Int64Type, SchemaRef};
use clicklake_common::changes::added_between;
use clicklake_common::schema::{RAW_PARTITION, ROLLUP_PARTITION, raw_schema, rollup_schema};
use clicklake_common::{Level, RAW_TABLE, StorageConfig};
use clicklake_sql::{CANDIDATES, FIRST_COPIES_SQL, ROLLUP_SOURCE, finality_sql, rollup_sql};
use datafusion::common::JoinType;
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit};
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use tracing::{info, instrument};

use crate::error::{Error, Result};
use crate::metrics;

pub(crate) use clicklake_common::changes::range_filter;
pub use clicklake_common::changes::{DAY_MICROS, PROGRESS_APP_ID, level_ranges};

/// The column of the raw scan that names each row's data file.
const FILE_COLUMN: &str = "__clicklake_file";

/// The time of a rewrite, in microseconds since the epoch (a mock in tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// What a rewrite needs to flag windows final and count revisions, all in
/// microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finality {
    /// Windows ending at or before it are final.
    pub watermark: i64,
    /// The watermark the replaced rows were written under.
    pub previous: i64,
    /// The time of the rewrite.
    pub now: i64,
}

/// The watermark of a newest event time (`i64::MIN`: no event yet).
fn watermark_of(max_event_time: Option<i64>, lateness: i64) -> i64 {
    max_event_time.map_or(i64::MIN, |t| t.saturating_sub(lateness))
}

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
    /// The watermark after the run (µs since the epoch; `i64::MIN`: none).
    pub watermark: i64,
    /// Events of this run that arrived behind the previous watermark.
    pub late_events: u64,
    /// Rows the run's new raw files hold (counted with `late_events`; 0 on
    /// a first run, which has no previous watermark).
    pub new_events: u64,
    /// Stored rows of the recounted windows' event ids, copies included.
    pub stored_rows: u64,
    /// Distinct event ids among them.
    pub distinct_events: u64,
}

/// The raw table and the four rollup tables of one store.
pub struct Rollups {
    raw: DeltaTable,
    levels: Vec<(Level, DeltaTable)>,
    /// Raw version known to need no work (newer than the recorded progress
    /// when commits added no files, e.g. an empty write).
    checked: Option<i64>,
    /// Allowed lateness, µs.
    lateness: i64,
    clock: Clock,
    /// The newest event time at a raw version (`None` inside: no events).
    newest: Option<(i64, Option<i64>)>,
}

impl std::fmt::Debug for Rollups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollups")
            .field("checked", &self.checked)
            .field("lateness", &self.lateness)
            .field("newest", &self.newest)
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
            lateness: DEFAULT_LATENESS.as_micros() as i64,
            clock: Arc::new(|| chrono::Utc::now().timestamp_micros()),
            newest: None,
        })
    }

    /// How far behind the newest event time a window stays provisional.
    pub fn with_allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = i64::try_from(lateness.as_micros()).unwrap_or(i64::MAX);
        self
    }

    /// The clock that stamps `revised_at` (tests pass a mock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The newest event time of `ad_clicks` at `version`.
    async fn newest_at(&mut self, version: i64) -> Result<Option<i64>> {
        if let Some((v, newest)) = self.newest
            && v == version
        {
            return Ok(newest);
        }
        let ctx = self.raw_context(version).await?;
        let newest = newest_event_time(&ctx, RAW_TABLE).await?;
        self.newest = Some((version, newest));
        Ok(newest)
    }

    /// The finality of a one-off rewrite (backfill, repair) over a pinned
    /// raw session: the watermark of the whole table, now.
    pub(crate) async fn finality_of(&self, ctx: &SessionContext) -> Result<Finality> {
        let watermark = watermark_of(newest_event_time(ctx, RAW_TABLE).await?, self.lateness);
        Ok(Finality {
            watermark,
            previous: watermark,
            now: (self.clock)(),
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
        let newest = match progress {
            Some(p) => self.newest_at(p).await?,
            None => None,
        };
        let previous = watermark_of(newest, self.lateness);
        if done >= current {
            return Ok(RollupMetrics {
                raw_version: current,
                watermark: previous,
                ..Default::default()
            });
        }
        let changed = match progress {
            Some(p) => added_between(&self.raw, p + 1, current)
                .await
                .map_err(|e| Error::Log {
                    version: e.version,
                    reason: e.reason,
                })?,
            None => None,
        };
        let mut m = RollupMetrics {
            raw_versions: (current - done) as u64,
            raw_version: current,
            dates: changed.as_ref().map(|c| c.dates.len()),
            watermark: previous,
            ..Default::default()
        };
        if changed.as_ref().is_some_and(|c| c.dates.is_empty()) {
            // The new commits added no data files: nothing to recompute.
            self.checked = Some(current);
            return Ok(m);
        }
        let ctx = self.raw_context(current).await?;
        let mut dates = changed.as_ref().map(|c| c.dates.clone());
        load_candidates(&ctx, dates.as_ref().map(month_ranges).as_deref()).await?;
        (m.stored_rows, m.distinct_events) = candidate_counts(&ctx).await?;
        let newest = newest.max(newest_event_time(&ctx, CANDIDATES).await?);
        let watermark = watermark_of(newest, self.lateness);
        if let Some(dates) = dates.as_mut()
            && previous > i64::MIN
            && watermark > previous
        {
            // Windows the watermark moved across change their flag: rewrite
            // their dates too, with candidates that cover them.
            let first = previous.div_euclid(DAY_MICROS) as i32;
            let last = (watermark - 1).div_euclid(DAY_MICROS) as i32;
            let before = dates.len();
            dates.extend(first..=last);
            if dates.len() > before {
                load_candidates(&ctx, Some(&month_ranges(dates))).await?;
            }
        }
        if let Some(c) = &changed
            && previous > i64::MIN
        {
            (m.late_events, m.new_events) =
                count_late(&ctx, &c.files, newest.unwrap_or(0), previous).await?;
        }
        let finality = Finality {
            watermark,
            previous,
            now: (self.clock)(),
        };
        for (i, (level, table)) in self.levels.iter_mut().enumerate() {
            let ranges = dates.as_ref().map(|d| level_ranges(*level, d));
            m.rows[i] = rewrite_level(
                &ctx,
                *level,
                table,
                ranges.as_deref(),
                Some(current),
                finality,
            )
            .await?;
        }
        self.checked = Some(current);
        self.newest = Some((current, newest));
        m.watermark = watermark;
        metrics::ROLLED_UP_VERSION.set(current);
        metrics::WATERMARK.set(watermark.max(0) / 1_000_000);
        info!(raw_version = current, dates = ?m.dates, rows = ?m.rows, late = m.late_events, "rollups updated");
        Ok(m)
    }

    /// The raw table's newest version, after a refresh of every table
    /// (their file counts go to `clicklake_compactor_table_files`).
    pub async fn refresh(&mut self) -> Result<i64> {
        self.raw.update_state().await.map_err(delta(RAW_TABLE))?;
        for (level, table) in &mut self.levels {
            table.update_state().await.map_err(delta(level.table()))?;
        }
        let tables = std::iter::once((RAW_TABLE, &self.raw))
            .chain(self.levels.iter().map(|(l, t)| (l.table(), t)));
        for (name, table) in tables {
            if let Ok(state) = table.snapshot() {
                metrics::TABLE_FILES
                    .with_label_values(&[name])
                    .set(state.log_data().num_files() as i64);
            }
        }
        Ok(self.raw.version().unwrap_or(0) as i64)
    }

    /// A session with `ad_clicks` registered at one pinned version.
    pub(crate) async fn raw_context(&self, version: i64) -> Result<SessionContext> {
        let query_err = |source| Error::Query {
            table: RAW_TABLE.to_string(),
            source,
        };
        let ctx = session();
        let mut pinned = self.raw.clone();
        pinned
            .load_version(version as u64)
            .await
            .map_err(delta(RAW_TABLE))?;
        pinned
            .update_datafusion_session(&ctx.state())
            .map_err(delta(RAW_TABLE))?;
        let provider = pinned
            .table_provider()
            .with_file_column(FILE_COLUMN)
            .await
            .map_err(query_err)?;
        ctx.register_table(RAW_TABLE, provider).map_err(query_err)?;
        Ok(ctx)
    }

    /// The rollup table of a level.
    pub(crate) fn level_table(&mut self, level: Level) -> &mut DeltaTable {
        let i = Level::ALL.iter().position(|l| *l == level).unwrap_or(0);
        &mut self.levels[i].1
    }
}

/// A session for compactor queries: strings read as plain `Utf8` (as the
/// query server reads them), the sketch functions registered.
pub(crate) fn session() -> SessionContext {
    let mut config = datafusion::prelude::SessionConfig::new();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let ctx = SessionContext::new_with_config(config);
    clicklake_sql::sketch::register(&ctx);
    ctx
}

/// Allowed lateness when none is configured.
pub const DEFAULT_LATENESS: Duration = Duration::from_secs(3600);

fn month_ranges(dates: &BTreeSet<i32>) -> Vec<(i64, i64)> {
    level_ranges(Level::Month, dates)
}

pub(crate) fn query_err(
    table: &str,
) -> impl FnOnce(datafusion::error::DataFusionError) -> Error + '_ {
    move |source| Error::Query {
        table: table.to_string(),
        source,
    }
}

/// The newest `event_time` of a registered table, µs since the epoch.
async fn newest_event_time(ctx: &SessionContext, table: &str) -> Result<Option<i64>> {
    let batches = ctx
        .sql(&format!(
            "SELECT CAST(max(event_time) AS BIGINT) FROM {table}"
        ))
        .await
        .map_err(query_err(table))?
        .collect()
        .await
        .map_err(query_err(table))?;
    Ok(batches
        .first()
        .filter(|b| b.num_rows() > 0 && b.column(0).is_valid(0))
        .map(|b| b.column(0).as_primitive::<Int64Type>().value(0)))
}

/// Lateness buckets of `clicklake_compactor_late_events_total`: an event
/// falls in the first whose bound (µs behind the newest event) it is within.
pub const LATENESS_BUCKETS: [(&str, i64); 6] = [
    ("1h", 3_600_000_000),
    ("6h", 6 * 3_600_000_000),
    ("1d", DAY_MICROS),
    ("7d", 7 * DAY_MICROS),
    ("30d", 30 * DAY_MICROS),
    ("older", i64::MAX),
];

/// Count the rows of `files` (in the candidates) with an event time behind
/// `watermark`, by how far behind `newest` they are, into the late-events
/// metric; returns the late total and the rows of `files`.
async fn count_late(
    ctx: &SessionContext,
    files: &BTreeSet<String>,
    newest: i64,
    watermark: i64,
) -> Result<(u64, u64)> {
    if files.is_empty() {
        return Ok((0, 0));
    }
    let names = files
        .iter()
        .map(|f| format!("'{}'", f.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",");
    let bucket = LATENESS_BUCKETS
        .iter()
        .map(|(label, bound)| format!("WHEN lag <= {bound} THEN '{label}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let sql = format!(
        "SELECT CASE WHEN late THEN CASE {bucket} END ELSE '' END AS lateness, count(*) AS n FROM (
             SELECT {newest} - CAST(event_time AS BIGINT) AS lag,
                    CAST(event_time AS BIGINT) < {watermark} AS late
             FROM {CANDIDATES}
             WHERE regexp_replace(CAST({FILE_COLUMN} AS VARCHAR), '^.*/', '') IN ({names})
         ) GROUP BY 1"
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(query_err(RAW_TABLE))?
        .collect()
        .await
        .map_err(query_err(RAW_TABLE))?;
    let (mut late, mut all) = (0, 0);
    for b in &batches {
        let labels =
            crate::housekeeping::utf8(b.column(0)).map_err(|e| query_err(RAW_TABLE)(e.into()))?;
        let labels = labels.as_string::<i32>();
        let counts = b.column(1).as_primitive::<Int64Type>();
        for row in 0..b.num_rows() {
            let n = counts.value(row) as u64;
            all += n;
            if labels.value(row).is_empty() {
                continue;
            }
            metrics::LATE_EVENTS
                .with_label_values(&[labels.value(row)])
                .inc_by(n);
            late += n;
        }
    }
    Ok((late, all))
}

/// Name of the in-memory table of the first copies among the candidates,
/// which every level is recounted from.
const FIRST_COPIES: &str = "rollup_first_copies";

/// Read, once for all levels, every stored copy of the event ids that have a
/// copy in `ranges` (the whole table when `None`), wherever in the table the
/// copies are, and keep the first copy of each id, which decides where an
/// event counts ([`CANDIDATES`] and [`FIRST_COPIES`]). Pass the coarsest
/// (month) ranges: they hold every finer level's windows.
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
    // Plain Utf8 strings: the scan may yield string views, on which
    // count(DISTINCT) and grouping fall back to much slower paths.
    let columns: Vec<Expr> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            arrow::datatypes::DataType::Utf8View => {
                datafusion::prelude::cast(col(f.name()), arrow::datatypes::DataType::Utf8)
                    .alias(f.name())
            }
            _ => col(f.name()),
        })
        .collect();
    let rows = rows.select(columns).map_err(query_err)?;
    materialize(ctx, CANDIDATES, rows)
        .await
        .map_err(query_err)?;
    let first = ctx
        .sql(FIRST_COPIES_SQL)
        .await
        .and_then(|df| df.drop_columns(&[FILE_COLUMN]))
        .map_err(query_err)?;
    materialize(ctx, FIRST_COPIES, first)
        .await
        .map_err(query_err)
}

/// Rows of the candidates and of their first copies (the distinct events).
async fn candidate_counts(ctx: &SessionContext) -> Result<(u64, u64)> {
    let mut counts = [0u64; 2];
    for (i, table) in [CANDIDATES, FIRST_COPIES].iter().enumerate() {
        counts[i] = ctx
            .table(*table)
            .await
            .map_err(query_err(RAW_TABLE))?
            .count()
            .await
            .map_err(query_err(RAW_TABLE))? as u64;
    }
    Ok((counts[0], counts[1]))
}

/// Run `df` and register its rows in memory as `name` (replacing any).
async fn materialize(
    ctx: &SessionContext,
    name: &str,
    df: DataFrame,
) -> datafusion::error::Result<()> {
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    let table = MemTable::try_new(schema, vec![batches])?;
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

/// Run the rollup query of `level` over the candidates (see
/// [`load_candidates`]), counting the events whose first copy lies in
/// `ranges` (all when `None`); batches come in the table's exact schema
/// without the finality columns ([`counts_schema`]).
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
        .table(FIRST_COPIES)
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
    conform(batches, counts_schema(level)).map_err(|e| query_err(e.into()))
}

/// Columns of the finality query, not of the recount.
const FINALITY_COLUMNS: [&str; 3] = ["is_final", "revision", "revised_at"];

/// The rollup schema of `level` without the finality columns.
pub(crate) fn counts_schema(level: Level) -> SchemaRef {
    let schema = rollup_schema(level);
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !FINALITY_COLUMNS.contains(&schema.field(i).name().as_str()))
        .collect();
    Arc::new(
        schema
            .project(&keep)
            .unwrap_or_else(|_| unreachable!("indices are in range")),
    )
}

/// The rows of a rollup table within `ranges` (all when `None`).
pub(crate) async fn level_rows(
    ctx: &SessionContext,
    level: Level,
    table: &DeltaTable,
    ranges: Option<&[(i64, i64)]>,
) -> Result<DataFrame> {
    let query_err = query_err(level.table());
    let run = async {
        let provider = table.table_provider().await?;
        let rows = ctx.read_table(provider)?;
        match ranges {
            Some(r) => {
                let partition = level.partitioned().then_some(ROLLUP_PARTITION);
                rows.filter(range_filter(r, "window_start", partition))
            }
            None => Ok(rows),
        }
    };
    table
        .update_datafusion_session(&ctx.state())
        .map_err(delta(level.table()))?;
    run.await.map_err(query_err)
}

/// Recount `level` over `ranges` and flag each window final or provisional
/// and revised or not, against the rows of `table` it replaces.
async fn flagged(
    ctx: &SessionContext,
    level: Level,
    table: &DeltaTable,
    ranges: Option<&[(i64, i64)]>,
    finality: Finality,
) -> Result<Vec<RecordBatch>> {
    let fresh = recount(ctx, level, ranges).await?;
    let previous = level_rows(ctx, level, table, ranges).await?;
    let query_err = |source| Error::Query {
        table: level.table().to_string(),
        source,
    };
    let fresh = MemTable::try_new(counts_schema(level), vec![fresh]).map_err(query_err)?;
    for name in ["fresh", "previous"] {
        ctx.deregister_table(name).map_err(query_err)?;
    }
    ctx.register_table("fresh", Arc::new(fresh))
        .map_err(query_err)?;
    ctx.register_table("previous", previous.into_view())
        .map_err(query_err)?;
    let sql = finality_sql(
        level.unit(),
        finality.watermark,
        finality.previous,
        finality.now,
    );
    let batches = ctx
        .sql(&sql)
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
    finality: Finality,
) -> Result<usize> {
    let mut batches = flagged(ctx, level, table, ranges, finality).await?;
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

/// Give the query's batches the exact column order and types of the table.
pub(crate) fn conform(
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
                            "query result has no column {}",
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
