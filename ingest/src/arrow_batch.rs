//! Arrow record batches in (Flight `DoPut`, Flight SQL bulk ingest): columns
//! are found by the event field names, each row goes through the same
//! validation as a JSON or protobuf event.
//!
//! Column types: ids and labels are strings (`Utf8`, `LargeUtf8`,
//! `Utf8View`, or a dictionary of strings); `timestamp` (or `event_time`, the
//! raw table's name) is an Arrow timestamp of any unit (a time zone-less
//! timestamp is read as UTC), an epoch integer or float (unit from the
//! magnitude, as in JSON), or an RFC 3339 string; `is_conversion` is a
//! boolean or an integer 0/1. A column of another type refuses the whole
//! request, naming the column; a bad value refuses only its row.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use clicklake_common::time::{
    epoch_integer_to_micros, epoch_number_to_micros, parse_rfc3339_micros,
};

use clicklake_common::sink::{ClickSink, RowRejection, SinkError, SinkOutcome};

use crate::error::Error;
use crate::event::{ClickEvent, Fields, Rejection, Validator, country_or_location};
use crate::metrics::Path;
use crate::writer::{IngestHandle, Outcome};

/// Raw-table columns that may come along (a batch read back from
/// `ad_clicks`) and are derived again on ingest, so they are ignored.
pub const DERIVED_COLUMNS: [&str; 3] = ["event_time", "ingest_time", "event_date"];

/// A request-level problem: the batch cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    pub column: String,
    pub reason: String,
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {}: {}", self.column, self.reason)
    }
}

/// One batch's rows as per-event results, in row order.
pub fn batch_to_events(
    validator: &Validator,
    batch: &RecordBatch,
) -> Result<Vec<Result<ClickEvent, Rejection>>, BatchError> {
    let schema = batch.schema();
    validator
        .check_unknown(
            schema.fields().iter().map(|f| f.name().as_str()),
            &DERIVED_COLUMNS,
        )
        .map_err(|r| BatchError {
            column: r.field,
            reason: r.reason,
        })?;
    let text = |name: &str| -> Result<Option<ArrayRef>, BatchError> {
        let Some(col) = batch.column_by_name(name) else {
            return Ok(None);
        };
        let stringy = match col.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => true,
            DataType::Dictionary(_, v) => {
                matches!(
                    **v,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
            }
            _ => false,
        };
        if !stringy {
            return Err(BatchError {
                column: name.to_string(),
                reason: format!(
                    "must be a string column (Utf8, LargeUtf8, Utf8View or a dictionary of strings), got {}",
                    col.data_type()
                ),
            });
        }
        cast(col, &DataType::Utf8)
            .map(Some)
            .map_err(|e| BatchError {
                column: name.to_string(),
                reason: e.to_string(),
            })
    };
    let event_id = text("event_id")?;
    let ad_id = text("ad_id")?;
    let user_id = text("user_id")?;
    let device = text("device")?;
    let os = text("os")?;
    let country = text("country")?;
    let location = text("location")?;
    let campaign_id = text("campaign_id")?;
    let (time_name, time) = match (
        batch.column_by_name("timestamp"),
        batch.column_by_name("event_time"),
    ) {
        (Some(t), _) => ("timestamp", Some(t)),
        (None, Some(t)) => ("event_time", Some(t)),
        (None, None) => ("timestamp", None),
    };
    let times = time.map(|t| Times::new(time_name, t)).transpose()?;
    let conversions = batch
        .column_by_name("is_conversion")
        .map(Conversions::new)
        .transpose()?;

    let value = |col: &Option<ArrayRef>, row: usize| -> Option<String> {
        let col = col.as_ref()?;
        let strings = col.as_string::<i32>();
        (strings.is_valid(row) && !strings.value(row).is_empty())
            .then(|| strings.value(row).to_string())
    };
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let result = (|| {
            let timestamp = match &times {
                Some(t) => t.micros(row)?,
                None => return Err(Rejection::new("timestamp", "is required")),
            };
            validator.finish(Fields {
                event_id: value(&event_id, row),
                ad_id: value(&ad_id, row),
                user_id: value(&user_id, row),
                timestamp,
                device: value(&device, row),
                os: value(&os, row),
                country: country_or_location(value(&country, row), value(&location, row))?,
                campaign_id: value(&campaign_id, row),
                is_conversion: match &conversions {
                    Some(c) => c.get(row)?,
                    None => false,
                },
            })
        })();
        out.push(result);
    }
    Ok(out)
}

/// The time column, normalised to one readable form per kind of value.
enum Times {
    Micros(ArrayRef),
    Integers(ArrayRef),
    Floats(ArrayRef),
    Text(ArrayRef),
    Missing,
}

