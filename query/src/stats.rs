//! `ad_click_stats` answered from the rollups, stitched with the raw tail.
//!
//! Each granularity has its rollup table, and each rollup table records the
//! `ad_clicks` version it reflects (the compactor's progress marker). Raw
//! commits after that version are the tail: the UTC dates they added files
//! to (read from the Delta log, cached by version) are the only windows of
//! that level that can differ from a recount. A stats query therefore reads
//! every other window from the rollup table and recounts the tail's windows
//! from `ad_clicks` with the compactor's own rollup SQL (first stored copy
//! of each event id, distinct users per window). The answer equals a raw
//! recount of the snapshot the query sees, however far behind the compactor
//! is; each row says where it came from (`source`), whether the window is
//! final (`is_final`; recounted windows are provisional until rolled up)
//! and whether its unique users are exact (`unique_users_exact`).
//!
//! `EXPLAIN` names the plan's parts in its `AdClickStatsExec` line: the
//! rollup table with the raw version it reflects, and the recounted ranges.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use clicklake_common::changes::{PROGRESS_APP_ID, added_between, level_ranges, range_filter};
use clicklake_common::schema::{RAW_PARTITION, UTC, rollup_schema};
use clicklake_common::time::micros_to_rfc3339;
use clicklake_common::{Level, RAW_TABLE};
use clicklake_sql::{CANDIDATES, FIRST_COPIES_SQL, ROLLUP_SOURCE, rollup_sql};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, JoinType, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, not};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};
use datafusion::prelude::{DataFrame, SessionContext, cast, col, lit};
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt, stream};

/// Columns of an `ad_click_stats` row, in order.
pub const COLUMNS: [&str; 10] = [
    "window_start",
    "ad_id",
    "clicks",
    "unique_users",
    "unique_users_exact",
    "conversions",
    "clicks_by_device",
    "clicks_by_country",
    "is_final",
    "source",
];

/// The schema of `ad_click_stats` at `level`. Every column is declared
/// nullable: the plan behind it (a rollup scan, or its union with a recount)
/// may or may not prove a column non-null, and a declared non-null column
/// that the plan does not prove fails aggregations over the function.
pub fn stats_schema(level: Level) -> SchemaRef {
    let table = rollup_schema(level);
    let fields = COLUMNS.iter().map(|name| match *name {
        "source" => Arc::new(Field::new("source", DataType::Utf8, true)),
        other => table
            .field_with_name(other)
            .map(|f| Arc::new(f.clone().with_nullable(true)))
            .unwrap_or_else(|_| Arc::new(Field::new(other, DataType::Utf8, true))),
    });
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

/// One table at the version a statement reads.
#[derive(Clone)]
pub struct Snapshot {
    pub table: DeltaTable,
    pub provider: Arc<dyn TableProvider>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.table.version())
            .finish_non_exhaustive()
    }
}

/// The UTC dates each raw version added data files to (`None`: its commit
/// file is gone, so anything may have changed). Commits never change once
/// written, so entries never go stale; the oldest are dropped past a bound.
#[derive(Debug, Default)]
pub struct TailCache {
    dates: Mutex<BTreeMap<i64, Option<BTreeSet<i32>>>>,
}

const TAIL_CACHE_VERSIONS: usize = 100_000;

