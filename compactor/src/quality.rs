//! Data-quality checks, evaluated by the compactor after every rollup run
//! that took in new raw commits. Each check's state is a metric
//! (`clicklake_compactor_quality_firing{check}`, 1 while it fires) with the
//! value it judged (`clicklake_compactor_quality_value{check}`); the alert
//! rules in deploy/prometheus fire on them and the dashboard lists them.
//!
//! - `clicks_drop` / `clicks_spike`: clicks of the newest final hour (the
//!   last hour that ended before the watermark) over all ads, against the
//!   mean of the same hour a day and a week earlier (those of the two that
//!   hold clicks). Judged only when that reference has at least
//!   `--quality-min-clicks` clicks. The value is current / reference.
//! - `ad_clicks_drop` / `ad_clicks_spike`: the same per ad, for ads whose
//!   reference has at least `--quality-min-ad-clicks`; the value is the
//!   number of such ads that dropped (spiked), and the check fires when any did.
//! - `late_rate`: the share of the run's new events that arrived behind the
//!   watermark.
//! - `duplicate_rate`: the share of stored rows, in the windows the run
//!   recounted, that are further copies of an event id already stored.
//!
//! It reads only the hour rollup table and the run's counts, so it may run
//! with anything the rollup job may run with.

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use clicklake_common::Level;
use clicklake_common::changes::DAY_MICROS as DAY;
use datafusion::prelude::{cast, col};
use tracing::{info, warn};

use crate::error::Result;
use crate::metrics;
use crate::rollup::{RollupMetrics, Rollups, level_rows, query_err, session};

const HOUR: i64 = DAY / 24;

/// Thresholds of the checks.
#[derive(Debug, Clone, clap::Args)]
pub struct QualityArgs {
    /// `clicks_drop` fires when an hour's clicks fall below this share of the
    /// same hour a day and a week earlier.
    #[arg(long, env = "CLICKLAKE_QUALITY_DROP_RATIO", default_value_t = 0.5)]
    pub quality_drop_ratio: f64,

    /// `clicks_spike` fires when an hour's clicks exceed this multiple of the reference.
    #[arg(long, env = "CLICKLAKE_QUALITY_SPIKE_RATIO", default_value_t = 3.0)]
    pub quality_spike_ratio: f64,

    /// Reference clicks (all ads) an hour needs before volume is judged.
    #[arg(long, env = "CLICKLAKE_QUALITY_MIN_CLICKS", default_value_t = 100)]
    pub quality_min_clicks: u64,

    /// Reference clicks one ad needs before its volume is judged.
    #[arg(long, env = "CLICKLAKE_QUALITY_MIN_AD_CLICKS", default_value_t = 20)]
    pub quality_min_ad_clicks: u64,

    /// `late_rate` fires above this share of a run's new events arriving late.
    #[arg(long, env = "CLICKLAKE_QUALITY_LATE_RATE", default_value_t = 0.05)]
    pub quality_late_rate: f64,

    /// `duplicate_rate` fires above this share of stored rows being copies.
    #[arg(long, env = "CLICKLAKE_QUALITY_DUPLICATE_RATE", default_value_t = 0.05)]
    pub quality_duplicate_rate: f64,
}

impl Default for QualityArgs {
    fn default() -> Self {
        Self {
            quality_drop_ratio: 0.5,
            quality_spike_ratio: 3.0,
            quality_min_clicks: 100,
            quality_min_ad_clicks: 20,
            quality_late_rate: 0.05,
            quality_duplicate_rate: 0.05,
        }
    }
}

/// The checks, as metric labels.
pub const CHECKS: [&str; 6] = [
    "clicks_drop",
    "clicks_spike",
    "ad_clicks_drop",
    "ad_clicks_spike",
    "late_rate",
    "duplicate_rate",
];

/// One check's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub firing: bool,
    pub value: f64,
}

/// What one evaluation found (`None`: the check had nothing to judge).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QualityReport {
    /// Start of the hour judged (µs since the epoch).
    pub hour: Option<i64>,
    pub checks: BTreeMap<&'static str, Verdict>,
}

/// Volume against a reference: (drop, spike) verdicts, or `None` below the
/// minimum reference.
pub fn judge_volume(
    current: u64,
    references: &[u64],
    min_reference: u64,
    args: &QualityArgs,
) -> Option<(bool, bool, f64)> {
    let held: Vec<u64> = references.iter().copied().filter(|r| *r > 0).collect();
    if held.is_empty() {
        return None;
    }
    let reference = held.iter().sum::<u64>() as f64 / held.len() as f64;
    if reference < min_reference as f64 {
        return None;
    }
    let ratio = current as f64 / reference;
    Some((
        ratio < args.quality_drop_ratio,
        ratio > args.quality_spike_ratio,
        ratio,
    ))
}

