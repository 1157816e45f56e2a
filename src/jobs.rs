//! `clicklake backfill` and `clicklake reconcile`: compactor jobs run from
//! the command line against a store (they may run while `serve` runs).

use anyhow::{Context, bail};
use clicklake_common::storage::StoreArgs;
use clicklake_common::time::{micros_to_rfc3339, parse_time_arg};
use clicklake_common::{Level, StorageConfig};
use clicklake_compactor::{Backfill, Reconcile, ReconcileReport, Rollups};
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
}

/// `clicklake backfill`.
pub async fn backfill(args: BackfillArgs) -> anyhow::Result<()> {
    let (from, to) = args.range.micros()?;
    let storage = StorageConfig::from_args(&args.store)?;
    let mut rollups = Rollups::open(&storage)
        .await
        .context("opening the tables")?;
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
    let storage = StorageConfig::from_args(&args.store)?;
    let mut rollups = Rollups::open(&storage)
        .await
        .context("opening the tables")?;
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
