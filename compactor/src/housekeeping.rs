//! Housekeeping of the lake: `optimize` (drop later copies of event ids,
//! cluster and bin-pack small files), `vacuum` (delete unreferenced files
//! past a retention) and per-table retention of old rows.
//!
//! Optimize is safe while ingest appends: every rewrite removes only files
//! it read, and ingest commits are blind appends, which a
//! `writeSerializable` table lets through. File packing commits with
//! `dataChange: false`; copy removal rewrites each affected date without the
//! rows that are provably later copies (a strictly later `ingest_time` than
//! the first copy of the same id), so the first copy, the one every count
//! uses, is never touched. A commit that conflicts anyway fails cleanly and
//! the next run tries again.
//!
//! Checkpoints: Delta writes one every 100 commits (`delta.checkpointInterval`),
//! so opening a table reads one checkpoint and at most 99 commit files.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use clicklake_common::schema::{RAW_PARTITION, UTC};
use clicklake_common::{Level, RAW_TABLE, StorageConfig};
use datafusion::common::ScalarValue;
use datafusion::prelude::{Expr, SessionContext, col, lit};
use deltalake::DeltaTable;
use deltalake::kernel::schema::partitions::{FilterOp, FilterValue};
use deltalake::operations::optimize::OptimizeType;
use tracing::info;

use crate::error::{Error, Result};
use crate::rollup::{delta, query_err};

/// The raw table's files are clustered by `ad_id` (a Z-order of one column
/// is a sort), so a per-ad scan reads only the row groups of that ad; a
/// user's few clicks are found through the bloom filters on these columns.
pub const CLUSTER_COLUMNS: [&str; 1] = ["ad_id"];

/// Columns with a bloom filter in the raw table's clustered files.
pub const BLOOM_COLUMNS: [&str; 2] = ["ad_id", "user_id"];

/// Housekeeping flags, shared by the compactor loop and the CLI jobs.
#[derive(Debug, Clone, clap::Args)]
pub struct HousekeepingArgs {
    /// Target size of a data file after optimize (bytes; suffixes k, M, G as in 128M).
    #[arg(long, env = "CLICKLAKE_TARGET_FILE_SIZE", default_value = "128M", value_parser = parse_size)]
    pub target_file_size: NonZeroU64,

    /// Unreferenced files younger than this are kept by vacuum, so readers of
    /// recent table versions keep their files. Below Delta's 7 days needs --force.
    #[arg(long, env = "CLICKLAKE_VACUUM_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub vacuum_retention: Duration,

    /// Keep raw events this long (by event date; unset: forever).
    #[arg(long, env = "CLICKLAKE_RAW_RETENTION", value_parser = humantime::parse_duration)]
    pub raw_retention: Option<Duration>,

    /// Keep minute windows this long (unset: forever).
    #[arg(long, env = "CLICKLAKE_MINUTE_RETENTION", value_parser = humantime::parse_duration)]
    pub minute_retention: Option<Duration>,

    /// Keep hour windows this long (unset: forever).
    #[arg(long, env = "CLICKLAKE_HOUR_RETENTION", value_parser = humantime::parse_duration)]
    pub hour_retention: Option<Duration>,

    /// Keep day windows this long (unset: forever).
    #[arg(long, env = "CLICKLAKE_DAY_RETENTION", value_parser = humantime::parse_duration)]
    pub day_retention: Option<Duration>,

    /// Keep month windows this long (unset: forever).
    #[arg(long, env = "CLICKLAKE_MONTH_RETENTION", value_parser = humantime::parse_duration)]
    pub month_retention: Option<Duration>,
}

impl Default for HousekeepingArgs {
    fn default() -> Self {
        Self {
            target_file_size: NonZeroU64::new(128 << 20).unwrap_or(NonZeroU64::MIN),
            vacuum_retention: Duration::from_secs(7 * 86_400),
            raw_retention: None,
            minute_retention: None,
            hour_retention: None,
            day_retention: None,
            month_retention: None,
        }
    }
}

impl HousekeepingArgs {
    /// The retention of a table (`None`: forever).
    pub fn retention(&self, table: &str) -> Option<Duration> {
        match Level::ALL.into_iter().find(|l| l.table() == table) {
            None => self.raw_retention,
            Some(Level::Minute) => self.minute_retention,
            Some(Level::Hour) => self.hour_retention,
            Some(Level::Day) => self.day_retention,
            Some(Level::Month) => self.month_retention,
        }
    }
}

/// Parse `128M`, `64k`, `1G` or a plain byte count.
pub fn parse_size(s: &str) -> Result<NonZeroU64, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 10),
        Some((i, 'm' | 'M')) => (&s[..i], 20),
        Some((i, 'g' | 'G')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 128M, 64k or 1048576"))?;
    n.checked_mul(1 << shift)
        .and_then(NonZeroU64::new)
        .ok_or_else(|| format!("{s:?} must be between 1 byte and 16 EiB"))
}

/// What optimize did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptimizeReport {
    pub table: String,
    pub files_before: usize,
    pub files_after: usize,
    /// Later copies of event ids deleted (raw table only).
    pub copies_removed: usize,
    /// Rows deleted by retention.
    pub expired_rows: usize,
}