impl TailCache {
    /// Dates that raw versions `from..=to` added files to (`None`: unknown, a
    /// commit file is gone).
    async fn dates(
        &self,
        raw: &DeltaTable,
        from: i64,
        to: i64,
    ) -> datafusion::error::Result<Option<BTreeSet<i32>>> {
        let missing: Vec<i64> = {
            let cached = self.dates.lock().map_err(poisoned)?;
            (from..=to).filter(|v| !cached.contains_key(v)).collect()
        };
        let read: Vec<(i64, Option<BTreeSet<i32>>)> = stream::iter(missing)
            .map(|v| async move {
                added_between(raw, v, v)
                    .await
                    .map(|a| (v, a.map(|a| a.dates)))
                    .map_err(|e| DataFusionError::External(Box::new(e)))
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        let mut cached = self.dates.lock().map_err(poisoned)?;
        cached.extend(read);
        let mut all = BTreeSet::new();
        for v in from..=to {
            match cached.get(&v) {
                Some(Some(dates)) => all.extend(dates.iter().copied()),
                _ => return Ok(None),
            }
        }
        while cached.len() > TAIL_CACHE_VERSIONS {
            cached.pop_first();
        }
        Ok(Some(all))
    }
}

fn poisoned<T>(_: T) -> DataFusionError {
    DataFusionError::Internal("tail cache lock poisoned".into())
}

/// The raw and rollup snapshots one statement reads, with the shared cache
/// of what each raw version added.
#[derive(Debug)]
pub struct StatsTables {
    pub raw: Snapshot,
    pub levels: BTreeMap<Level, Snapshot>,
    pub tail: Arc<TailCache>,
}

/// One call of `ad_click_stats`.
#[derive(Debug)]
pub struct StitchedStats {
    tables: Arc<StatsTables>,
    level: Level,
    /// One ad, or every ad (`None`).
    ad: Option<String>,
    start: i64,
    end: i64,
    schema: SchemaRef,
}

impl StitchedStats {
    pub fn new(
        tables: Arc<StatsTables>,
        level: Level,
        ad: Option<String>,
        start: i64,
        end: i64,
    ) -> Self {
        Self {
            tables,
            level,
            ad,
            start,
            end,
            schema: stats_schema(level),
        }
    }

    /// The windows of this level the rollup table does not reflect yet, as
    /// `[start, end)` ranges overlapping the query, and the raw version the
    /// rollup table reflects (`None`: never rolled up).
    async fn tail(&self) -> datafusion::error::Result<(Vec<(i64, i64)>, Option<i64>)> {
        let level = &self.tables.levels[&self.level];
        let raw = &self.tables.raw.table;
        let snapshot = level
            .table
            .snapshot()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let progress = snapshot
            .transaction_version(level.table.log_store().as_ref(), PROGRESS_APP_ID)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let raw_version = raw.version().map_or(-1, |v| v as i64);
        // Every window starting in [start, end) lies in [start, end + one window).
        let reach = (self.start, self.end.saturating_add(window_span(self.level)));
        let dates = match progress {
            Some(p) if p >= raw_version => Some(BTreeSet::new()),
            Some(p) => self.tables.tail.dates(raw, p + 1, raw_version).await?,
            None => None,
        };
        let ranges = match dates {
            None => vec![reach],
            Some(dates) => level_ranges(self.level, &dates)
                .into_iter()
                .filter(|r| r.1 > reach.0 && r.0 < reach.1)
                .collect(),
        };
        Ok((ranges, progress))
    }

    /// The plan: rollup rows outside the tail, recounted rows inside it.
    async fn plan(
        &self,
        ctx: &SessionContext,
        tail: &[(i64, i64)],
    ) -> datafusion::error::Result<DataFrame> {
        let level_table = self.level.table();
        let windows = col("window_start")
            .gt_eq(ts(self.start))
            .and(col("window_start").lt(ts(self.end)));
        let partition = self.level.partitioned().then_some("window_date");
        let mut from_rollup = ctx
            .table(level_table)
            .await?
            .filter(self.of_ad(windows.clone()))?;
        if !tail.is_empty() {
            from_rollup = from_rollup.filter(not(range_filter(tail, "window_start", partition)))?;
        }
        let from_rollup = self.conform(from_rollup, col("is_final"), level_table)?;
        if tail.is_empty() {
            return Ok(from_rollup);
        }
        let in_tail = self.of_ad(range_filter(tail, "event_time", Some(RAW_PARTITION)));
        // Every stored copy of the ids that have a copy of this ad in the
        // tail: the first copy decides where an event counts.
        let ids = ctx
            .table(RAW_TABLE)
            .await?
            .filter(in_tail.clone())?
            .select(vec![col("event_id").alias("wanted_id")])?
            .distinct()?;
        let candidates = ctx.table(RAW_TABLE).await?.join(
            ids,
            JoinType::LeftSemi,
            &["event_id"],
            &["wanted_id"],
            None,
        )?;
        ctx.register_table(CANDIDATES, candidates.into_view())?;
        let source = ctx
            .sql(FIRST_COPIES_SQL)
            .await?
            .with_column("in_range", in_tail)?;
        ctx.register_table(ROLLUP_SOURCE, source.into_view())?;
        let recounted = ctx
            .sql(&rollup_sql(self.level.unit()))
            .await?
            .filter(windows)?;
        let recounted = self.conform(recounted, lit(false), RAW_TABLE)?;
        from_rollup.union(recounted)
    }

    /// `e`, for this call's ad only when it names one.
    fn of_ad(&self, e: Expr) -> Expr {
        match &self.ad {
            Some(ad) => col("ad_id").eq(lit(ad.clone())).and(e),
            None => e,
        }
    }

    /// `df` with the columns of [`stats_schema`], in order and type.
    fn conform(
        &self,
        df: DataFrame,
        is_final: Expr,
        source: &str,
    ) -> datafusion::error::Result<DataFrame> {
        let columns = self
            .schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "is_final" => is_final.clone().alias("is_final"),
                "source" => lit(source.to_string()).alias("source"),
                name => cast(col(name), f.data_type().clone()).alias(name),
            })
            .collect::<Vec<_>>();
        df.select(columns)
    }
}

