//! The buffer behind every ingest path: accepted events wait here until a
//! flush appends them to `ad_clicks` in one Delta commit, and each request is
//! answered only after the commit holding its events succeeded.
//!
//! One writer task per process owns the buffer. It flushes when the buffer
//! reaches `flush_rows` events or when its oldest event has waited
//! `flush_interval`, and once more on shutdown. The request queue is bounded,
//! so a slow store slows producers down instead of growing memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use clicklake_common::schema::{RAW_PARTITION, UTC, raw_schema};
use clicklake_common::time::micros_to_days;
use clicklake_common::{RAW_TABLE, StorageConfig};
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::event::{ClickEvent, Rejection, UnknownFields, Validator};
use crate::metrics::{self, Path};

/// How many requests may wait for the writer before senders are held back.
const QUEUE_REQUESTS: usize = 1024;
/// Commit attempts per flush before the waiting requests get an error.
const COMMIT_ATTEMPTS: u32 = 5;

/// Typed writer settings (from [`crate::IngestArgs`]).
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    pub flush_rows: usize,
    pub flush_interval: Duration,
    pub max_future: Duration,
    /// Most events held in memory awaiting their commit; past it requests
    /// are refused with RESOURCE_EXHAUSTED / 503 until flushes catch up.
    pub max_buffered_events: usize,
    /// Most events in one request.
    pub max_request_events: usize,
    /// What to do with fields that are not event fields.
    pub unknown_fields: UnknownFields,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            flush_rows: 100_000,
            flush_interval: Duration::from_millis(500),
            max_future: Duration::from_secs(86_400),
            max_buffered_events: 1_000_000,
            max_request_events: 100_000,
            unknown_fields: UnknownFields::Ignore,
        }
    }
}

/// What happened to the events of one request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Events stored (durable in the raw table).
    pub accepted: usize,
    /// Events refused, with their position, field and reason.
    pub rejected: Vec<Rejection>,
}

struct Pending {
    events: Vec<ClickEvent>,
    ack: oneshot::Sender<Result<(), String>>,
}

/// A cheap handle to the running writer, shared by the gRPC and HTTP paths.
#[derive(Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Pending>,
    config: WriterConfig,
    /// Events accepted into the buffer and not yet flushed (shared with the writer).
    buffered: Arc<AtomicUsize>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for IngestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestHandle")
            .field("config", &self.config)
            .finish()
    }
}

