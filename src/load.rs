//! `clicklake load FILE`: replay a click log through the gRPC ingest API in
//! batches, with a progress bar. Event ids come from the file itself, so
//! loading the same file twice changes no count.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clicklake_proto::ingest::click_event::Timestamp;
use clicklake_proto::ingest::ingest_service_client::IngestServiceClient;
use clicklake_proto::ingest::{ClickEvent, TrackAdClicksRequest};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::Channel;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// The TalkingData AdTracking CSV: ip, app, device, os, channel,
    /// click_time, attributed_time, is_attributed.
    Talkingdata,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The file to load.
    pub file: PathBuf,

    /// Layout of the file.
    #[arg(long, value_enum, env = "CLICKLAKE_LOAD_FORMAT")]
    pub format: Format,

    /// gRPC endpoint of a clicklake ingest node.
    #[arg(
        long,
        env = "CLICKLAKE_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,

    /// Events per TrackAdClicks request.
    #[arg(long, env = "CLICKLAKE_LOAD_BATCH", default_value_t = 5_000)]
    pub batch_size: usize,

    /// Requests in flight at once.
    #[arg(long, env = "CLICKLAKE_LOAD_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,

    /// Load only the first N data rows.
    #[arg(long)]
    pub limit: Option<usize>,

    /// Bearer token, when the server requires authentication.
    #[arg(long, env = "CLICKLAKE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// How long to keep sending a batch the server did not confirm (it is
    /// restarting, overloaded or unreachable) before giving up.
    #[arg(long, env = "CLICKLAKE_LOAD_RETRY_FOR", default_value = "2min", value_parser = humantime::parse_duration)]
    pub retry_for: Duration,
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// Data rows read from the file.
    pub rows: usize,
    /// Events the server acknowledged as stored.
    pub stored: u64,
    /// Rows the server refused (field: reason).
    pub rejected: Vec<String>,
    /// Rows that could not be read as clicks (line: reason), at most 10 kept.
    pub invalid: Vec<String>,
    /// How many rows could not be read as clicks.
    pub invalid_count: usize,
}

/// A batch of events, the file line of each, and the bytes they came from.
struct Batch {
    events: Vec<ClickEvent>,
    lines: Vec<u64>,
    bytes: u64,
}

/// What the file reader found.
#[derive(Debug, Default)]
struct ReadSummary {
    rows: usize,
    invalid: Vec<String>,
    invalid_count: usize,
}

/// `clicklake load`: load, print a summary, fail if any row was not stored.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let s = load(&args).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loaded {} rows from {} in {secs:.1}s ({:.0} events/s): {} stored, {} rejected by the server, {} invalid rows skipped",
        s.rows,
        args.file.display(),
        s.stored as f64 / secs.max(1e-9),
        s.stored,
        s.rejected.len(),
        s.invalid_count,
    );
    for line in s.invalid.iter().chain(s.rejected.iter()).take(10) {
        println!("  {line}");
    }
    if !s.rejected.is_empty() || s.invalid_count > 0 {
        bail!(
            "{} rows were not loaded (see above)",
            s.rejected.len() + s.invalid_count
        );
    }
    Ok(())
}

/// Replay the file through the ingest API; returns once every batch was
/// answered.
pub async fn load(args: &LoadArgs) -> anyhow::Result<LoadSummary> {
    let total_bytes = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let channel = Channel::from_shared(args.endpoint.clone())
        .with_context(|| format!("endpoint {:?}", args.endpoint))?
        .connect()
        .await
        .with_context(|| format!("connecting to clicklake at {}", args.endpoint))?;
    let auth: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = match &args.token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .context("--token is not a valid header value")?,
        ),
        None => None,
    };
    let client = IngestServiceClient::new(channel)
        .max_encoding_message_size(64 * 1024 * 1024)
        .max_decoding_message_size(64 * 1024 * 1024);

    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta}) {msg}",
        )?
        .progress_chars("=> "),
    );

    let (tx, rx) = mpsc::channel::<Batch>(args.concurrency.max(1) * 2);
    let file = args.file.clone();
    let (batch_size, limit, format) = (args.batch_size.max(1), args.limit, args.format);
    let reader = tokio::task::spawn_blocking(move || match format {
        Format::Talkingdata => read_talkingdata(&file, batch_size, limit, &tx),
    });

    let mut acked = 0u64;
    let mut rejected = Vec::new();
    let mut sends = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|batch| {
            let client = client.clone();
            let auth = auth.clone();
            let retry_for = args.retry_for;
            async move {
                send_with_retry(client, batch.events, auth, retry_for)
                    .await
                    .map(|r| (batch.lines, batch.bytes, r))
            }
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(result) = sends.next().await {
        let (lines, bytes, response) = result?;
        acked += u64::from(response.accepted);
        rejected.extend(response.rejected.into_iter().map(|r| {
            let line = lines.get(r.index as usize).copied().unwrap_or_default();
            format!("line {line}: {}: {}", r.field, r.reason)
        }));
        bar.inc(bytes);
        bar.set_message(format!("{acked} events stored"));
    }
    let summary = reader.await.context("file reader")??;
    bar.finish_and_clear();
    Ok(LoadSummary {
        rows: summary.rows,
        stored: acked,
        rejected,
        invalid: summary.invalid,
        invalid_count: summary.invalid_count,
    })
}