/// Optimize one table: delete later copies (raw), enforce its retention,
/// cluster (raw, by `ad_id`) or bin-pack (rollups) its small files.
pub async fn optimize_table(
    storage: &StorageConfig,
    name: &str,
    args: &HousekeepingArgs,
    now_us: i64,
) -> Result<OptimizeReport> {
    let mut table = storage.open(name).await?;
    let mut report = OptimizeReport {
        table: name.to_string(),
        files_before: file_count(&table, name)?,
        ..Default::default()
    };
    if name == RAW_TABLE {
        report.copies_removed = remove_later_copies(&mut table).await?;
    }
    if let Some(keep) = args.retention(name) {
        report.expired_rows = expire(&mut table, name, now_us, keep).await?;
    }
    let crowded = crowded_partitions(&table, name)?;
    let partitioned = !table
        .snapshot()
        .map_err(delta(name))?
        .metadata()
        .partition_columns()
        .is_empty();
    if !crowded.is_empty() {
        let values: Vec<&str> = crowded.iter().map(String::as_str).collect();
        let column = partition_column(name);
        let filters = [(column, FilterOp::In, FilterValue::Set(values))];
        let mut job = table
            .clone()
            .optimize()
            .with_target_size(args.target_file_size);
        if partitioned {
            job = job.with_filters(&filters);
        }
        if name == RAW_TABLE {
            job = job
                .with_type(OptimizeType::ZOrder(
                    CLUSTER_COLUMNS.iter().map(|c| c.to_string()).collect(),
                ))
                .with_writer_properties(clustered_writer());
        }
        let (optimized, m) = job.await.map_err(delta(name))?;
        info!(
            table = name,
            added = m.num_files_added,
            removed = m.num_files_removed,
            "optimized"
        );
        table = optimized;
    }
    report.files_after = file_count(&table, name)?;
    Ok(report)
}

/// Rows per row group of a clustered raw file: small enough that row-group
/// statistics and bloom filters skip most of a file.
pub const CLUSTER_ROW_GROUP_ROWS: usize = 65_536;

/// Parquet settings of the raw table's clustered files: small row groups,
/// and bloom filters for one-ad and one-user lookups.
fn clustered_writer() -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::file::properties::WriterProperties;
    use deltalake::parquet::schema::types::ColumnPath;
    let mut props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(CLUSTER_ROW_GROUP_ROWS))
        .set_compression(deltalake::parquet::basic::Compression::SNAPPY);
    for column in BLOOM_COLUMNS {
        props = props.set_column_bloom_filter_enabled(ColumnPath::from(column), true);
    }
    props.build()
}

fn partition_column(name: &str) -> &'static str {
    if name == RAW_TABLE {
        RAW_PARTITION
    } else {
        clicklake_common::schema::ROLLUP_PARTITION
    }
}

fn file_count(table: &DeltaTable, name: &str) -> Result<usize> {
    Ok(table.get_file_uris().map_err(delta(name))?.count())
}

/// Partitions holding two files or more ("" for an unpartitioned table).
fn crowded_partitions(table: &DeltaTable, name: &str) -> Result<Vec<String>> {
    let key = format!("{}=", partition_column(name));
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    for uri in table.get_file_uris().map_err(delta(name))? {
        let value = uri
            .split('/')
            .find_map(|seg| seg.strip_prefix(&key))
            .unwrap_or_default()
            .to_string();
        *files.entry(value).or_default() += 1;
    }
    Ok(files
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|(p, _)| p)
        .collect())
}

fn session(table: &DeltaTable, name: &str) -> Result<SessionContext> {
    let ctx = crate::rollup::session();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(delta(name))?;
    Ok(ctx)
}

/// A string column as `Utf8`, whichever string type the scan produced.
pub(crate) fn utf8(
    a: &arrow::array::ArrayRef,
) -> Result<arrow::array::ArrayRef, arrow::error::ArrowError> {
    arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8)
}

fn ts(us: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(us),
        Some(UTC.into()),
    ))
}