impl IngestHandle {
    /// Open (or create) the raw table and start the writer task.
    pub async fn start(
        storage: &StorageConfig,
        config: WriterConfig,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let table = storage
            .open_or_create(RAW_TABLE, &raw_schema(), &[RAW_PARTITION])
            .await?;
        if let Some(v) = table.version() {
            metrics::TABLE_VERSION.set(v as i64);
        }
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS);
        let buffered = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(writer_loop(table, rx, config, shutdown, buffered.clone()));
        Ok(Self {
            tx,
            config,
            buffered,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// The validation rules in force right now.
    pub fn validator(&self) -> Validator {
        Validator::now(self.config.max_future, self.config.unknown_fields)
    }

    /// Hand validated events to the writer and wait until they are committed.
    pub async fn submit(&self, path: Path, events: Vec<ClickEvent>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let rows = events.len();
        let limit = self.config.max_buffered_events;
        let before = self.buffered.fetch_add(rows, Ordering::AcqRel);
        if before + rows > limit {
            self.buffered.fetch_sub(rows, Ordering::AcqRel);
            metrics::BACKPRESSURE_REFUSALS.inc();
            return Err(Error::Backpressure {
                buffered: before,
                limit,
            });
        }
        let started = Instant::now();
        let (ack, done) = oneshot::channel();
        if self.tx.send(Pending { events, ack }).await.is_err() {
            self.buffered.fetch_sub(rows, Ordering::AcqRel);
            return Err(Error::ShuttingDown);
        }
        metrics::BUFFERED_EVENTS.add(rows as i64);
        match done.await {
            Ok(Ok(())) => {
                metrics::EVENTS_ACCEPTED.inc_by(rows as u64);
                metrics::ACK_SECONDS
                    .with_label_values(&[path.label()])
                    .observe(started.elapsed().as_secs_f64());
                Ok(())
            }
            Ok(Err(reason)) => Err(Error::Commit {
                table: RAW_TABLE.to_string(),
                reason,
            }),
            Err(_) => Err(Error::ShuttingDown),
        }
    }

    /// Store the valid events of a request and report the rejected ones. The
    /// good events of a batch are kept whatever the others hold.
    pub async fn ingest(
        &self,
        path: Path,
        results: impl IntoIterator<Item = Result<ClickEvent, Rejection>>,
    ) -> Result<Outcome> {
        let results: Vec<_> = results.into_iter().collect();
        // A request over the buffer's size could never be taken: refuse it as
        // too large, not with a retry hint.
        let limit = self
            .config
            .max_request_events
            .min(self.config.max_buffered_events);
        if results.len() > limit {
            return Err(Error::TooLarge {
                events: results.len(),
                limit,
            });
        }
        let mut events = Vec::new();
        let mut rejected = Vec::new();
        for (index, r) in results.into_iter().enumerate() {
            match r {
                Ok(e) => events.push(e),
                Err(rej) => {
                    metrics::rejected(&rej.field);
                    rejected.push(rej.at(index));
                }
            }
        }
        let accepted = events.len();
        self.submit(path, events).await?;
        Ok(Outcome { accepted, rejected })
    }

    /// Wait until the writer has flushed everything and stopped (after shutdown).
    pub async fn stopped(&self) {
        if let Some(task) = self.task.lock().await.take()
            && let Err(err) = task.await
        {
            warn!(%err, "ingest writer task ended abnormally");
        }
    }
}

async fn writer_loop(
    mut table: DeltaTable,
    mut rx: mpsc::Receiver<Pending>,
    config: WriterConfig,
    shutdown: CancellationToken,
    buffered: Arc<AtomicUsize>,
) {
    let mut commits = Commits::new();
    let mut buffer: Vec<Pending> = Vec::new();
    let mut rows = 0usize;
    let mut oldest: Option<Instant> = None;
    let mut tick = tokio::time::interval(config.flush_interval.min(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            received = rx.recv() => match received {
                Some(p) => {
                    rows += p.events.len();
                    oldest.get_or_insert_with(Instant::now);
                    buffer.push(p);
                }
                None => break,
            },
            _ = tick.tick() => {}
        }
        let due = oldest.is_some_and(|t| t.elapsed() >= config.flush_interval);
        if rows >= config.flush_rows || (due && rows > 0) {
            flush(&mut table, &mut commits, std::mem::take(&mut buffer)).await;
            buffered.fetch_sub(rows, Ordering::AcqRel);
            rows = 0;
            oldest = None;
        }
    }
    // Shutdown: take in what is already queued, refuse the rest, flush once more.
    rx.close();
    while let Some(p) = rx.recv().await {
        buffer.push(p);
    }
    let pending: usize = buffer.iter().map(|p| p.events.len()).sum();
    if pending > 0 {
        info!(
            events = pending,
            "flushing the ingest buffer before shutdown"
        );
        flush(&mut table, &mut commits, buffer).await;
        buffered.fetch_sub(pending, Ordering::AcqRel);
    }
}

/// This writer's commit identity: each flush's commit carries a Delta
/// application transaction (`txn`) with the writer's own app id and the
/// flush's sequence number. When a commit attempt fails in a way that leaves
/// its outcome unknown (a timeout or a dropped connection after the store
/// took the commit), the writer reads the table again and finds its own
/// `txn`: the events are stored, and appending them again would store them
/// twice.
struct Commits {
    app_id: String,
    seq: i64,
}

impl Commits {
    fn new() -> Self {
        Self {
            app_id: format!("clicklake-ingest-{}", uuid::Uuid::new_v4()),
            seq: 0,
        }
    }

    /// Whether the commit of flush `seq` is in the table after all.
    async fn landed(&self, table: &DeltaTable, seq: i64) -> bool {
        let Ok(state) = table.snapshot() else {
            return false;
        };
        matches!(
            state
                .transaction_version(table.log_store().as_ref(), &self.app_id)
                .await,
            Ok(Some(v)) if v >= seq
        )
    }
}

/// Commit the buffered requests as one append, then answer each of them.
#[tracing::instrument(name = "ingest.flush", skip_all, fields(rows))]
async fn flush(table: &mut DeltaTable, commits: &mut Commits, buffer: Vec<Pending>) {
    let rows: usize = buffer.iter().map(|p| p.events.len()).sum();
    tracing::Span::current().record("rows", rows);
    let started = Instant::now();
    commits.seq += 1;
    let seq = commits.seq;
    // A copy of an event id already in this flush is not written twice.
    let mut seen = std::collections::HashSet::with_capacity(rows);
    let unique: Vec<&ClickEvent> = buffer
        .iter()
        .flat_map(|p| p.events.iter())
        .filter(|e| seen.insert(e.event_id.as_str()))
        .collect();
    metrics::DUPLICATES_DROPPED.inc_by((rows - unique.len()) as u64);
    let batch = to_batch(
        unique.iter().copied(),
        unique.len(),
        chrono::Utc::now().timestamp_micros(),
    );
    let mut outcome: Result<(), String> = Err("no commit attempted".into());
    for attempt in 1..=COMMIT_ATTEMPTS {
        let result = match &batch {
            Ok(batch) => table
                .clone()
                .write(vec![batch.clone()])
                .with_save_mode(SaveMode::Append)
                .with_partition_columns([RAW_PARTITION])
                .with_commit_properties(
                    CommitProperties::default()
                        .with_application_transaction(Transaction::new(&commits.app_id, seq))
                        // It reads nothing: optimize and deletes need not
                        // conflict with it (WriteSerializable).
                        .with_metadata([("isBlindAppend".to_string(), serde_json::json!(true))]),
                )
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(updated) => {
                *table = updated;
                outcome = Ok(());
                break;
            }
            Err(reason) => {
                warn!(attempt, rows, %reason, "append to {RAW_TABLE} failed");
                metrics::COMMIT_ERRORS.inc();
                outcome = Err(reason);
                if batch.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                if let Err(err) = table.update_state().await {
                    warn!(%err, "reloading {RAW_TABLE} after a failed append");
                    continue;
                }
                if commits.landed(table, seq).await {
                    info!(
                        attempt,
                        rows, "the failed append had been committed after all"
                    );
                    metrics::AMBIGUOUS_COMMITS.inc();
                    outcome = Ok(());
                    break;
                }
            }
        }
    }
    if let Some(v) = table.version() {
        metrics::TABLE_VERSION.set(v as i64);
    }
    metrics::FLUSH_SECONDS.observe(started.elapsed().as_secs_f64());
    metrics::BUFFERED_EVENTS.sub(rows as i64);
    if outcome.is_ok() {
        metrics::FLUSHED_EVENTS.inc_by(rows as u64);
        metrics::BATCH_EVENTS.observe(rows as f64);
    }
    for p in buffer {
        // A requester that gave up no longer listens; its events are stored anyway.
        let _ = p.ack.send(outcome.clone());
    }
}

/// Arrow batch of events in the column order of [`raw_schema`].
pub fn to_batch<'a>(
    events: impl Iterator<Item = &'a ClickEvent> + Clone,
    rows: usize,
    ingest_time: i64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let strings = |f: fn(&ClickEvent) -> Option<&str>| -> ArrayRef {
        Arc::new(events.clone().map(f).collect::<StringArray>())
    };
    let times = events.clone().map(|e| e.event_time).collect::<Vec<_>>();
    let columns: Vec<ArrayRef> = vec![
        strings(|e| Some(&e.event_id)),
        strings(|e| Some(&e.ad_id)),
        strings(|e| Some(&e.user_id)),
        Arc::new(TimestampMicrosecondArray::from(times.clone()).with_timezone(UTC)),
        strings(|e| e.device.as_deref()),
        strings(|e| e.os.as_deref()),
        strings(|e| e.country.as_deref()),
        strings(|e| e.campaign_id.as_deref()),
        Arc::new(
            events
                .clone()
                .map(|e| Some(e.is_conversion))
                .collect::<BooleanArray>(),
        ),
        Arc::new(TimestampMicrosecondArray::from(vec![ingest_time; rows]).with_timezone(UTC)),
        Arc::new(Date32Array::from(
            times.iter().map(|t| micros_to_days(*t)).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(raw_schema(), columns)
}
