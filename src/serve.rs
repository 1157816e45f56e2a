//! `clicklake serve` (every role in one process) and the single roles
//! `clicklake ingest`, `compactor` and `query`, for deployments with several
//! nodes on one store.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clicklake_common::StorageConfig;
use clicklake_common::auth::{Auth, AuthArgs};
use clicklake_common::storage::StoreArgs;
use clicklake_compactor::CompactorArgs;
use clicklake_ingest::IngestArgs;
use clicklake_ingest::grpc::IngestGrpc;
use clicklake_query::{Catalog, FlightSqlServer, QueryArgs};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::auth::AuthLayer;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    /// gRPC listener: the ingest service and Flight SQL.
    #[arg(long, env = "CLICKLAKE_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// HTTP listener: JSON ingest, the read API (/v1/ads/{id}/stats, /v1/users/{id}/clicks), /health and /metrics.
    #[arg(long, env = "CLICKLAKE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub ingest: IngestArgs,

    #[command(flatten)]
    pub compactor: CompactorArgs,

    #[command(flatten)]
    pub query: QueryArgs,
}

/// `clicklake ingest`: an ingest node. Any number of them may append to one store.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestRoleArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    /// gRPC listener: the ingest service.
    #[arg(long, env = "CLICKLAKE_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// HTTP listener: JSON ingest, /health and /metrics.
    #[arg(long, env = "CLICKLAKE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub ingest: IngestArgs,
}

/// `clicklake compactor`: the rollup loop. Run one per store.
#[derive(Debug, Clone, clap::Args)]
pub struct CompactorRoleArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// HTTP listener: /health and /metrics.
    #[arg(long, env = "CLICKLAKE_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub compactor: CompactorArgs,
}

/// `clicklake query`: a Flight SQL node. Any number of them may read one store.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryRoleArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    /// gRPC listener: Flight SQL.
    #[arg(long, env = "CLICKLAKE_GRPC_ADDR", default_value = "127.0.0.1:50052")]
    pub grpc_addr: SocketAddr,

    /// HTTP listener: the read API (/v1/ads/{id}/stats, /v1/users/{id}/clicks), /health and /metrics.
    #[arg(long, env = "CLICKLAKE_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub query: QueryArgs,
}

/// The roles one process runs, with their settings.
#[derive(Debug, Clone)]
pub struct Roles {
    pub store: StoreArgs,
    pub auth: AuthArgs,
    /// The gRPC listener; `None` when no role serves gRPC.
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: SocketAddr,
    pub ingest: Option<IngestArgs>,
    pub compactor: Option<CompactorArgs>,
    pub query: Option<QueryArgs>,
}

impl From<ServeArgs> for Roles {
    fn from(a: ServeArgs) -> Self {
        Self {
            store: a.store,
            auth: a.auth,
            grpc_addr: Some(a.grpc_addr),
            http_addr: a.http_addr,
            ingest: Some(a.ingest),
            compactor: Some(a.compactor),
            query: Some(a.query),
        }
    }
}

impl From<IngestRoleArgs> for Roles {
    fn from(a: IngestRoleArgs) -> Self {
        Self {
            store: a.store,
            auth: a.auth,
            grpc_addr: Some(a.grpc_addr),
            http_addr: a.http_addr,
            ingest: Some(a.ingest),
            compactor: None,
            query: None,
        }
    }
}

impl From<CompactorRoleArgs> for Roles {
    fn from(a: CompactorRoleArgs) -> Self {
        Self {
            store: a.store,
            auth: AuthArgs::default(),
            grpc_addr: None,
            http_addr: a.http_addr,
            ingest: None,
            compactor: Some(a.compactor),
            query: None,
        }
    }
}

impl From<QueryRoleArgs> for Roles {
    fn from(a: QueryRoleArgs) -> Self {
        Self {
            store: a.store,
            auth: a.auth,
            grpc_addr: Some(a.grpc_addr),
            http_addr: a.http_addr,
            ingest: None,
            compactor: None,
            query: Some(a.query),
        }
    }
}