/// Rewrite every date partition that holds a copy of an event id stored
/// later (strictly later `ingest_time`) than the id's first copy, without
/// those copies: one `replaceWhere` commit per date, so the rows appended to
/// the date meanwhile (in files the rewrite did not read) stay. Returns the
/// rows removed.
async fn remove_later_copies(table: &mut DeltaTable) -> Result<usize> {
    let ctx = session(table, RAW_TABLE)?;
    let provider = table.table_provider().await.map_err(query_err(RAW_TABLE))?;
    ctx.register_table(RAW_TABLE, provider)
        .map_err(query_err(RAW_TABLE))?;
    let collect = |sql: String| {
        let ctx = ctx.clone();
        async move { ctx.sql(&sql).await?.collect().await }
    };
    let firsts = collect(format!(
        "SELECT event_id AS first_id, min(ingest_time) AS first_ingest FROM {RAW_TABLE}
         GROUP BY event_id HAVING max(ingest_time) > min(ingest_time)"
    ))
    .await
    .map_err(query_err(RAW_TABLE))?;
    if firsts.iter().all(|b| b.num_rows() == 0) {
        return Ok(0);
    }
    let schema = firsts[0].schema();
    let firsts = datafusion::datasource::MemTable::try_new(schema, vec![firsts])
        .map_err(query_err(RAW_TABLE))?;
    ctx.register_table("firsts", std::sync::Arc::new(firsts))
        .map_err(query_err(RAW_TABLE))?;
    let dates = collect(format!(
        "SELECT DISTINCT CAST(r.{RAW_PARTITION} AS INT) FROM {RAW_TABLE} r
         JOIN firsts f ON r.event_id = f.first_id AND r.ingest_time > f.first_ingest"
    ))
    .await
    .map_err(query_err(RAW_TABLE))?;
    let columns = clicklake_common::schema::raw_schema()
        .fields()
        .iter()
        .map(|f| format!("r.{}", f.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut removed = 0;
    for b in &dates {
        let days = b.column(0).as_primitive::<arrow::datatypes::Int32Type>();
        for day in days.iter().flatten() {
            let in_date = |alias: &str| format!("CAST({alias}{RAW_PARTITION} AS INT) = {day}");
            let kept = collect(format!(
                "SELECT {columns} FROM {RAW_TABLE} r LEFT JOIN firsts f ON r.event_id = f.first_id
                 WHERE {} AND (f.first_ingest IS NULL OR r.ingest_time <= f.first_ingest)",
                in_date("r.")
            ))
            .await
            .map_err(query_err(RAW_TABLE))?;
            let before = collect(format!(
                "SELECT count(*) FROM {RAW_TABLE} WHERE {}",
                in_date("")
            ))
            .await
            .map_err(query_err(RAW_TABLE))?;
            let before = before
                .first()
                .map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0));
            let after: usize = kept.iter().map(|b| b.num_rows()).sum();
            let date = col(RAW_PARTITION).eq(lit(ScalarValue::Date32(Some(day))));
            *table = table
                .clone()
                .write(
                    crate::rollup::conform(kept, clicklake_common::schema::raw_schema())
                        .map_err(|e| query_err(RAW_TABLE)(e.into()))?,
                )
                .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
                .with_replace_where(date)
                .await
                .map_err(delta(RAW_TABLE))?;
            removed += (before as usize).saturating_sub(after);
        }
    }
    if removed > 0 {
        info!(removed, "later copies of event ids removed");
    }
    Ok(removed)
}

/// Delete the rows older than `keep` before `now_us`: raw events by whole
/// event dates, rollup rows by `window_start`. Returns the rows deleted.
async fn expire(table: &mut DeltaTable, name: &str, now_us: i64, keep: Duration) -> Result<usize> {
    let cutoff = now_us.saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX));
    let predicate = if name == RAW_TABLE {
        let day = cutoff.div_euclid(crate::rollup::DAY_MICROS) as i32;
        col(RAW_PARTITION).lt(lit(ScalarValue::Date32(Some(day))))
    } else {
        col("window_start").lt(ts(cutoff))
    };
    // A delete commits even when nothing matches: count first.
    let ctx = session(table, name)?;
    let provider = table.table_provider().await.map_err(query_err(name))?;
    let expired = ctx
        .read_table(provider)
        .and_then(|df| df.filter(predicate.clone()))
        .map_err(query_err(name))?
        .count()
        .await
        .map_err(query_err(name))?;
    if expired == 0 {
        return Ok(0);
    }
    let (updated, _) = table
        .clone()
        .delete()
        .with_predicate(predicate)
        .await
        .map_err(delta(name))?;
    *table = updated;
    info!(table = name, rows = expired, "expired by retention");
    Ok(expired)
}

/// What vacuum did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumReport {
    pub table: String,
    /// Files deleted (or, in a dry run, that would be).
    pub files: Vec<String>,
}

/// Delete the files no version younger than `retention` references.
pub async fn vacuum_table(
    storage: &StorageConfig,
    name: &str,
    retention: Duration,
    force: bool,
    dry_run: bool,
) -> Result<VacuumReport> {
    let table = storage.open(name).await?;
    let retention = chrono::Duration::from_std(retention)
        .map_err(|e| Error::Range(format!("vacuum retention: {e}")))?;
    let (_, m) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(!force)
        .with_dry_run(dry_run)
        .await
        .map_err(delta(name))?;
    Ok(VacuumReport {
        table: name.to_string(),
        files: m.files_deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_refuse_nonsense() {
        assert_eq!(parse_size("128M").map(NonZeroU64::get), Ok(128 << 20));
        assert_eq!(parse_size("64k").map(NonZeroU64::get), Ok(64 << 10));
        assert_eq!(parse_size("1048576").map(NonZeroU64::get), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn each_table_has_its_retention() {
        let args = HousekeepingArgs {
            raw_retention: Some(Duration::from_secs(1)),
            hour_retention: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        assert_eq!(args.retention(RAW_TABLE), Some(Duration::from_secs(1)));
        assert_eq!(
            args.retention("ad_clicks_hour"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(args.retention("ad_clicks_month"), None);
    }
}
