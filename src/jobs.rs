//! `clicklake backfill`, `reconcile`, `optimize` and `vacuum`: compactor
//! jobs run from the command line against a store (they may run while
//! `serve` runs).

use anyhow::{Context, bail};
use clicklake_common::storage::StoreArgs;
use clicklake_common::time::{micros_to_rfc3339, parse_time_arg};
use clicklake_common::{Level, StorageConfig};
use clicklake_compactor::housekeeping::{optimize_table, vacuum_table};
use clicklake_compactor::{Backfill, HousekeepingArgs, Reconcile, ReconcileReport, Rollups};
use indicatif::{ProgressBar, ProgressStyle};

/// A time range `[from, to)`.
#[derive(Debug, Clone, clap::Args)]
pub struct RangeArgs {
    /// Start of the range (inclusive): RFC 3339 or YYYY-MM-DD (UTC midnight).
    #[arg(long)]
    pub from: String,
    /// End of the range (exclusive): RFC 3339 or YYYY-MM-DD (UTC midnight).
    #[arg(long)]
    pub to: String,
}

impl RangeArgs {
    fn micros(&self) -> anyhow::Result<(i64, i64)> {
        let from = parse_time_arg(&self.from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
        let to = parse_time_arg(&self.to).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
        if to <= from {
            bail!("--to ({}) must be after --from ({})", self.to, self.from);
        }
        Ok((from, to))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Levels to start from (comma-separated); every coarser level follows.
    #[arg(long, value_delimiter = ',', value_parser = parse_level, default_value = "minute")]
    pub levels: Vec<Level>,
    #[command(flatten)]
    pub lateness: LatenessArgs,
}

/// The compactor's allowed lateness, so a job flags windows as the loop does.
#[derive(Debug, Clone, clap::Args)]
pub struct LatenessArgs {
    /// How far behind the newest event time a window stays provisional.
    #[arg(long, env = "CLICKLAKE_ALLOWED_LATENESS", default_value = "1h", value_parser = humantime::parse_duration)]
    pub allowed_lateness: std::time::Duration,
}

async fn open_rollups(store: &StoreArgs, lateness: &LatenessArgs) -> anyhow::Result<Rollups> {
    let storage = StorageConfig::from_args(store)?;
    Ok(Rollups::open(&storage)
        .await
        .context("opening the tables")?
        .with_allowed_lateness(lateness.allowed_lateness))
}

fn parse_level(s: &str) -> Result<Level, String> {
    Level::parse(s).ok_or_else(|| format!("{s:?} is not one of minute, hour, day, month"))
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Rewrite every level that differs from the recount.
    #[arg(long)]
    pub repair: bool,
    #[command(flatten)]
    pub lateness: LatenessArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OptimizeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only these tables (comma-separated; default: every table).
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    #[command(flatten)]
    pub housekeeping: HousekeepingArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct VacuumArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Keep unreferenced files younger than this (readers of recent versions need them).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub retention: std::time::Duration,
    /// Allow a retention below the table's minimum (7 days unless configured).
    #[arg(long)]
    pub force: bool,
    /// List the files that would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn chosen_tables(wanted: &[String]) -> anyhow::Result<Vec<&'static str>> {
    let all = clicklake_common::schema::all_tables();
    if wanted.is_empty() {
        return Ok(all);
    }
    wanted
        .iter()
        .map(|w| {
            all.iter()
                .copied()
                .find(|t| t == w)
                .ok_or_else(|| anyhow::anyhow!("--tables: {w:?} is not one of {}", all.join(", ")))
        })
        .collect()
}

fn table_bar(len: usize) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tables {msg}",
    )?);
    Ok(bar)
}