/// The longest window of a level.
fn window_span(level: Level) -> i64 {
    const S: i64 = 1_000_000;
    match level {
        Level::Minute => 60 * S,
        Level::Hour => 3_600 * S,
        Level::Day => 86_400 * S,
        Level::Month => 31 * 86_400 * S,
    }
}

fn ts(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some(UTC.into()),
    ))
}

#[async_trait]
impl TableProvider for StitchedStats {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let (tail, progress) = self.tail().await?;
        // A session of its own (the caller's configuration and memory pool)
        // with exactly the snapshots of the statement.
        let ctx =
            SessionContext::new_with_config_rt(state.config().clone(), state.runtime_env().clone());
        clicklake_sql::sketch::register(&ctx);
        ctx.register_table(RAW_TABLE, self.tables.raw.provider.clone())?;
        let level = &self.tables.levels[&self.level];
        ctx.register_table(self.level.table(), level.provider.clone())?;
        let mut df = self
            .plan(&ctx, &tail)
            .await?
            .sort(vec![col("window_start").sort(true, false)])?;
        if let Some(p) = projection {
            let names: Vec<&str> = p
                .iter()
                .map(|i| self.schema.field(*i).name().as_str())
                .collect();
            df = df.select_columns(&names)?;
        }
        let input = df.create_physical_plan().await?;
        Ok(Arc::new(AdClickStatsExec {
            input,
            description: describe(self.level, progress, &tail),
        }))
    }
}

/// What `EXPLAIN` says of a stats plan.
fn describe(level: Level, progress: Option<i64>, tail: &[(i64, i64)]) -> String {
    let rollup = match progress {
        Some(v) => format!("{} (reflects {RAW_TABLE} v{v})", level.table()),
        None => format!("{} (not rolled up yet)", level.table()),
    };
    if tail.is_empty() {
        return format!("level={}, from {rollup}", level.unit());
    }
    let ranges = tail
        .iter()
        .map(|(s, e)| format!("[{}, {})", micros_to_rfc3339(*s), micros_to_rfc3339(*e)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "level={}, from {rollup}, recounted from {RAW_TABLE}: {ranges}",
        level.unit()
    )
}

/// The stats plan, named in `EXPLAIN` output; it runs its input unchanged.
#[derive(Debug)]
pub struct AdClickStatsExec {
    input: Arc<dyn ExecutionPlan>,
    description: String,
}

impl DisplayAs for AdClickStatsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "AdClickStatsExec: {}", self.description)
    }
}

impl ExecutionPlan for AdClickStatsExec {
    fn name(&self) -> &str {
        "AdClickStatsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|c| {
            DataFusionError::Internal(format!("AdClickStatsExec takes 1 child, got {}", c.len()))
        })?;
        Ok(Arc::new(AdClickStatsExec {
            input,
            description: self.description.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
