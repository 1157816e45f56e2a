//! Table definitions: the raw click table and the rollup levels.
//!
//! The column names here are part of clicklake's public contract (analysts
//! query them over Flight SQL); docs/DATA_LAYOUT.md describes each one.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::{DataType as DeltaType, StructField};

/// Name of the raw events table.
pub const RAW_TABLE: &str = "ad_clicks";

/// Partition column of the raw table: the UTC date of `event_time`.
pub const RAW_PARTITION: &str = "event_date";

/// Partition column of the minute and hour rollups: the UTC date of `window_start`.
pub const ROLLUP_PARTITION: &str = "window_date";

/// UTC time zone label used on every timestamp column.
pub const UTC: &str = "UTC";

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

/// Arrow schema of `ad_clicks`, in column order.
pub fn raw_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("ad_id", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, false),
            Field::new("event_time", ts_type(), false),
            Field::new("device", DataType::Utf8, true),
            Field::new("os", DataType::Utf8, true),
            Field::new("country", DataType::Utf8, true),
            Field::new("campaign_id", DataType::Utf8, true),
            Field::new("is_conversion", DataType::Boolean, false),
            Field::new("ingest_time", ts_type(), false),
            Field::new(RAW_PARTITION, DataType::Date32, false),
        ]))
    });
    SCHEMA.clone()
}

/// Arrow schema of every rollup table, in column order.
///
/// `clicks_by_device` and `clicks_by_country` are JSON objects mapping a
/// device (country) to its click count in the window; missing values are
/// counted under `"unknown"`. `unique_users_exact` says whether
/// `unique_users` is an exact distinct count; `users_sketch` is the window's
/// mergeable HLL sketch of user ids (docs/DATA_LAYOUT.md gives its
/// encoding). `is_final` says the window ended before the watermark;
/// `revision` counts the rewrites that changed the window after it became
/// final, the last at `revised_at`.
pub fn rollup_schema(level: Level) -> SchemaRef {
    let mut fields = vec![
        Field::new("window_start", ts_type(), false),
        Field::new("ad_id", DataType::Utf8, false),
        Field::new("clicks", DataType::Int64, false),
        Field::new("unique_users", DataType::Int64, false),
        Field::new("unique_users_exact", DataType::Boolean, false),
        Field::new("conversions", DataType::Int64, false),
        Field::new("clicks_by_device", DataType::Utf8, false),
        Field::new("clicks_by_country", DataType::Utf8, false),
        Field::new("users_sketch", DataType::Binary, false),
        Field::new("is_final", DataType::Boolean, false),
        Field::new("revision", DataType::Int64, false),
        Field::new("revised_at", ts_type(), true),
    ];
    if level.partitioned() {
        fields.push(Field::new(ROLLUP_PARTITION, DataType::Date32, false));
    }
    Arc::new(Schema::new(fields))
}

/// The same columns as Delta fields, for creating a table.
pub fn delta_fields(schema: &Schema) -> Vec<StructField> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                DataType::Utf8 => DeltaType::STRING,
                DataType::Int64 => DeltaType::LONG,
                DataType::Binary => DeltaType::BINARY,
                DataType::Boolean => DeltaType::BOOLEAN,
                DataType::Date32 => DeltaType::DATE,
                DataType::Timestamp(_, _) => DeltaType::TIMESTAMP,
                other => unreachable!("clicklake schemas use no {other} column"),
            };
            StructField::new(f.name().clone(), ty, f.is_nullable())
        })
        .collect()
}

/// A rollup level: the width of its windows and its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Minute,
    Hour,
    Day,
    Month,
}

impl Level {
    /// Every level, finest first.
    pub const ALL: [Level; 4] = [Level::Minute, Level::Hour, Level::Day, Level::Month];

    /// The unit name, as `date_trunc` and the `granularity` argument spell it.
    pub fn unit(self) -> &'static str {
        match self {
            Level::Minute => "minute",
            Level::Hour => "hour",
            Level::Day => "day",
            Level::Month => "month",
        }
    }

    /// The rollup table of this level.
    pub fn table(self) -> &'static str {
        match self {
            Level::Minute => "ad_clicks_minute",
            Level::Hour => "ad_clicks_hour",
            Level::Day => "ad_clicks_day",
            Level::Month => "ad_clicks_month",
        }
    }

    /// Minute and hour tables are partitioned by `window_date`; day and month
    /// tables are small enough to stay whole.
    pub fn partitioned(self) -> bool {
        matches!(self, Level::Minute | Level::Hour)
    }

    /// Parse a granularity name (`minute`, `hour`, `day`, `month`).
    pub fn parse(name: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.unit().eq_ignore_ascii_case(name.trim()))
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.unit())
    }
}

/// Every table clicklake keeps, raw first.
pub fn all_tables() -> Vec<&'static str> {
    std::iter::once(RAW_TABLE)
        .chain(Level::ALL.iter().map(|l| l.table()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_their_own_names() {
        for level in Level::ALL {
            assert_eq!(Level::parse(level.unit()), Some(level));
        }
        assert_eq!(Level::parse(" Hour "), Some(Level::Hour));
        assert_eq!(Level::parse("week"), None);
    }

    #[test]
    fn delta_fields_follow_arrow_columns() {
        let fields = delta_fields(&raw_schema());
        let names: Vec<_> = fields.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
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
                "ingest_time",
                "event_date"
            ]
        );
    }
}
