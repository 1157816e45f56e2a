//! What the raw table's commits added, read from its Delta log, and the
//! windows of a rollup level that those additions can change.
//!
//! The compactor uses it to recompute only the touched windows; the query
//! server uses it to know which windows of a rollup level are behind the raw
//! table (the "raw tail") and must be recounted from raw events instead.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate};
use deltalake::DeltaTable;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::prelude::{Expr, col, lit};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::schema::{Level, RAW_PARTITION, UTC};

/// Application id of the progress marker in every rollup commit: its
/// version is the `ad_clicks` version the rollup table reflects.
pub const PROGRESS_APP_ID: &str = "clicklake-rollup";

/// Microseconds in a day.
pub const DAY_MICROS: i64 = 86_400_000_000;

/// What a range of raw commits added.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Added {
    /// UTC dates (days since the epoch) of the added files.
    pub dates: BTreeSet<i32>,
    /// Names (last path segment) of the added files.
    pub files: BTreeSet<String>,
}

impl Added {
    /// Take in what another range added.
    pub fn extend(&mut self, other: Added) {
        self.dates.extend(other.dates);
        self.files.extend(other.files);
    }
}

/// A commit of the raw log that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading commit {version} of ad_clicks: {reason}")]
pub struct LogError {
    pub version: i64,
    pub reason: String,
}

/// The data files that raw commits `from..=to` added (rewrites by optimize,
/// `dataChange: false`, are not additions) and their UTC dates, or `None`
/// when a commit file is gone (log cleanup): then anything may have changed.
pub async fn added_between(
    raw: &DeltaTable,
    from: i64,
    to: i64,
) -> Result<Option<Added>, LogError> {
    let store = raw.log_store().object_store(None);
    let mut added = Added::default();
    for version in from..=to {
        let path = Path::from(format!("_delta_log/{version:020}.json"));
        let bytes = match store.get(&path).await {
            Ok(r) => r.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => Err(e),
        }
        .map_err(|e| LogError {
            version,
            reason: e.to_string(),
        })?;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_slice(line).map_err(|e| LogError {
                version,
                reason: format!("not a JSON action: {e}"),
            })?;
            let Some(add) = action.get("add") else {
                continue;
            };
            if add.get("dataChange").and_then(|d| d.as_bool()) == Some(false) {
                // A rewrite by optimize: the same rows in new files.
                continue;
            }
            if let Some(path) = add.get("path").and_then(|p| p.as_str()) {
                added
                    .files
                    .insert(path.rsplit('/').next().unwrap_or(path).to_string());
            }
            let Some(date) = add
                .get("partitionValues")
                .and_then(|p| p.get(RAW_PARTITION))
                .and_then(|d| d.as_str())
            else {
                continue;
            };
            let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|e| LogError {
                version,
                reason: format!("partition value {date:?}: {e}"),
            })?;
            added.dates.insert(days_since_epoch(day));
        }
    }
    Ok(Some(added))
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

/// Days since 1970-01-01 of a date.
pub fn days_since_epoch(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163
}

/// The `[start, end)` microseconds of the month holding `day`.
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

/// `column` within any of the `[start, end)` ranges (microseconds), plus the
/// matching date-partition bounds so whole partitions are skipped.
pub fn range_filter(ranges: &[(i64, i64)], column: &str, date_column: Option<&str>) -> Expr {
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
