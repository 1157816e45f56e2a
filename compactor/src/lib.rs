//! clicklake compactor: keeps the rollup tables `ad_clicks_minute`,
//! `ad_clicks_hour`, `ad_clicks_day` and `ad_clicks_month` equal to a
//! recount of the raw table `ad_clicks` (the rollup loop), recomputes a
//! range on request (backfill) and checks the rollups against a recount
//! (reconcile).
//!
//! It reads the raw table and writes only the rollup tables; it serves no
//! queries and takes no events.

// Job errors carry the Delta or DataFusion error that caused them; they are
// rare and on a cold path, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod backfill;
pub mod error;
pub mod housekeeping;
pub mod metrics;
pub mod quality;
pub mod reconcile;
pub mod rollup;

use std::time::Duration;

use clicklake_common::StorageConfig;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use backfill::{Backfill, BackfillMetrics};
pub use error::{Error, Result};
pub use housekeeping::{HousekeepingArgs, OptimizeReport, VacuumReport};
pub use quality::{QualityArgs, QualityReport};
pub use reconcile::{Difference, Reconcile, ReconcileReport};
pub use rollup::{Clock, DEFAULT_LATENESS, Finality, RollupMetrics, Rollups};

/// Compactor flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CompactorArgs {
    /// How often the compactor looks for new raw commits to roll up.
    #[arg(long, env = "CLICKLAKE_ROLLUP_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub rollup_interval: Duration,

    /// How far behind the newest event time a window stays provisional; the
    /// watermark is the newest event time minus this.
    #[arg(long, env = "CLICKLAKE_ALLOWED_LATENESS", default_value = "1h", value_parser = humantime::parse_duration)]
    pub allowed_lateness: Duration,

    /// How often the compactor runs optimize, retention and vacuum over every
    /// table (0 turns the automatic runs off; `clicklake optimize` still works).
    #[arg(long, env = "CLICKLAKE_OPTIMIZE_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub optimize_interval: Duration,

    #[command(flatten)]
    pub housekeeping: HousekeepingArgs,

    /// How often the compactor reconciles the recent rollups against a raw
    /// recount (the result is `clicklake_compactor_reconcile_differences`;
    /// 0 turns it off, `clicklake reconcile` still works).
    #[arg(long, env = "CLICKLAKE_RECONCILE_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub reconcile_interval: Duration,

    /// How far back from the newest event's day a scheduled reconcile recounts.
    #[arg(long, env = "CLICKLAKE_RECONCILE_WINDOW", default_value = "1d", value_parser = humantime::parse_duration)]
    pub reconcile_window: Duration,

    #[command(flatten)]
    pub quality: QualityArgs,
}

/// Keep the rollups current until `shutdown` is cancelled.
pub async fn run(
    storage: StorageConfig,
    args: CompactorArgs,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut rollups = Rollups::open(&storage)
        .await?
        .with_allowed_lateness(args.allowed_lateness);
    let mut tick = tokio::time::interval(args.rollup_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_housekeeping = tokio::time::Instant::now();
    let mut last_reconcile: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if !args.optimize_interval.is_zero()
            && last_housekeeping.elapsed() >= args.optimize_interval
        {
            last_housekeeping = tokio::time::Instant::now();
            housekeeping(&storage, &args.housekeeping).await;
        }
        match rollups.run_once().await {
            Ok(m) => {
                if m.raw_versions > 0 {
                    info!(?m, "rolled up");
                    if let Err(err) = quality::evaluate(&mut rollups, &m, &args.quality).await {
                        error!(%err, "data-quality checks failed");
                    }
                }
                let due = last_reconcile.is_none_or(|t| t.elapsed() >= args.reconcile_interval);
                if !args.reconcile_interval.is_zero() && m.watermark > i64::MIN && due {
                    last_reconcile = Some(tokio::time::Instant::now());
                    scheduled_reconcile(&mut rollups, &m, &args).await;
                }
            }
            // A failed run changes nothing; the next tick retries from the same progress.
            Err(err) => error!(%err, "rollup run failed"),
        }
    }
    info!("compactor stopped");
    Ok(())
}

/// Reconcile the days up to the newest event's against the raw version the
/// rollups reflect; a difference is logged and exported (the alert fires),
/// not repaired: that is `clicklake reconcile --repair`'s, with a person
/// looking.
async fn scheduled_reconcile(rollups: &mut Rollups, run: &RollupMetrics, args: &CompactorArgs) {
    use clicklake_common::changes::DAY_MICROS as DAY;
    let newest = run
        .watermark
        .saturating_add(args.allowed_lateness.as_micros() as i64);
    let to = newest.div_euclid(DAY) * DAY + DAY;
    let from = to - DAY - args.reconcile_window.as_micros() as i64;
    let result = match Reconcile::new(from, to) {
        Ok(job) => job.at_raw_version(run.raw_version).run(rollups).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(r) if r.differences.is_empty() => info!(
            raw_version = r.raw_version,
            "scheduled reconcile: no difference"
        ),
        Ok(r) => {
            warn!(raw_version = r.raw_version, differences = r.differences.len(), first = ?r.differences.first(), "scheduled reconcile found differences; run clicklake reconcile --repair")
        }
        Err(err) => error!(%err, "scheduled reconcile failed"),
    }
}

/// One automatic optimize, retention and vacuum pass over every table; a
/// failure is logged and counted, and the next pass tries again.
async fn housekeeping(storage: &StorageConfig, args: &HousekeepingArgs) {
    let now = chrono::Utc::now().timestamp_micros();
    for table in clicklake_common::schema::all_tables() {
        match housekeeping::optimize_table(storage, table, args, now).await {
            Ok(r) => info!(?r, "optimize pass"),
            Err(err) => {
                metrics::HOUSEKEEPING_ERRORS.inc();
                error!(%err, table, "optimize pass failed");
            }
        }
        if let Err(err) =
            housekeeping::vacuum_table(storage, table, args.vacuum_retention, false, false).await
        {
            metrics::HOUSEKEEPING_ERRORS.inc();
            error!(%err, table, "vacuum pass failed");
        }
    }
}
