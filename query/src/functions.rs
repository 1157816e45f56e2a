//! The seed's read API as SQL table functions:
//!
//! - `ad_click_stats(ad_id, start, end, granularity)`: per window of the
//!   granularity (`minute`, `hour`, `day`, `month`) starting in
//!   `[start, end)`: clicks, unique users, conversions, the device and
//!   country breakdowns, whether the window is final and where the row came
//!   from: that level's rollup table, stitched with a recount of the raw
//!   events it does not reflect yet (see [`crate::stats`]).
//! - `all_ad_click_stats(start, end, granularity)`: the same for every ad.
//!
//! Like any SQL relation their rows come in no set order: add `ORDER BY`.
//! - `user_ad_clicks(user_id, start, end)`: the user's clicks with event time
//!   in `[start, end)`, from the raw table, each event id once.
//!
//! `start` and `end` are RFC 3339 strings, `YYYY-MM-DD` dates or timestamps.

use std::sync::Arc;

use clicklake_common::schema::UTC;
use clicklake_common::time::parse_time_arg;
use clicklake_common::{Level, RAW_TABLE};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::provider_as_source;
use datafusion::error::Result;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, JoinType, LogicalPlanBuilder};
use datafusion::prelude::{col, lit};

use crate::stats::{StatsTables, StitchedStats};

/// `ad_click_stats(ad_id, start, end, granularity)`, or with `every_ad`
/// `all_ad_click_stats(start, end, granularity)`: the same rows for every ad.
#[derive(Debug)]
pub struct AdClickStats {
    tables: Arc<StatsTables>,
    every_ad: bool,
}

impl AdClickStats {
    /// Over one snapshot of the raw table and of each rollup table.
    pub fn new(tables: Arc<StatsTables>) -> Self {
        Self {
            tables,
            every_ad: false,
        }
    }

    /// `all_ad_click_stats`: every ad's windows.
    pub fn every_ad(tables: Arc<StatsTables>) -> Self {
        Self {
            tables,
            every_ad: true,
        }
    }
}

impl TableFunctionImpl for AdClickStats {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let (f, ad, start, end, granularity) = match (self.every_ad, args.exprs()) {
            (false, [ad, start, end, g]) => {
                let f = "ad_click_stats(ad_id, start, end, granularity)";
                (f, Some(string_arg(f, "ad_id", ad)?), start, end, g)
            }
            (true, [start, end, g]) => (
                "all_ad_click_stats(start, end, granularity)",
                None,
                start,
                end,
                g,
            ),
            (false, other) => {
                return plan_err!(
                    "ad_click_stats(ad_id, start, end, granularity) takes 4 arguments, got {}",
                    other.len()
                );
            }
            (true, other) => {
                return plan_err!(
                    "all_ad_click_stats(start, end, granularity) takes 3 arguments, got {}",
                    other.len()
                );
            }
        };
        let (start, end) = range_args(f, start, end)?;
        let g = string_arg(f, "granularity", granularity)?;
        let Some(level) = Level::parse(&g) else {
            return plan_err!(
                "{f}: granularity must be one of minute, hour, day, month; got {g:?}"
            );
        };
        if !self.tables.levels.contains_key(&level) {
            return plan_err!("{f}: table {} is not available", level.table());
        }
        Ok(Arc::new(StitchedStats::new(
            self.tables.clone(),
            level,
            ad,
            start,
            end,
        )))
    }
}

/// `user_ad_clicks(user_id, start, end)`.
#[derive(Debug)]
pub struct UserAdClicks {
    raw: Arc<dyn TableProvider>,
}

impl UserAdClicks {
    /// Over one snapshot of the raw table.
    pub fn new(raw: Arc<dyn TableProvider>) -> Self {
        Self { raw }
    }
}

impl TableFunctionImpl for UserAdClicks {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = "user_ad_clicks(user_id, start, end)";
        let [user, start, end] = args.exprs() else {
            return plan_err!("{F} takes 3 arguments, got {}", args.exprs().len());
        };
        let user = string_arg(F, "user_id", user)?;
        let (start, end) = range_args(F, start, end)?;
        let raw =
            || LogicalPlanBuilder::scan(RAW_TABLE, provider_as_source(self.raw.clone()), None);
        let in_range = col("event_time")
            .gt_eq(ts(start))
            .and(col("event_time").lt(ts(end)));
        let mine = col("user_id").eq(lit(user));
        // The user's event ids in the range, then every stored copy of them:
        // an event shows only if its first stored copy (the one the rollups
        // count) is this user's and lies in the range.
        let ids = raw()?
            .filter(mine.clone().and(in_range.clone()))?
            .project(vec![col("event_id").alias("wanted_id")])?
            .distinct()?
            .build()?;
        let copy_no = row_number()
            .partition_by(vec![col("event_id")])
            .order_by(
                ["ingest_time", "event_time", "ad_id", "user_id"]
                    .map(|c| col(c).sort(true, false))
                    .to_vec(),
            )
            .build()?
            .alias("copy_no");
        let plan = raw()?
            .join(
                ids,
                JoinType::LeftSemi,
                (vec!["event_id"], vec!["wanted_id"]),
                None,
            )?
            .window(vec![copy_no])?
            .filter(col("copy_no").eq(lit(1u64)).and(mine).and(in_range))?
            .project(
                [
                    "event_id",
                    "ad_id",
                    "user_id",
                    "event_time",
                    "device",
                    "os",
                    "country",
                    "campaign_id",
                    "is_conversion",
                ]
                .map(col),
            )?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

fn ts(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some(UTC.into()),
    ))
}

fn range_args(f: &str, start: &Expr, end: &Expr) -> Result<(i64, i64)> {
    let start = time_arg(f, "start", start)?;
    let end = time_arg(f, "end", end)?;
    if end <= start {
        return plan_err!("{f}: end must be after start");
    }
    Ok((start, end))
}

fn string_arg(f: &str, name: &str, e: &Expr) -> Result<String> {
    match literal(e) {
        Some(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => Ok(s.clone()),
        _ => plan_err!("{f}: {name} must be a string literal, got {e}"),
    }
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal(&c.expr),
        Expr::TryCast(c) => literal(&c.expr),
        Expr::Alias(a) => literal(&a.expr),
        _ => None,
    }
}

/// A time argument in microseconds: an RFC 3339 string, a date, a
/// `YYYY-MM-DD HH:MM:SS` string (UTC) or a timestamp literal.
fn time_arg(f: &str, name: &str, e: &Expr) -> Result<i64> {
    let value = match literal(e) {
        Some(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => parse_time_arg(s).or_else(|err| {
            chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S%.f")
                })
                .map(|n| n.and_utc().timestamp_micros())
                .map_err(|_| err)
        }),
        Some(ScalarValue::TimestampSecond(Some(v), _)) => Ok(v * 1_000_000),
        Some(ScalarValue::TimestampMillisecond(Some(v), _)) => Ok(v * 1_000),
        Some(ScalarValue::TimestampMicrosecond(Some(v), _)) => Ok(*v),
        Some(ScalarValue::TimestampNanosecond(Some(v), _)) => Ok(v.div_euclid(1_000)),
        _ => Err(format!(
            "must be an RFC 3339 string or a timestamp, got {e}"
        )),
    };
    match value {
        Ok(v) => Ok(v),
        Err(reason) => plan_err!("{f}: {name} {reason}"),
    }
}