/// Evaluate every check after a rollup run and publish the states.
pub async fn evaluate(
    rollups: &mut Rollups,
    run: &RollupMetrics,
    args: &QualityArgs,
) -> Result<QualityReport> {
    let mut report = QualityReport::default();
    if run.new_events > 0 {
        let rate = run.late_events as f64 / run.new_events as f64;
        report.checks.insert(
            "late_rate",
            Verdict {
                firing: rate > args.quality_late_rate,
                value: rate,
            },
        );
    }
    if run.stored_rows > 0 {
        let rate =
            run.stored_rows.saturating_sub(run.distinct_events) as f64 / run.stored_rows as f64;
        report.checks.insert(
            "duplicate_rate",
            Verdict {
                firing: rate > args.quality_duplicate_rate,
                value: rate,
            },
        );
    }
    if run.watermark > i64::MIN {
        let hour = run.watermark.div_euclid(HOUR) * HOUR - HOUR;
        report.hour = Some(hour);
        let clicks = hour_clicks(rollups, [hour, hour - DAY, hour - 7 * DAY]).await?;
        let total = |h: i64| clicks.get(&h).map_or(0, |ads| ads.values().sum::<u64>());
        if let Some((drop, spike, ratio)) = judge_volume(
            total(hour),
            &[total(hour - DAY), total(hour - 7 * DAY)],
            args.quality_min_clicks,
            args,
        ) {
            report.checks.insert(
                "clicks_drop",
                Verdict {
                    firing: drop,
                    value: ratio,
                },
            );
            report.checks.insert(
                "clicks_spike",
                Verdict {
                    firing: spike,
                    value: ratio,
                },
            );
        }
        let mut ads: Vec<&String> = clicks.values().flat_map(|a| a.keys()).collect();
        ads.sort();
        ads.dedup();
        let of = |h: i64, ad: &String| clicks.get(&h).and_then(|a| a.get(ad)).copied().unwrap_or(0);
        // A reference hour with no clicks at all is missing data, not a zero.
        let refs: Vec<i64> = [hour - DAY, hour - 7 * DAY]
            .into_iter()
            .filter(|h| total(*h) > 0)
            .collect();
        let (mut judged, mut dropped, mut spiked) = (0, 0, 0);
        for ad in ads {
            let references: Vec<u64> = refs.iter().map(|h| of(*h, ad)).collect();
            let reference = if refs.is_empty() {
                0.0
            } else {
                references.iter().sum::<u64>() as f64 / refs.len() as f64
            };
            if reference < args.quality_min_ad_clicks as f64 {
                continue;
            }
            judged += 1;
            let ratio = of(hour, ad) as f64 / reference;
            dropped += usize::from(ratio < args.quality_drop_ratio);
            spiked += usize::from(ratio > args.quality_spike_ratio);
        }
        if judged > 0 {
            report.checks.insert(
                "ad_clicks_drop",
                Verdict {
                    firing: dropped > 0,
                    value: dropped as f64,
                },
            );
            report.checks.insert(
                "ad_clicks_spike",
                Verdict {
                    firing: spiked > 0,
                    value: spiked as f64,
                },
            );
        }
    }
    for check in CHECKS {
        let v = report.checks.get(check).copied().unwrap_or(Verdict {
            firing: false,
            value: 0.0,
        });
        metrics::QUALITY_FIRING
            .with_label_values(&[check])
            .set(i64::from(v.firing));
        metrics::QUALITY_VALUE
            .with_label_values(&[check])
            .set(v.value);
    }
    let firing: Vec<_> = report
        .checks
        .iter()
        .filter(|(_, v)| v.firing)
        .map(|(c, v)| format!("{c}={:.3}", v.value))
        .collect();
    if firing.is_empty() {
        info!(hour = ?report.hour, "data-quality checks pass");
    } else {
        warn!(hour = ?report.hour, firing = ?firing, "data-quality checks firing");
    }
    Ok(report)
}

/// Clicks per ad in each of `hours`, from the hour rollup table.
async fn hour_clicks(
    rollups: &mut Rollups,
    hours: [i64; 3],
) -> Result<BTreeMap<i64, BTreeMap<String, u64>>> {
    let table = Level::Hour.table();
    let ctx = session();
    let ranges = hours.map(|h| (h, h + HOUR));
    let batches: Vec<RecordBatch> = level_rows(
        &ctx,
        Level::Hour,
        rollups.level_table(Level::Hour),
        Some(&ranges),
    )
    .await?
    .select(vec![
        cast(col("window_start"), DataType::Int64).alias("h"),
        col("ad_id"),
        col("clicks"),
    ])
    .map_err(query_err(table))?
    .collect()
    .await
    .map_err(query_err(table))?;
    let mut out: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    for b in &batches {
        let h = b.column(0).as_primitive::<Int64Type>();
        let ads = crate::housekeeping::utf8(b.column(1)).map_err(|e| query_err(table)(e.into()))?;
        let ads = ads.as_string::<i32>();
        let clicks = b.column(2).as_primitive::<Int64Type>();
        for row in 0..b.num_rows() {
            *out.entry(h.value(row))
                .or_default()
                .entry(ads.value(row).to_string())
                .or_default() += clicks.value(row) as u64;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ninety_percent_drop_fires_and_ordinary_noise_does_not() {
        let args = QualityArgs::default();
        // 1,000 clicks a day and a week ago; 100 now: ratio 0.1.
        assert_eq!(
            judge_volume(100, &[1000, 1000], 100, &args),
            Some((true, false, 0.1))
        );
        // 20% below the reference is ordinary.
        assert_eq!(
            judge_volume(800, &[1000, 1000], 100, &args),
            Some((false, false, 0.8))
        );
        // Four times the reference is a spike.
        assert_eq!(
            judge_volume(4000, &[1000, 1000], 100, &args),
            Some((false, true, 4.0))
        );
        // A missing reference hour is left out of the mean, not taken as 0.
        assert_eq!(
            judge_volume(500, &[0, 1000], 100, &args),
            Some((false, false, 0.5))
        );
        // Too little reference volume, or none: nothing to judge.
        assert_eq!(judge_volume(0, &[50, 50], 100, &args), None);
        assert_eq!(judge_volume(10, &[0, 0], 100, &args), None);
    }
}
