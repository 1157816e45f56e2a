//! `clicklake gen`: synthetic clicks with the shape of real ad traffic: a
//! few ads and users take most clicks (power-law skew), traffic follows the
//! time of day, a share of events arrives late (seconds to weeks) and a share
//! is sent twice (the same event id, as a retrying producer does).
//!
//! It writes NDJSON (`--out FILE`, `-` for stdout) or drives a running node
//! through one ingest path (`--send`), reporting sustained events/s with
//! durable acks and the ack latency of each request.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow_flight::{FlightClient, FlightDescriptor, encode::FlightDataEncoderBuilder};
use clicklake_common::time::{micros_to_rfc3339, parse_time_arg};
use clicklake_proto::ingest::click_event::Timestamp;
use clicklake_proto::ingest::ingest_service_client::IngestServiceClient;
use clicklake_proto::ingest::{ClickEvent, TrackAdClickRequest, TrackAdClicksRequest};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tonic::transport::Channel;

/// The ingest path `--send` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SendPath {
    /// gRPC `TrackAdClick`, one event per request.
    Unary,
    /// gRPC `TrackAdClicks`, `--batch-size` events per request.
    Batch,
    /// gRPC `TrackAdClickStream`: each worker streams batches on one call.
    Stream,
    /// `POST /v1/clicks` with an NDJSON body of `--batch-size` events.
    Http,
    /// Arrow record batches over Flight `DoPut` (descriptor path `ad_clicks`).
    Flight,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// Distinct events to generate (the resent copies of --duplicates come on top).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,

    /// Distinct ads (ids `ad-0` ...; the lowest ids take most clicks).
    #[arg(long, default_value_t = 10_000)]
    pub ads: u64,

    /// Distinct users.
    #[arg(long, default_value_t = 1_000_000)]
    pub users: u64,

    /// Ads per campaign (campaign ids `c-<ad / this>`).
    #[arg(long, default_value_t = 20)]
    pub ads_per_campaign: u64,

    /// Start of the event-time span (RFC 3339 or YYYY-MM-DD).
    #[arg(long, default_value = "2026-01-01")]
    pub start: String,

    /// Length of the event-time span.
    #[arg(long, default_value = "30days", value_parser = humantime::parse_duration)]
    pub span: Duration,

    /// Share of events that arrive late: sent after events up to 40 days newer.
    #[arg(long, default_value_t = 0.02)]
    pub late: f64,

    /// Share of events sent a second time with the same event id.
    #[arg(long, default_value_t = 0.01)]
    pub duplicates: f64,

    /// Seed: the same seed and flags give the same events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Write NDJSON here (`-` for stdout) instead of sending.
    #[arg(long, conflicts_with = "send")]
    pub out: Option<PathBuf>,

    /// Send through this ingest path to a running node and report throughput and ack latency.
    #[arg(long, value_enum)]
    pub send: Option<SendPath>,

    /// gRPC endpoint (unary, batch, stream, flight).
    #[arg(
        long,
        env = "CLICKLAKE_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,

    /// HTTP endpoint (http).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub http_endpoint: String,

    /// Events per request (batch, stream, http, flight).
    #[arg(long, default_value_t = 1_000)]
    pub batch_size: usize,

    /// Requests in flight at once (streams, for `stream`).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,

    /// Target events per second; 0 sends as fast as acks come back.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Bearer token, when the node requires authentication.
    #[arg(long, env = "CLICKLAKE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Print the result as one JSON object (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// SplitMix64: small, fast and reproducible across platforms.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A rank in [0, n) with power-law skew: rank ~ n·u³, so the first 10%
    /// of ids take about 46% of the draws.
    fn skewed(&mut self, n: u64) -> u64 {
        ((self.unit().powi(3) * n as f64) as u64).min(n.saturating_sub(1))
    }
}

const DEVICES: [(&str, f64); 4] = [
    ("mobile", 0.62),
    ("desktop", 0.28),
    ("tablet", 0.08),
    ("tv", 0.02),
];
const OSES: [&str; 4] = ["android", "ios", "windows", "macos"];
const COUNTRIES: [(&str, f64); 8] = [
    ("US", 0.30),
    ("IN", 0.15),
    ("BR", 0.10),
    ("DE", 0.09),
    ("JP", 0.09),
    ("GB", 0.08),
    ("FR", 0.07),
    ("CN", 0.12),
];

