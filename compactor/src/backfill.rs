//! Backfill: recompute the rollups of a time range from the raw events.
//!
//! The range is widened to whole windows (days for minute, hour and day;
//! months for month). Starting from the finest level asked for, every
//! coarser level is recomputed too, each from the raw events themselves, and
//! each level is swapped in with one atomic `replaceWhere` commit. All levels
//! read the same pinned raw version, so they agree with each other.
//!
//! Interrupted, it leaves every level either as before or fully rewritten;
//! running the same command again finishes the job with the same tables.
//!
//! Concurrency: safe while ingest appends and while the compactor loop runs.
//! A backfill records no progress marker, so the loop's incremental progress
//! is untouched; a commit that conflicts with a concurrent rewrite of the
//! same windows is retried on a fresh snapshot.

use std::collections::BTreeSet;

use clicklake_common::Level;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::rollup::{DAY_MICROS, Rollups, level_ranges, load_candidates, rewrite_level};

/// Commit attempts per level.
const ATTEMPTS: u32 = 3;

/// A backfill of `[from, to)`, built with options and run with [`Backfill::run`].
#[derive(Debug, Clone)]
pub struct Backfill {
    from: i64,
    to: i64,
    levels: Vec<Level>,
}

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillMetrics {
    /// The raw version every level was recomputed from.
    pub raw_version: i64,
    /// Rows written per level, in the order run.
    pub rows: Vec<(Level, usize)>,
}

impl Backfill {
    /// Every level over `[from, to)` (microseconds since the epoch, UTC).
    pub fn new(from: i64, to: i64) -> Result<Self> {
        if to <= from {
            return Err(Error::Range("--to must be after --from".into()));
        }
        Ok(Self {
            from,
            to,
            levels: Level::ALL.to_vec(),
        })
    }

    /// Start at the finest of `levels`; every coarser level follows.
    pub fn with_levels(mut self, levels: &[Level]) -> Self {
        if let Some(finest) = levels.iter().min() {
            self.levels = Level::ALL.into_iter().filter(|l| l >= finest).collect();
        }
        self
    }

    /// The levels this backfill rewrites, finest first.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// The `[start, end)` ranges (microseconds) a level rewrites: the range
    /// widened to whole days (minute, hour, day) or whole months.
    pub fn windows(&self, level: Level) -> Vec<(i64, i64)> {
        level_ranges(level, &self.dates())
    }

    /// UTC dates (days since the epoch) the range touches.
    pub fn dates(&self) -> BTreeSet<i32> {
        let first = self.from.div_euclid(DAY_MICROS) as i32;
        let last = (self.to - 1).div_euclid(DAY_MICROS) as i32;
        (first..=last).collect()
    }

    /// Run it; `on_level` is called after each level is committed.
    pub async fn run(
        &self,
        rollups: &mut Rollups,
        mut on_level: impl FnMut(Level, usize),
    ) -> Result<BackfillMetrics> {
        let raw_version = rollups.refresh().await?;
        let ctx = rollups.raw_context(raw_version).await?;
        let dates = self.dates();
        load_candidates(&ctx, Some(&level_ranges(Level::Month, &dates))).await?;
        let finality = rollups.finality_of(&ctx).await?;
        let mut metrics = BackfillMetrics {
            raw_version,
            rows: Vec::new(),
        };
        for &level in &self.levels {
            let ranges = level_ranges(level, &dates);
            let mut attempt = 1;
            let rows = loop {
                let table = rollups.level_table(level);
                match rewrite_level(&ctx, level, table, Some(&ranges), None, finality).await {
                    Ok(rows) => break rows,
                    Err(err) if attempt < ATTEMPTS => {
                        warn!(%level, attempt, %err, "backfill commit failed; retrying on a fresh snapshot");
                        attempt += 1;
                        rollups.refresh().await?;
                    }
                    Err(err) => return Err(err),
                }
            };
            info!(%level, rows, "backfilled");
            on_level(level, rows);
            metrics.rows.push((level, rows));
        }
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_cascade_to_coarser_ones() {
        let b = Backfill::new(0, DAY_MICROS)
            .expect("range")
            .with_levels(&[Level::Day, Level::Hour]);
        assert_eq!(b.levels(), &[Level::Hour, Level::Day, Level::Month]);
        assert!(Backfill::new(5, 5).is_err());
    }

    #[test]
    fn range_end_is_exclusive() {
        // [day 1 00:00, day 3 00:00) touches days 1 and 2 only.
        let b = Backfill::new(DAY_MICROS, 3 * DAY_MICROS).expect("range");
        assert_eq!(b.dates().into_iter().collect::<Vec<_>>(), vec![1, 2]);
    }
}