async fn send_with_retry(
    mut client: IngestServiceClient<Channel>,
    events: Vec<ClickEvent>,
    auth: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    retry_for: Duration,
) -> anyhow::Result<clicklake_proto::ingest::TrackAdClicksResponse> {
    let mut delay = Duration::from_millis(100);
    let give_up = Instant::now() + retry_for;
    for attempt in 1.. {
        let mut request = tonic::Request::new(TrackAdClicksRequest {
            events: events.clone(),
        });
        if let Some(value) = &auth {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        match client.track_ad_clicks(request).await {
            Ok(r) => return Ok(r.into_inner()),
            // The events carry their ids, so a retry can never count twice.
            // Cancelled / Unknown (a transport error): the server went away
            // mid-request. The batch may or may not be stored; its event ids
            // make sending it again safe.
            Err(s)
                if Instant::now() < give_up
                    && matches!(
                        s.code(),
                        Code::Unavailable
                            | Code::ResourceExhausted
                            | Code::Cancelled
                            | Code::Unknown
                            | Code::DeadlineExceeded
                    ) =>
            {
                tracing::warn!(attempt, status = %s.message(), "batch not confirmed; sending it again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(s) if s.code() == Code::Unimplemented => bail!(
                "this server does not offer the ingest service (a query-only node? `clicklake ingest` and `clicklake serve` listen on 127.0.0.1:50051)"
            ),
            Err(s) => bail!(
                "a batch was not confirmed as stored ({:?}: {}); loading the file again is safe",
                s.code(),
                s.message()
            ),
        }
    }
    unreachable!("the retry loop returns")
}

/// Columns of the TalkingData CSV that a click needs.
const TD_COLUMNS: [&str; 7] = [
    "ip",
    "app",
    "device",
    "os",
    "channel",
    "click_time",
    "is_attributed",
];

/// Map the header onto the needed columns. Stray non-alphanumeric bytes
/// before a name (the published file starts with `..ip`) are reported and
/// ignored; a missing column is an error naming it.
fn td_header(header: &csv::StringRecord) -> anyhow::Result<[usize; 7]> {
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let clean = raw.trim().trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
            if clean != raw {
                eprintln!(
                    "note: header column {} is {raw:?}; reading it as {clean:?} (stray leading bytes ignored)",
                    i + 1
                );
            }
            clean.to_ascii_lowercase()
        })
        .collect();
    let mut idx = [0usize; 7];
    for (slot, want) in idx.iter_mut().zip(TD_COLUMNS) {
        *slot = names.iter().position(|n| n == want).with_context(|| {
            format!(
                "the header has no {want:?} column (found {names:?}); is this a TalkingData file?"
            )
        })?;
    }
    Ok(idx)
}

/// The event id of the data row on `line` (1-based line number in the file):
/// a SHA-256 over the line number and the row's fields joined by commas, so
/// the same file always yields the same ids, rows appended later keep the
/// ids of the rows before them, and two identical rows stay two clicks.
fn td_event_id(line: u64, raw: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(line.to_le_bytes());
    h.update(raw);
    format!("td-{}", hex::encode(&h.finalize()[..16]))
}

fn td_event(
    idx: &[usize; 7],
    rec: &csv::ByteRecord,
    line: u64,
    raw: &[u8],
) -> Result<ClickEvent, String> {
    let field = |i: usize| -> Result<&str, String> {
        let name = TD_COLUMNS[i];
        let v = rec.get(idx[i]).ok_or_else(|| format!("{name}: missing"))?;
        let v = std::str::from_utf8(v)
            .map_err(|_| format!("{name}: not UTF-8"))?
            .trim();
        if v.is_empty() {
            return Err(format!("{name}: empty"));
        }
        Ok(v)
    };
    let click_time = field(5)?;
    let t = chrono::NaiveDateTime::parse_from_str(click_time, "%Y-%m-%d %H:%M:%S")
        .map_err(|e| format!("click_time: {click_time:?} is not YYYY-MM-DD HH:MM:SS ({e})"))?;
    let app = field(1)?;
    let is_conversion = match field(6)? {
        "0" => false,
        "1" => true,
        other => return Err(format!("is_attributed: {other:?} is not 0 or 1")),
    };
    Ok(ClickEvent {
        event_id: td_event_id(line, raw),
        ad_id: format!("{app}-{}", field(4)?),
        user_id: field(0)?.to_string(),
        timestamp: Some(Timestamp::TimestampMicros(t.and_utc().timestamp_micros())),
        device: field(2)?.to_string(),
        os: field(3)?.to_string(),
        country: String::new(),
        campaign_id: app.to_string(),
        is_conversion,
    })
}

