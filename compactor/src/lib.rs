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
pub mod metrics;
pub mod reconcile;
pub mod rollup;

use std::time::Duration;

use clicklake_common::StorageConfig;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use backfill::{Backfill, BackfillMetrics};
pub use error::{Error, Result};
pub use reconcile::{Difference, Reconcile, ReconcileReport};
pub use rollup::{RollupMetrics, Rollups};

/// Compactor flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CompactorArgs {
    /// How often the compactor looks for new raw commits to roll up.
    #[arg(long, env = "CLICKLAKE_ROLLUP_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub rollup_interval: Duration,
}

/// Keep the rollups current until `shutdown` is cancelled.
pub async fn run(
    storage: StorageConfig,
    args: CompactorArgs,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut rollups = Rollups::open(&storage).await?;
    let mut tick = tokio::time::interval(args.rollup_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        match rollups.run_once().await {
            Ok(m) if m.raw_versions > 0 => info!(?m, "rolled up"),
            Ok(_) => {}
            // A failed run changes nothing; the next tick retries from the same progress.
            Err(err) => error!(%err, "rollup run failed"),
        }
    }
    info!("compactor stopped");
    Ok(())
}
