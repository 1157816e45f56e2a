//! `clicklake serve`: every role in one process on one store.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clicklake_common::StorageConfig;
use clicklake_common::storage::StoreArgs;
use clicklake_compactor::CompactorArgs;
use clicklake_ingest::IngestArgs;
use clicklake_ingest::grpc::IngestGrpc;
use clicklake_query::{Catalog, FlightSqlServer, QueryArgs};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// gRPC listener: the ingest service and Flight SQL.
    #[arg(long, env = "CLICKLAKE_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// HTTP listener: JSON ingest, /health and /metrics.
    #[arg(long, env = "CLICKLAKE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub ingest: IngestArgs,

    #[command(flatten)]
    pub compactor: CompactorArgs,

    #[command(flatten)]
    pub query: QueryArgs,
}

/// A running all-in-one server.
#[derive(Debug)]
pub struct Server {
    /// Bound gRPC address (ingest and Flight SQL).
    pub grpc_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Ask every role to stop; ingest flushes what it buffered.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Wait until every role has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task")?
    }
}

/// `clicklake serve`: start, announce the addresses, run until a signal.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let server = start(args, shutdown).await?;
    // One line on stdout that scripts and tests read the bound addresses from.
    println!(
        "clicklake serving grpc={} http={}",
        server.grpc_addr, server.http_addr
    );
    server.wait().await
}

/// Open the store, bind the listeners and start every role; returns once
/// they accept connections.
pub async fn start(args: ServeArgs, shutdown: CancellationToken) -> anyhow::Result<Server> {
    let storage = StorageConfig::from_args(&args.store)?;

    let ingest =
        clicklake_ingest::start(&storage, args.ingest.writer_config(), shutdown.clone()).await?;
    let catalog = Arc::new(Catalog::open(&storage).await?);
    let compactor = tokio::spawn(clicklake_compactor::run(
        storage.clone(),
        args.compactor.clone(),
        shutdown.clone(),
    ));

    let grpc_listener = TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC listener on {}", args.grpc_addr))?;
    let http_listener = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", args.http_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let grpc = tonic::transport::Server::builder()
        .add_service(IngestGrpc::service(ingest.clone()))
        .add_service(FlightSqlServer::new(catalog, args.query.clone()).service())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
            shutdown.clone().cancelled_owned(),
        );
    let http_app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(clicklake_ingest::http::router(ingest.clone()));
    let http = axum::serve(http_listener, http_app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());

    info!(%grpc_addr, %http_addr, store = %storage.root(), "clicklake serving");

    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        let (grpc_result, http_result) = tokio::join!(grpc, async { http.await });
        token.cancel();
        ingest.stopped().await;
        compactor.await.context("compactor task")??;
        grpc_result.context("gRPC server")?;
        http_result.context("HTTP server")?;
        info!("clicklake stopped");
        Ok(())
    });
    Ok(Server {
        grpc_addr,
        http_addr,
        shutdown,
        task,
    })
}

async fn metrics() -> (StatusCode, String) {
    let encoder = prometheus::TextEncoder::new();
    match encoder.encode_to_string(&prometheus::gather()) {
        Ok(text) => (StatusCode::OK, text),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Cancel `shutdown` on Ctrl-C or SIGTERM.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(err) => {
                        tracing::warn!(%err, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        shutdown.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        info!("shutting down: flushing buffered events");
        shutdown.cancel();
    });
}