impl Times {
    fn new(name: &'static str, col: &ArrayRef) -> Result<Self, BatchError> {
        let err = |reason: String| BatchError {
            column: name.to_string(),
            reason,
        };
        let to = |t: &DataType| cast(col, t).map_err(|e| err(e.to_string()));
        Ok(match col.data_type() {
            // Instants before 2000 are refused anyway, so truncating
            // nanoseconds toward zero equals cutting them off.
            DataType::Timestamp(_, _) => {
                Self::Micros(to(&DataType::Timestamp(TimeUnit::Microsecond, None))?)
            }
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => Self::Integers(to(&DataType::Int64)?),
            DataType::Float32 | DataType::Float64 => Self::Floats(to(&DataType::Float64)?),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                Self::Text(to(&DataType::Utf8)?)
            }
            DataType::Null => Self::Missing,
            other => {
                return Err(err(format!(
                    "must be a timestamp, an epoch number or an RFC 3339 string column, got {other}"
                )));
            }
        })
    }

    fn micros(&self, row: usize) -> Result<i64, Rejection> {
        let missing = || Rejection::new("timestamp", "is required");
        let bad = |r: String| Rejection::new("timestamp", r);
        match self {
            Self::Micros(a) => {
                let us = a.as_primitive::<TimestampMicrosecondType>();
                us.is_valid(row).then(|| us.value(row)).ok_or_else(missing)
            }
            Self::Integers(a) => {
                let ints = a.as_primitive::<Int64Type>();
                if !ints.is_valid(row) {
                    return Err(missing());
                }
                epoch_integer_to_micros(ints.value(row)).map_err(bad)
            }
            Self::Floats(a) => {
                let f = a.as_primitive::<Float64Type>();
                if !f.is_valid(row) {
                    return Err(missing());
                }
                epoch_number_to_micros(f.value(row)).map_err(bad)
            }
            Self::Text(a) => {
                let s = a.as_string::<i32>();
                if !s.is_valid(row) || s.value(row).is_empty() {
                    return Err(missing());
                }
                parse_rfc3339_micros(s.value(row)).map_err(bad)
            }
            Self::Missing => Err(missing()),
        }
    }
}

/// The `is_conversion` column.
enum Conversions {
    Bools(ArrayRef),
    Integers(ArrayRef),
}

impl Conversions {
    fn new(col: &ArrayRef) -> Result<Self, BatchError> {
        match col.data_type() {
            DataType::Boolean => Ok(Self::Bools(col.clone())),
            t if t.is_integer() || *t == DataType::Null => Ok(Self::Integers(
                cast(col, &DataType::Int64).map_err(|e| BatchError {
                    column: "is_conversion".into(),
                    reason: e.to_string(),
                })?,
            )),
            other => Err(BatchError {
                column: "is_conversion".into(),
                reason: format!("must be a boolean or an integer 0/1 column, got {other}"),
            }),
        }
    }

    fn get(&self, row: usize) -> Result<bool, Rejection> {
        match self {
            Self::Bools(a) => {
                let b = a.as_boolean();
                Ok(b.is_valid(row) && b.value(row))
            }
            Self::Integers(a) => {
                let i = a.as_primitive::<Int64Type>();
                match i.is_valid(row).then(|| i.value(row)) {
                    None | Some(0) => Ok(false),
                    Some(1) => Ok(true),
                    Some(n) => Err(Rejection::new(
                        "is_conversion",
                        format!("must be true, false, 0 or 1, got {n}"),
                    )),
                }
            }
        }
    }
}

/// Validate and store the rows of one request's batches; rows are numbered
/// across the batches.
pub async fn ingest_batches(
    handle: &IngestHandle,
    batches: &[RecordBatch],
) -> Result<Outcome, SinkError> {
    let validator = handle.validator();
    let mut results = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        results.extend(
            batch_to_events(&validator, batch).map_err(|e| SinkError::Invalid(e.to_string()))?,
        );
    }
    handle
        .ingest(Path::Flight, results)
        .await
        .map_err(|e| match e {
            Error::Backpressure { .. } => SinkError::Backpressure(e.to_string()),
            Error::TooLarge { .. } | Error::Body(_) => SinkError::Invalid(e.to_string()),
            Error::Commit { .. } | Error::ShuttingDown | Error::Storage(_) => {
                SinkError::Unavailable(format!("{e}; the rows were not stored, retry"))
            }
        })
}

#[async_trait::async_trait]
impl ClickSink for IngestHandle {
    async fn ingest_arrow(&self, batches: Vec<RecordBatch>) -> Result<SinkOutcome, SinkError> {
        let bytes = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        Path::Flight.received(bytes);
        let outcome = ingest_batches(self, &batches).await?;
        Ok(SinkOutcome {
            accepted: outcome.accepted,
            rejected: outcome
                .rejected
                .into_iter()
                .map(|r| RowRejection {
                    index: r.index,
                    field: r.field,
                    reason: r.reason,
                })
                .collect(),
        })
    }
}