/// `clicklake optimize`: later copies of event ids removed, retention
/// enforced, small files clustered (raw) and bin-packed (rollups).
pub async fn optimize(args: OptimizeArgs) -> anyhow::Result<()> {
    let tables = chosen_tables(&args.tables)?;
    let storage = StorageConfig::from_args(&args.store)?;
    let now = chrono::Utc::now().timestamp_micros();
    let bar = table_bar(tables.len())?;
    for table in tables {
        bar.set_message(table);
        let r = optimize_table(&storage, table, &args.housekeeping, now)
            .await
            .with_context(|| format!("optimizing {table}"))?;
        bar.suspend(|| {
            println!(
                "{:<18} files {:>5} -> {:<5} later copies removed {:>7}  expired rows {:>7}",
                r.table, r.files_before, r.files_after, r.copies_removed, r.expired_rows
            )
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("optimized");
    Ok(())
}

/// `clicklake vacuum`: delete files no recent table version references.
pub async fn vacuum(args: VacuumArgs) -> anyhow::Result<()> {
    let storage = StorageConfig::from_args(&args.store)?;
    let tables = clicklake_common::schema::all_tables();
    let bar = table_bar(tables.len())?;
    let mut total = 0;
    for table in tables {
        bar.set_message(table);
        let r = vacuum_table(&storage, table, args.retention, args.force, args.dry_run)
            .await
            .with_context(|| {
                format!("vacuuming {table} (a retention below the table's minimum needs --force)")
            })?;
        bar.suspend(|| {
            println!(
                "{:<18} {} file(s) {}",
                r.table,
                r.files.len(),
                if args.dry_run {
                    "would be deleted"
                } else {
                    "deleted"
                }
            )
        });
        total += r.files.len();
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "vacuumed: {total} unreferenced file(s) older than {} {}",
        humantime::format_duration(args.retention),
        if args.dry_run {
            "found (dry run)"
        } else {
            "deleted"
        }
    );
    Ok(())
}

/// `clicklake backfill`.
pub async fn backfill(args: BackfillArgs) -> anyhow::Result<()> {
    let (from, to) = args.range.micros()?;
    let mut rollups = open_rollups(&args.store, &args.lateness).await?;
    let job = Backfill::new(from, to)?.with_levels(&args.levels);
    let bar = ProgressBar::new(job.levels().len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} levels {msg}",
    )?);
    bar.set_message(format!("recomputing {}", job.levels()[0]));
    let levels = job.levels().to_vec();
    let m = job
        .run(&mut rollups, |level, rows| {
            bar.inc(1);
            let next = levels.iter().find(|l| **l > level);
            bar.set_message(next.map_or_else(String::new, |l| format!("recomputing {l}")));
            bar.println(format!("  {:<7} {rows} rows", level.unit()));
        })
        .await?;
    bar.finish_and_clear();
    let span = |level: Level| {
        job.windows(level)
            .iter()
            .map(|(a, b)| format!("[{}, {})", micros_to_rfc3339(*a), micros_to_rfc3339(*b)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "backfilled [{}, {}), widened to whole windows (days {}, months {}), from ad_clicks version {}: {}",
        micros_to_rfc3339(from),
        micros_to_rfc3339(to),
        span(Level::Day),
        span(Level::Month),
        m.raw_version,
        m.rows
            .iter()
            .map(|(l, r)| format!("{l} {r} rows"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `clicklake reconcile`: exits non-zero when a difference remains.
pub async fn reconcile(args: ReconcileArgs) -> anyhow::Result<()> {
    let (from, to) = args.range.micros()?;
    let mut rollups = open_rollups(&args.store, &args.lateness).await?;
    let report = Reconcile::new(from, to)?
        .with_repair(args.repair)
        .run(&mut rollups)
        .await?;
    print_report(&report, from, to);
    if report.differences.is_empty() {
        return Ok(());
    }
    if !args.repair {
        bail!(
            "{} window(s) differ from the raw events; run again with --repair to rewrite them",
            report.differences.len()
        );
    }
    let check = Reconcile::new(from, to)?.run(&mut rollups).await?;
    if check.differences.is_empty() {
        println!("repaired: a new recount matches every level");
        Ok(())
    } else {
        print_report(&check, from, to);
        bail!(
            "{} window(s) still differ after the repair",
            check.differences.len()
        )
    }
}

fn print_report(report: &ReconcileReport, from: i64, to: i64) {
    println!(
        "reconciled [{}, {}) against ad_clicks version {}: {} difference(s)",
        micros_to_rfc3339(from),
        micros_to_rfc3339(to),
        report.raw_version,
        report.differences.len()
    );
    if report.differences.is_empty() {
        return;
    }
    let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    println!(
        "{:<7} {:<21} {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "level",
        "window_start",
        "ad_id",
        "clicks",
        "(rollup)",
        "users",
        "(rollup)",
        "conv",
        "(rollup)",
        "breakdowns"
    );
    for d in &report.differences {
        println!(
            "{:<7} {:<21} {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            d.level.unit(),
            micros_to_rfc3339(d.window_start),
            d.ad_id,
            opt(d.expected_clicks),
            opt(d.actual_clicks),
            opt(d.expected_unique_users),
            opt(d.actual_unique_users),
            opt(d.expected_conversions),
            opt(d.actual_conversions),
            if d.breakdowns_differ {
                "differ"
            } else {
                "same"
            },
        );
    }
    if !report.repaired.is_empty() {
        let levels: Vec<_> = report.repaired.iter().map(|l| l.unit()).collect();
        println!("rewrote from the raw events: {}", levels.join(", "));
    }
}
