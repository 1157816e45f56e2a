//! Arrow click batches in over Flight: Flight SQL bulk ingest
//! (`CommandStatementIngest`, what ADBC's `adbc_ingest` sends) and a plain
//! `DoPut` whose descriptor path is `["ad_clicks"]`. Both hand the rows to the
//! node's [`ClickSink`] (the ingest writer) in chunks, several in flight, so a
//! large upload streams instead of piling up in memory.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use clicklake_common::RAW_TABLE;
use clicklake_common::sink::{ClickSink, SinkError, SinkOutcome};
use futures::stream::FuturesOrdered;
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use crate::catalog::{CATALOG, SCHEMA};

/// Rows handed to the sink at once.
const CHUNK_ROWS: usize = 50_000;
/// Chunks of one upload waiting for their commit at the same time.
const IN_FLIGHT: usize = 4;

/// The status a client gets for a refused upload.
pub fn status(e: SinkError) -> Status {
    match e {
        SinkError::Invalid(m) => Status::invalid_argument(m),
        SinkError::Backpressure(m) => Status::resource_exhausted(m),
        SinkError::Unavailable(m) => Status::unavailable(m),
    }
}

/// Check that a bulk-ingest command targets `ad_clicks` in append mode.
pub fn check_ingest_command(cmd: &CommandStatementIngest) -> Result<(), Status> {
    let table_ok = cmd.table == RAW_TABLE
        && cmd.catalog.as_deref().is_none_or(|c| c == CATALOG)
        && cmd.schema.as_deref().is_none_or(|s| s == SCHEMA);
    if !table_ok {
        return Err(Status::invalid_argument(format!(
            "bulk ingest goes to {CATALOG}.{SCHEMA}.{RAW_TABLE} only, not {}",
            [
                cmd.catalog.as_deref(),
                cmd.schema.as_deref(),
                Some(cmd.table.as_str())
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(".")
        )));
    }
    if cmd.temporary {
        return Err(Status::invalid_argument(
            "temporary tables are not supported; ingest appends to ad_clicks",
        ));
    }
    if cmd.transaction_id.is_some() {
        return Err(Status::invalid_argument(
            "transactions are not supported; each upload is committed as it arrives",
        ));
    }
    if let Some(options) = &cmd.table_definition_options {
        match TableExistsOption::try_from(options.if_exists) {
            Ok(TableExistsOption::Append) => {}
            Ok(TableExistsOption::Fail | TableExistsOption::Unspecified) => {
                return Err(Status::already_exists(
                    "table ad_clicks exists and click events are appended to it; ingest in append mode (ADBC: mode=\"append\")",
                ));
            }
            Ok(TableExistsOption::Replace) => {
                return Err(Status::permission_denied(
                    "ad_clicks cannot be replaced: click events are only appended (ADBC: mode=\"append\")",
                ));
            }
            Err(_) => return Err(Status::invalid_argument("unknown if_exists option")),
        }
        if TableNotExistOption::try_from(options.if_not_exist).is_err() {
            return Err(Status::invalid_argument("unknown if_not_exist option"));
        }
    }
    Ok(())
}

/// Read an upload's batches and store them through `sink`; rejections are
/// numbered by row across the whole upload.
pub async fn ingest_stream(
    sink: Arc<dyn ClickSink>,
    data: PeekableFlightDataStream,
) -> Result<SinkOutcome, Status> {
    // The stream itself, not `into_inner()`: the service has already peeked
    // the first message (the schema) and only the peekable still holds it.
    let mut batches =
        FlightRecordBatchStream::new_from_flight_data(data.map_err(FlightError::from));
    let mut in_flight = FuturesOrdered::new();
    let mut total = SinkOutcome::default();
    let mut chunk: Vec<RecordBatch> = Vec::new();
    let mut chunk_rows = 0usize;
    let mut offset = 0usize;
    let add = |total: &mut SinkOutcome, done: Result<ChunkDone, tokio::task::JoinError>| {
        let (start, outcome) =
            done.map_err(|e| Status::internal(format!("upload chunk task: {e}")))??;
        total.accepted += outcome.accepted;
        total
            .rejected
            .extend(outcome.rejected.into_iter().map(|mut r| {
                r.index += start;
                r
            }));
        Ok::<_, Status>(())
    };
    loop {
        let next = batches
            .try_next()
            .await
            .map_err(|e| Status::invalid_argument(format!("reading the Arrow upload: {e}")))?;
        let end = next.is_none();
        if let Some(batch) = next {
            chunk_rows += batch.num_rows();
            chunk.push(batch);
        }
        if chunk_rows >= CHUNK_ROWS || (end && chunk_rows > 0) {
            let start = offset;
            offset += chunk_rows;
            chunk_rows = 0;
            let sink = sink.clone();
            let rows = std::mem::take(&mut chunk);
            // A task of its own, so it commits while the upload is read on.
            in_flight.push_back(tokio::spawn(async move {
                sink.ingest_arrow(rows)
                    .await
                    .map(|o| (start, o))
                    .map_err(|e| {
                        let s = status(e);
                        Status::new(
                            s.code(),
                            format!("rows from {start} of the upload: {}", s.message()),
                        )
                    })
            }));
            while in_flight.len() >= IN_FLIGHT {
                if let Some(done) = in_flight.next().await {
                    add(&mut total, done)?;
                }
            }
        }
        if end {
            break;
        }
    }
    while let Some(done) = in_flight.next().await {
        add(&mut total, done)?;
    }
    Ok(total)
}

/// A chunk's first row index and outcome.
type ChunkDone = Result<(usize, SinkOutcome), Status>;

/// The answer to a bulk ingest whose rows were partly refused: the count of
/// stored rows cannot carry the refusals, so the call fails and says which
/// rows, and that the others are stored.
pub fn partial_failure(outcome: &SinkOutcome) -> Status {
    let shown: Vec<String> = outcome
        .rejected
        .iter()
        .take(20)
        .map(|r| format!("row {}: {}: {}", r.index, r.field, r.reason))
        .collect();
    let more = outcome.rejected.len().saturating_sub(shown.len());
    Status::invalid_argument(format!(
        "{} rows refused, {} rows stored (sending the upload again is safe: event ids count once): {}{}",
        outcome.rejected.len(),
        outcome.accepted,
        shown.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    ))
}
