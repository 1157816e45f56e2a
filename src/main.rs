//! The `clicklake` binary: parses flags, sets up tracing and the runtime, and
//! hands over to the services (`clicklake-ingest`, `clicklake-compactor`,
//! `clicklake-query`) or the client tools (`load`, `sql`).

use clap::{Parser, Subcommand};
use clicklake::{jobs, load, serve, sql, synth};
use tracing_subscriber::EnvFilter;

/// clicklake: ad-click analytics on Delta Lake, answered over Arrow Flight SQL.
#[derive(Debug, Parser)]
#[command(name = "clicklake", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `clicklake_ingest=debug`.
    /// The Delta libraries log every snapshot and commit at `info`; they are kept at `warn`.
    #[arg(
        long,
        global = true,
        env = "CLICKLAKE_LOG",
        default_value = "info,buoyant_kernel=warn,deltalake_core=warn"
    )]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// All-in-one server: ingest, compactor loop, Flight SQL and HTTP.
    Serve(Box<serve::ServeArgs>),
    /// An ingest node only (gRPC and HTTP ingest); several may share a store.
    Ingest(serve::IngestRoleArgs),
    /// The compactor loop only (one per store).
    Compactor(serve::CompactorRoleArgs),
    /// A Flight SQL query node only; several may share a store.
    Query(serve::QueryRoleArgs),
    /// Replay a file of clicks through the gRPC ingest API.
    Load(load::LoadArgs),
    /// Run SQL over Flight SQL and print a table; without a query, read statements ending in `;` from stdin.
    Sql(sql::SqlArgs),
    /// Synthetic clicks with realistic skew, late and duplicate events: to a file or sent to a node.
    Gen(synth::GenArgs),
    /// Recompute the rollups of a time range from the raw events, every level, atomically.
    Backfill(jobs::BackfillArgs),
    /// Recount raw events, compare with every rollup level, report (and --repair) differences.
    Reconcile(jobs::ReconcileArgs),
    /// Remove later copies of event ids, enforce retention, cluster and bin-pack small files.
    Optimize(jobs::OptimizeArgs),
    /// Delete data files no table version younger than the retention references.
    Vacuum(jobs::VacuumArgs),
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The cause chain on one line; no backtrace for a user's mistake.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // TLS (gRPC listener, https endpoints of the clients) with ring; an
    // error only says a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log)?)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("clicklake")
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run((*args).into()).await,
            Command::Ingest(args) => serve::run(args.into()).await,
            Command::Compactor(args) => serve::run(args.into()).await,
            Command::Query(args) => serve::run(args.into()).await,
            Command::Load(args) => load::run(args).await,
            Command::Gen(args) => synth::run(args).await,
            Command::Sql(args) => sql::run(args).await,
            Command::Backfill(args) => jobs::backfill(args).await,
            Command::Reconcile(args) => jobs::reconcile(args).await,
            Command::Optimize(args) => jobs::optimize(args).await,
            Command::Vacuum(args) => jobs::vacuum(args).await,
        }
    })
}
