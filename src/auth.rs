//! Authentication on the listeners: a tower layer in front of every gRPC
//! service (only the Flight `Handshake` passes without a token, since it is
//! how a user logs in) and an axum middleware in front of HTTP ingest.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clicklake_common::auth::Auth;
use futures::future::BoxFuture;

/// The gRPC path that needs no token.
const HANDSHAKE: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// Adds [`AuthService`] in front of a gRPC service.
#[derive(Debug, Clone)]
pub struct AuthLayer(pub Arc<Auth>);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.0.clone(),
        }
    }
}

/// Answers UNAUTHENTICATED to a gRPC call without a valid bearer token.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Auth>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != HANDSHAKE {
            let header = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if let Err(e) = self.auth.check(header) {
                let response = tonic::Status::unauthenticated(e.to_string()).into_http();
                return Box::pin(async move { Ok(response) });
            }
        }
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(req))
    }
}

/// Axum middleware: 401 with a JSON reason unless the bearer token is valid.
pub async fn require_bearer(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.check(header) {
        Ok(()) => next.run(req).await,
        Err(e) => (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer")],
            axum::Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}