/// Traffic level by hour of day (UTC), 0.1 at night to 1.0 in the evening.
fn busyness(t_us: i64) -> f64 {
    let hour = (t_us as f64 / 3.6e9).rem_euclid(24.0);
    0.55 + 0.45 * ((hour - 12.0) / 24.0 * std::f64::consts::TAU).sin()
}

fn weighted<'a>(rng: &mut Rng, items: &[(&'a str, f64)]) -> &'a str {
    let mut u = rng.unit();
    for (name, w) in items {
        if u < *w {
            return name;
        }
        u -= w;
    }
    items[items.len() - 1].0
}

/// The event generator: an iterator of protobuf events, in sending order.
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    args: GenArgs,
    start_us: i64,
    /// Event time of the newest on-time event.
    clock_us: i64,
    /// Mean clock step, scaled so that the events cover about the span.
    step_us: f64,
    n: u64,
    /// An earlier event to send once more, when a duplicate is due.
    pending_duplicate: Option<ClickEvent>,
}

impl Generator {
    pub fn new(args: &GenArgs) -> anyhow::Result<Self> {
        let start_us = parse_time_arg(&args.start).map_err(anyhow::Error::msg)?;
        let span_us = i64::try_from(args.span.as_micros()).context("--span is too long")?;
        if span_us <= 0 || args.ads == 0 || args.users == 0 {
            bail!("--span, --ads and --users must be positive");
        }
        // A step of `step_us / busyness` at each event puts busyness/step_us
        // events in each microsecond, so the events fill the span when
        // step_us = span * mean busyness / events.
        let samples = 24 * 60;
        let mean_busyness =
            (0..samples).map(|m| busyness(m * 60_000_000)).sum::<f64>() / samples as f64;
        Ok(Self {
            rng: Rng(args.seed),
            args: args.clone(),
            start_us,
            clock_us: start_us,
            step_us: span_us as f64 * mean_busyness / args.events.max(1) as f64,
            n: 0,
            pending_duplicate: None,
        })
    }

    fn event(&mut self) -> ClickEvent {
        let i = self.n;
        // The clock advances faster at night: busy hours get more events.
        self.clock_us += (self.step_us / busyness(self.clock_us)) as i64;
        let mut t = self.clock_us;
        if self.rng.unit() < self.args.late {
            // Late by 1 s to 40 days, log-uniform.
            let lateness = (1e6 * (40.0f64 * 86_400.0).powf(self.rng.unit())) as i64;
            t = (t - lateness).max(self.start_us);
        }
        let ad = self.rng.skewed(self.args.ads);
        let user = self.rng.skewed(self.args.users);
        let device = weighted(&mut self.rng, &DEVICES);
        let os = match device {
            "mobile" | "tablet" => OSES[(self.rng.next() % 2) as usize],
            _ => OSES[2 + (self.rng.next() % 2) as usize],
        };
        ClickEvent {
            event_id: format!("g{}-{i}", self.args.seed),
            ad_id: format!("ad-{ad}"),
            user_id: format!("u-{user}"),
            timestamp: Some(Timestamp::TimestampMicros(t)),
            device: device.into(),
            os: os.into(),
            country: weighted(&mut self.rng, &COUNTRIES).into(),
            campaign_id: format!("c-{}", ad / self.args.ads_per_campaign.max(1)),
            is_conversion: self.rng.unit() < 0.02,
        }
    }
}

impl Iterator for Generator {
    type Item = ClickEvent;

    fn next(&mut self) -> Option<ClickEvent> {
        if let Some(dup) = self.pending_duplicate.take() {
            return Some(dup);
        }
        if self.n >= self.args.events {
            return None;
        }
        let e = self.event();
        self.n += 1;
        if self.rng.unit() < self.args.duplicates {
            self.pending_duplicate = Some(e.clone());
        }
        Some(e)
    }
}

fn time_of(e: &ClickEvent) -> i64 {
    match e.timestamp {
        Some(Timestamp::TimestampMicros(t)) => t,
        _ => 0,
    }
}

/// One event as a JSON object with the API's field names.
pub fn to_json(e: &ClickEvent) -> serde_json::Value {
    serde_json::json!({
        "event_id": e.event_id,
        "ad_id": e.ad_id,
        "user_id": e.user_id,
        "timestamp": micros_to_rfc3339(time_of(e)),
        "device": e.device,
        "os": e.os,
        "country": e.country,
        "campaign_id": e.campaign_id,
        "is_conversion": e.is_conversion,
    })
}