impl Roles {
    fn names(&self) -> String {
        [
            ("ingest", self.ingest.is_some()),
            ("compactor", self.compactor.is_some()),
            ("query", self.query.is_some()),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(",")
    }
}

/// A running clicklake process.
#[derive(Debug)]
pub struct Server {
    /// Bound gRPC address (ingest and/or Flight SQL), if any role serves gRPC.
    pub grpc_addr: Option<SocketAddr>,
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

/// Start the roles, announce the addresses, run until a signal.
pub async fn run(roles: Roles) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let names = roles.names();
    let server = start(roles, shutdown).await?;
    // One line on stdout that scripts and tests read the bound addresses from.
    println!(
        "clicklake serving grpc={} http={} roles={names}",
        server
            .grpc_addr
            .map_or_else(|| "-".to_string(), |a| a.to_string()),
        server.http_addr
    );
    server.wait().await
}

/// Open the store, bind the listeners and start the roles; returns once
/// they accept connections.
pub async fn start(roles: impl Into<Roles>, shutdown: CancellationToken) -> anyhow::Result<Server> {
    let roles: Roles = roles.into();
    let storage = StorageConfig::from_args(&roles.store)?;
    if roles.ingest.is_some() {
        clicklake_ingest::metrics::register();
    }
    if roles.compactor.is_some() {
        clicklake_compactor::metrics::register();
    }
    if roles.query.is_some() {
        clicklake_query::metrics::register();
    }
    let auth = Arc::new(Auth::from_args(&roles.auth)?);
    // Listeners that serve data must be authenticated off loopback (the
    // compactor's HTTP listener only has /health and /metrics; ingest and
    // query nodes serve JSON ingest and the read API on theirs).
    let http_serves_data =
        (roles.ingest.is_some() || roles.query.is_some()).then_some(&roles.http_addr);
    for addr in roles.grpc_addr.iter().chain(http_serves_data) {
        auth.check_listener(*addr)?;
    }

    let ingest = match &roles.ingest {
        Some(args) => {
            Some(clicklake_ingest::start(&storage, args.writer_config(), shutdown.clone()).await?)
        }
        None => None,
    };
    // Flight serves queries on a query node and Arrow uploads on an ingest node.
    let sink = ingest
        .clone()
        .map(|h| Arc::new(h) as Arc<dyn clicklake_common::sink::ClickSink>);
    let mut read_api = None;
    let flight = match (&roles.query, sink) {
        (Some(args), sink) => {
            let catalog = Arc::new(Catalog::open(&storage).await?);
            let mut server = FlightSqlServer::new(catalog, args.clone()).with_auth(auth.clone());
            if let Some(sink) = sink {
                server = server.with_sink(sink);
            }
            read_api = Some(clicklake_query::http::router(server.clone()));
            Some(server.service())
        }
        (None, Some(sink)) => Some(
            FlightSqlServer::ingest_only(sink, QueryArgs::default())
                .with_auth(auth.clone())
                .service(),
        ),
        (None, None) => None,
    };
    let compactor = roles.compactor.clone().map(|args| {
        tokio::spawn(clicklake_compactor::run(
            storage.clone(),
            args,
            shutdown.clone(),
        ))
    });

    let (grpc, grpc_addr) = match roles.grpc_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the gRPC listener on {addr}"))?;
            let bound = listener.local_addr()?;
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = server_tls(&roles.auth)? {
                builder = builder
                    .tls_config(tls)
                    .context("configuring TLS for the gRPC listener")?;
            }
            let server = builder
                .layer(AuthLayer(auth.clone()))
                .add_optional_service(ingest.clone().map(IngestGrpc::service))
                .add_optional_service(flight)
                .serve_with_incoming_shutdown(
                    // No Nagle delay: a Flight SQL statement is several small
                    // request/answer exchanges.
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown.clone().cancelled_owned(),
                );
            (Some(server), Some(bound))
        }
        None => (None, None),
    };
    let http_listener = TcpListener::bind(roles.http_addr)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", roles.http_addr))?;
    let http_addr = http_listener.local_addr()?;
    let ready_store = storage.clone();
    let mut http_app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(move || ready(ready_store.clone())))
        .route("/metrics", get(metrics));
    if let Some(read_api) = read_api {
        http_app = http_app
            .merge(read_api.layer(axum::middleware::from_fn_with_state(
                auth.clone(),
                crate::auth::require_bearer,
            )))
            .merge(clicklake_query::http::dashboard());
    }
    if let Some(ingest) = &ingest {
        let ingest_routes = clicklake_ingest::http::router(ingest.clone()).layer(
            axum::middleware::from_fn_with_state(auth.clone(), crate::auth::require_bearer),
        );
        http_app = http_app.merge(ingest_routes);
    }
    let http = axum::serve(http_listener, http_app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());

    info!(grpc_addr = ?grpc_addr, %http_addr, store = %storage.root(), roles = roles.names(), "clicklake serving");

    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        let grpc = async {
            match grpc {
                Some(server) => server.await.context("gRPC server"),
                None => {
                    token.cancelled().await;
                    Ok(())
                }
            }
        };
        let (grpc_result, http_result) = tokio::join!(grpc, async { http.await });
        token.cancel();
        if let Some(ingest) = ingest {
            ingest.stopped().await;
        }
        if let Some(compactor) = compactor {
            compactor.await.context("compactor task")??;
        }
        grpc_result?;
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

/// `/ready`: 200 once the process serves and its store answers (the raw
/// table opens within 5 s), else 503 with the reason. `/health` only says
/// the process is up.
async fn ready(storage: StorageConfig) -> (StatusCode, String) {
    let open = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        storage.open(clicklake_common::RAW_TABLE),
    );
    match open.await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: store: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store did not answer within 5 s\n".into(),
        ),
    }
}

/// The gRPC listener's TLS configuration, when --tls-cert and --tls-key are given.
fn server_tls(auth: &AuthArgs) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&auth.tls_cert, &auth.tls_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).with_context(|| format!("reading the TLS {what} {}", path.display()))
    };
    let identity =
        tonic::transport::Identity::from_pem(read(cert, "certificate")?, read(key, "key")?);
    Ok(Some(
        tonic::transport::ServerTlsConfig::new().identity(identity),
    ))
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