fn read_talkingdata(
    path: &PathBuf,
    batch_size: usize,
    limit: Option<usize>,
    tx: &mpsc::Sender<Batch>,
) -> anyhow::Result<ReadSummary> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // Flexible: a row with too few or too many fields is reported as an
    // invalid row (by the field it lacks), not the end of the load.
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(BufReader::new(file));
    let idx = td_header(rdr.headers()?)?;
    let mut summary = ReadSummary::default();
    let mut batch = Vec::with_capacity(batch_size);
    let mut lines = Vec::with_capacity(batch_size);
    let mut last_offset = 0u64;
    let mut rec = csv::ByteRecord::new();
    let mut raw = Vec::new();
    while rdr.read_byte_record(&mut rec)? {
        if limit.is_some_and(|l| summary.rows >= l) {
            break;
        }
        let pos = rec
            .position()
            .map(|p| (p.line(), p.byte()))
            .unwrap_or_default();
        raw.clear();
        for (i, f) in rec.iter().enumerate() {
            if i > 0 {
                raw.push(b',');
            }
            raw.extend_from_slice(f);
        }
        summary.rows += 1;
        match td_event(&idx, &rec, pos.0, &raw) {
            Ok(e) => {
                batch.push(e);
                lines.push(pos.0);
            }
            Err(reason) => {
                summary.invalid_count += 1;
                if summary.invalid.len() < 10 {
                    summary.invalid.push(format!("line {}: {reason}", pos.0));
                }
            }
        }
        if batch.len() >= batch_size {
            let bytes = pos.1 - last_offset;
            last_offset = pos.1;
            let events = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            let lines = std::mem::replace(&mut lines, Vec::with_capacity(batch_size));
            if tx
                .blocking_send(Batch {
                    events,
                    lines,
                    bytes,
                })
                .is_err()
            {
                return Ok(summary); // the sender side stopped on an error it reports
            }
        }
    }
    let total = std::fs::metadata(path)
        .map(|m| m.len())
        .unwrap_or(last_offset);
    if !batch.is_empty() || total > last_offset {
        let _ = tx.blocking_send(Batch {
            events: batch,
            lines,
            bytes: total.saturating_sub(last_offset),
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> csv::StringRecord {
        csv::StringRecord::from(s.split(',').collect::<Vec<_>>())
    }

    #[test]
    fn header_quirk_is_read_and_missing_columns_named() {
        let idx = td_header(&header(
            "..ip,app,device,os,channel,click_time,attributed_time,is_attributed",
        ))
        .expect("quirky header is usable");
        assert_eq!(idx, [0, 1, 2, 3, 4, 5, 7]);
        let err = td_header(&header("app,device,os,channel,click_time,is_attributed"))
            .expect_err("no ip column");
        assert!(err.to_string().contains("no \"ip\" column"), "{err}");
    }

    #[test]
    fn row_maps_onto_a_click() {
        let idx = [0, 1, 2, 3, 4, 5, 7];
        let rec = csv::ByteRecord::from(vec![
            "87540",
            "12",
            "1",
            "13",
            "497",
            "2017-11-07 09:30:38",
            "",
            "0",
        ]);
        let e = td_event(&idx, &rec, 2, b"87540,12,1,13,497,2017-11-07 09:30:38,,0")
            .expect("valid row");
        assert_eq!(e.ad_id, "12-497");
        assert_eq!(e.user_id, "87540");
        assert_eq!(e.campaign_id, "12");
        // 2017-11-07T09:30:38Z = 1510047038 s since the epoch.
        assert_eq!(
            e.timestamp,
            Some(Timestamp::TimestampMicros(1_510_047_038_000_000))
        );
        assert_eq!(
            e.event_id,
            td_event_id(2, b"87540,12,1,13,497,2017-11-07 09:30:38,,0")
        );
        assert_ne!(
            e.event_id,
            td_event_id(3, b"87540,12,1,13,497,2017-11-07 09:30:38,,0")
        );
        let bad = csv::ByteRecord::from(vec!["1", "2", "3", "4", "5", "07/11/2017", "", "0"]);
        let err = td_event(&idx, &bad, 9, b"x").expect_err("bad time");
        assert!(err.starts_with("click_time: \"07/11/2017\""), "{err}");
    }
}