/// Events as an Arrow batch with the API's field names.
pub fn to_arrow(events: &[ClickEvent]) -> anyhow::Result<RecordBatch> {
    let s = |f: fn(&ClickEvent) -> &str| -> ArrayRef {
        Arc::new(events.iter().map(|e| Some(f(e))).collect::<StringArray>())
    };
    let schema = Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("ad_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("device", DataType::Utf8, true),
        Field::new("os", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("campaign_id", DataType::Utf8, true),
        Field::new("is_conversion", DataType::Boolean, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        s(|e| &e.event_id),
        s(|e| &e.ad_id),
        s(|e| &e.user_id),
        Arc::new(
            TimestampMicrosecondArray::from(events.iter().map(time_of).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        s(|e| &e.device),
        s(|e| &e.os),
        s(|e| &e.country),
        s(|e| &e.campaign_id),
        Arc::new(
            events
                .iter()
                .map(|e| Some(e.is_conversion))
                .collect::<BooleanArray>(),
        ),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// `clicklake gen`.
pub async fn run(args: GenArgs) -> anyhow::Result<()> {
    let generator = Generator::new(&args)?;
    match (&args.out, args.send) {
        (Some(path), None) => write_ndjson(generator, path, args.events),
        (None, Some(path)) => {
            let report = send(generator, &args, path).await?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{}: {} events acknowledged in {:.1}s = {:.0} events/s; {} requests, ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    report.path,
                    report.events,
                    report.seconds,
                    report.events_per_second,
                    report.requests,
                    report.ack_p50_ms,
                    report.ack_p99_ms,
                    report.ack_max_ms
                );
            }
            Ok(())
        }
        _ => bail!("say where the events go: --out FILE (NDJSON, - for stdout) or --send PATH"),
    }
}

fn write_ndjson(generator: Generator, path: &PathBuf, total: u64) -> anyhow::Result<()> {
    let to_stdout = path.as_os_str() == "-";
    let out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let bar = progress(if to_stdout { 0 } else { total });
    for (i, e) in generator.enumerate() {
        serde_json::to_writer(&mut out, &to_json(&e))?;
        out.write_all(b"\n")?;
        if i % 10_000 == 0 {
            bar.set_position(i as u64);
        }
    }
    out.flush()?;
    bar.finish_and_clear();
    Ok(())
}

fn progress(total: u64) -> ProgressBar {
    if total == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// What a `--send` run measured.
#[derive(Debug, serde::Serialize)]
pub struct SendReport {
    pub path: String,
    pub events: u64,
    pub requests: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    pub rejected: u64,
}

/// A unit of sending: the events of one request.
type Chunk = Vec<ClickEvent>;

async fn send(generator: Generator, args: &GenArgs, path: SendPath) -> anyhow::Result<SendReport> {
    let per_request = if path == SendPath::Unary {
        1
    } else {
        args.batch_size.max(1)
    };
    let workers = args.concurrency.max(1);
    // The generator runs on its own thread; chunks queue up a little ahead.
    let (tx, rx) = async_channel(workers * 4);
    let total = args.events;
    std::thread::spawn(move || {
        let mut chunk = Vec::with_capacity(per_request);
        for e in generator {
            chunk.push(e);
            if chunk.len() == per_request
                && tx
                    .blocking_send(std::mem::replace(
                        &mut chunk,
                        Vec::with_capacity(per_request),
                    ))
                    .is_err()
            {
                return;
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(chunk);
        }
    });
    let bar = progress(total);
    let acked = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let rx = rx.clone();
        let client = Client::connect(args, path).await?;
        let acked = acked.clone();
        let rejected = rejected.clone();
        let bar = bar.clone();
        let rate = args.rate;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            client
                .run(rx, |n, rej, latency| {
                    latencies.push(latency);
                    let done = acked.fetch_add(n, Ordering::Relaxed) + n;
                    rejected.fetch_add(rej, Ordering::Relaxed);
                    bar.set_position(done);
                    pace(rate, done, started)
                })
                .await
                .map(|()| latencies)
        }));
    }
    drop(rx);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.context("sender task")??);
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let events = acked.load(Ordering::Relaxed);
    Ok(SendReport {
        path: format!("{path:?}").to_lowercase(),
        events,
        requests: latencies.len() as u64,
        seconds,
        events_per_second: events as f64 / seconds.max(1e-9),
        ack_p50_ms: pct(0.5),
        ack_p99_ms: pct(0.99),
        ack_max_ms: pct(1.0),
        rejected: rejected.load(Ordering::Relaxed),
    })
}

/// How long to wait so that `done` events took at least `done / rate` seconds.
fn pace(rate: u64, done: u64, started: Instant) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    let due = Duration::from_secs_f64(done as f64 / rate as f64);
    due.saturating_sub(started.elapsed())
}

/// A bounded multi-consumer queue from the generator thread to the senders.
fn async_channel(
    capacity: usize,
) -> (
    tokio::sync::mpsc::Sender<Chunk>,
    Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Chunk>>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    (tx, Arc::new(tokio::sync::Mutex::new(rx)))
}

type Queue = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Chunk>>>;

async fn next_chunk(rx: &Queue) -> Option<Chunk> {
    rx.lock().await.recv().await
}

/// One sender's connection, by path.
enum Client {
    Grpc(IngestServiceClient<Channel>, SendPath, Option<String>),
    Http(reqwest::Client, String, Option<String>),
    Flight(FlightClient),
}

impl Client {
    async fn connect(args: &GenArgs, path: SendPath) -> anyhow::Result<Self> {
        let channel = || async {
            Channel::from_shared(args.endpoint.clone())
                .context("--endpoint")?
                .connect()
                .await
                .with_context(|| format!("connecting to {}", args.endpoint))
        };
        Ok(match path {
            SendPath::Unary | SendPath::Batch | SendPath::Stream => Self::Grpc(
                IngestServiceClient::new(channel().await?)
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20),
                path,
                args.token.clone(),
            ),
            SendPath::Http => Self::Http(
                reqwest::Client::new(),
                format!("{}/v1/clicks", args.http_endpoint.trim_end_matches('/')),
                args.token.clone(),
            ),
            SendPath::Flight => {
                let mut client = FlightClient::new(channel().await?);
                if let Some(token) = &args.token {
                    client.add_header("authorization", &format!("Bearer {token}"))?;
                }
                Self::Flight(client)
            }
        })
    }

    /// Send chunks until the queue is empty; `acked(events, rejected,
    /// latency)` after each acknowledged request returns how long to pause.
    async fn run(
        self,
        rx: Queue,
        mut acked: impl FnMut(u64, u64, Duration) -> Duration,
    ) -> anyhow::Result<()> {
        match self {
            Self::Grpc(client, SendPath::Stream, token) => {
                // One call per worker, batches streamed on it; the ack is the
                // call's end, so latency here is per stream.
                let (tx, batches) = tokio::sync::mpsc::channel(4);
                let started = Instant::now();
                let mut sent = 0u64;
                let call = {
                    let mut request =
                        tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(batches));
                    bearer(&mut request, token.as_deref())?;
                    let mut client = client;
                    tokio::spawn(async move { client.track_ad_click_stream(request).await })
                };
                while let Some(events) = next_chunk(&rx).await {
                    sent += events.len() as u64;
                    if tx.send(TrackAdClicksRequest { events }).await.is_err() {
                        break;
                    }
                }
                drop(tx);
                let reply = call.await??.into_inner();
                let rejected = reply.rejected.len() as u64;
                if u64::from(reply.accepted) + rejected != sent {
                    bail!("stream: sent {sent} events, {} accepted", reply.accepted);
                }
                acked(u64::from(reply.accepted), rejected, started.elapsed());
            }
            Self::Grpc(mut client, path, token) => {
                while let Some(mut events) = next_chunk(&rx).await {
                    let started = Instant::now();
                    let reply = if path == SendPath::Unary {
                        let mut request = tonic::Request::new(TrackAdClickRequest {
                            event: events.pop(),
                        });
                        bearer(&mut request, token.as_deref())?;
                        client.track_ad_click(request).await?
                    } else {
                        let mut request = tonic::Request::new(TrackAdClicksRequest { events });
                        bearer(&mut request, token.as_deref())?;
                        client.track_ad_clicks(request).await?
                    }
                    .into_inner();
                    let pause = acked(
                        u64::from(reply.accepted),
                        reply.rejected.len() as u64,
                        started.elapsed(),
                    );
                    tokio::time::sleep(pause).await;
                }
            }
            Self::Http(client, url, token) => {
                while let Some(events) = next_chunk(&rx).await {
                    let mut body = Vec::with_capacity(events.len() * 220);
                    for e in &events {
                        serde_json::to_writer(&mut body, &to_json(e))?;
                        body.push(b'\n');
                    }
                    let started = Instant::now();
                    let mut request = client
                        .post(&url)
                        .header("content-type", "application/x-ndjson")
                        .body(body);
                    if let Some(t) = &token {
                        request = request.bearer_auth(t);
                    }
                    let response = request.send().await?;
                    let status = response.status();
                    let reply: serde_json::Value =
                        serde_json::from_slice(&response.bytes().await?)?;
                    if !status.is_success() {
                        bail!("HTTP {status}: {reply}");
                    }
                    let accepted = reply["accepted"].as_u64().unwrap_or(0);
                    let rejected = reply["rejected"].as_array().map_or(0, Vec::len) as u64;
                    let pause = acked(accepted, rejected, started.elapsed());
                    tokio::time::sleep(pause).await;
                }
            }
            Self::Flight(mut client) => {
                while let Some(events) = next_chunk(&rx).await {
                    let batch = to_arrow(&events)?;
                    let started = Instant::now();
                    let data = FlightDataEncoderBuilder::new()
                        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![
                            "ad_clicks".into(),
                        ])))
                        .build(futures::stream::iter([Ok(batch)]));
                    let results: Vec<_> = client.do_put(data).await?.try_collect().await?;
                    let reply: serde_json::Value = results
                        .first()
                        .map(|r| serde_json::from_slice(&r.app_metadata))
                        .transpose()?
                        .unwrap_or_default();
                    let accepted = reply["accepted"].as_u64().unwrap_or(0);
                    let rejected = reply["rejected"].as_array().map_or(0, Vec::len) as u64;
                    let pause = acked(accepted, rejected, started.elapsed());
                    tokio::time::sleep(pause).await;
                }
            }
        }
        Ok(())
    }
}

fn bearer<T>(request: &mut tonic::Request<T>, token: Option<&str>) -> anyhow::Result<()> {
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse()?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gen_args: GenArgs,
    }

    fn args(flags: &[&str]) -> GenArgs {
        let mut argv = vec!["gen"];
        argv.extend_from_slice(flags);
        Cli::parse_from(argv).gen_args
    }

    #[test]
    fn same_seed_same_events_and_the_shares_hold() {
        let a = args(&["--events", "20000", "--duplicates", "0.05", "--late", "0.1"]);
        let first: Vec<_> = Generator::new(&a).expect("gen").collect();
        let second: Vec<_> = Generator::new(&a).expect("gen").collect();
        assert_eq!(first, second);
        let ids: std::collections::HashSet<_> = first.iter().map(|e| &e.event_id).collect();
        assert_eq!(ids.len(), 20_000);
        // About 5% resent: 1,000 expected, binomial sd ~31.
        let dups = first.len() - 20_000;
        assert!((850..=1150).contains(&dups), "{dups} duplicates");
        // Events go out in time order except the late ones: count inversions
        // against the running maximum.
        let mut max = i64::MIN;
        let late = first
            .iter()
            .filter(|e| {
                let t = time_of(e);
                let behind = t < max.saturating_sub(1_000_000);
                max = max.max(t);
                behind
            })
            .count();
        assert!(late > 1_000 && late < 3_000, "{late} late events");
        // The events fill the span (30 days by default), not a part of it.
        let start = Generator::new(&a).expect("gen").start_us;
        let last = first.iter().map(time_of).max().expect("events") - start;
        let span = 30.0 * 86_400e6;
        assert!(
            (0.97..1.01).contains(&(last as f64 / span)),
            "last event {last} µs after the start"
        );
        // Power-law skew: ad-0..ad-999 (10% of ads) take close to 46% of clicks.
        let top = first
            .iter()
            .filter(|e| e.ad_id[3..].parse::<u64>().expect("ad number") < 1_000)
            .count() as f64
            / first.len() as f64;
        assert!((0.42..0.50).contains(&top), "top share {top}");
    }
}
