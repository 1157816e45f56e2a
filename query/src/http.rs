//! The JSON read API on the HTTP listener, the seed's `getAdClickStats` and
//! `getUserAdClicks` for dashboards and scripts. Each call runs the same SQL
//! table function an analyst would, under the same guardrails:
//!
//! - `GET /v1/ads/{ad_id}/stats?start=T&end=T&granularity=hour`:
//!   `ad_click_stats` (rollups stitched with the raw tail), one object per
//!   window with the breakdowns as JSON objects;
//! - `GET /v1/users/{user_id}/clicks?start=T&end=T`: `user_ad_clicks`;
//! - `GET /v1/ads/top?start=T&end=T&limit=10`: the ads with the most clicks
//!   in the range, from `all_ad_click_stats` at hour granularity (windows
//!   starting in the range), as `{"ads": [{"ad_id", "clicks", "conversions"}]}`;
//! - `GET /` and `GET /assets/{file}`: the dashboard, a static page built into
//!   the binary that reads the calls above and `/metrics`.
//!
//! `start` and `end` are RFC 3339 times or `YYYY-MM-DD` dates (UTC);
//! `granularity` is `minute`, `hour` (the default), `day` or `month`.
//! Errors are `{"error": "..."}` with 400 for a bad argument, 503 when a
//! guardrail or the store refused, 500 otherwise.

use arrow::array::RecordBatch;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::service::FlightSqlServer;

/// The read routes, to merge into the HTTP listener's router.
pub fn router(server: FlightSqlServer) -> Router {
    Router::new()
        .route("/v1/ads/{ad_id}/stats", get(ad_stats))
        .route("/v1/users/{user_id}/clicks", get(user_clicks))
        .route("/v1/ads/top", get(top_ads))
        .with_state(server)
}

/// The dashboard's files, built into the binary (no network access at run
/// time). With `CLICKLAKE_DASHBOARD_DIR` set they are read from that folder
/// at each request instead, for working on the page without rebuilding.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/dashboard.css"),
    ),
    (
        "chart.umd.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/chart.umd.min.js"),
    ),
];

/// The dashboard routes (no data: they need no token; the page sends the
/// token it is given to the read API).
pub fn dashboard() -> Router {
    Router::new()
        .route("/", get(|| asset(Path("index.html".to_string()))))
        .route("/assets/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some((name, mime, built_in)) = ASSETS.iter().find(|(name, ..)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such dashboard file\n").into_response();
    };
    let body = match std::env::var_os("CLICKLAKE_DASHBOARD_DIR") {
        Some(dir) => match std::fs::read(std::path::Path::new(&dir).join(name)) {
            Ok(bytes) => bytes,
            Err(e) => return (StatusCode::NOT_FOUND, format!("{name}: {e}\n")).into_response(),
        },
        None => built_in.to_vec(),
    };
    ([(axum::http::header::CONTENT_TYPE, *mime)], body).into_response()
}

#[derive(Debug, Deserialize)]
struct TopParams {
    start: Option<String>,
    end: Option<String>,
    limit: Option<u32>,
}

async fn top_ads(State(server): State<FlightSqlServer>, Query(p): Query<TopParams>) -> Answer {
    let (start, end) = range(p.start, p.end)?;
    let limit = p.limit.unwrap_or(10).clamp(1, 1000);
    let sql = format!(
        "SELECT ad_id, sum(clicks) AS clicks, sum(conversions) AS conversions \
         FROM all_ad_click_stats({}, {}, 'hour') GROUP BY ad_id ORDER BY clicks DESC, ad_id LIMIT {limit}",
        quote(&start),
        quote(&end)
    );
    let ads = rows(&server.collect(&sql).await?)?;
    Ok(Json(json!({ "start": start, "end": end, "ads": ads })))
}

#[derive(Debug, Deserialize)]
struct StatsParams {
    start: Option<String>,
    end: Option<String>,
    granularity: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RangeParams {
    start: Option<String>,
    end: Option<String>,
}

/// An error answer: `{"error": "..."}` with its status.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let code = match status.code() {
            Code::InvalidArgument | Code::NotFound => StatusCode::BAD_REQUEST,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted | Code::Unavailable | Code::FailedPrecondition => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, status.message().to_string())
    }
}

type Answer = Result<Json<Value>, ApiError>;

async fn ad_stats(
    State(server): State<FlightSqlServer>,
    Path(ad_id): Path<String>,
    Query(p): Query<StatsParams>,
) -> Answer {
    let (start, end) = range(p.start, p.end)?;
    let granularity = p.granularity.unwrap_or_else(|| "hour".into());
    let sql = format!(
        "SELECT * FROM ad_click_stats({}, {}, {}, {}) ORDER BY window_start",
        quote(&ad_id),
        quote(&start),
        quote(&end),
        quote(&granularity)
    );
    let windows = rows(&server.collect(&sql).await?)?;
    Ok(Json(json!({
        "ad_id": ad_id,
        "start": start,
        "end": end,
        "granularity": granularity,
        "windows": windows,
    })))
}

async fn user_clicks(
    State(server): State<FlightSqlServer>,
    Path(user_id): Path<String>,
    Query(p): Query<RangeParams>,
) -> Answer {
    let (start, end) = range(p.start, p.end)?;
    let sql = format!(
        "SELECT * FROM user_ad_clicks({}, {}, {}) ORDER BY event_time, event_id",
        quote(&user_id),
        quote(&start),
        quote(&end)
    );
    let clicks = rows(&server.collect(&sql).await?)?;
    Ok(Json(json!({
        "user_id": user_id,
        "start": start,
        "end": end,
        "clicks": clicks,
    })))
}

fn range(start: Option<String>, end: Option<String>) -> Result<(String, String), ApiError> {
    let missing = |name: &str| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("query parameter {name} is required (RFC 3339 or YYYY-MM-DD)"),
        )
    };
    Ok((
        start.ok_or_else(|| missing("start"))?,
        end.ok_or_else(|| missing("end"))?,
    ))
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Rows as JSON objects; the JSON text of the breakdown columns becomes
/// nested objects.
fn rows(batches: &[RecordBatch]) -> Result<Vec<Value>, ApiError> {
    let fail = |e: String| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the result: {e}"),
        )
    };
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for b in batches {
        writer.write(b).map_err(|e| fail(e.to_string()))?;
    }
    writer.finish().map_err(|e| fail(e.to_string()))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Map<String, Value>> =
        serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
    Ok(rows
        .into_iter()
        .map(|mut row| {
            for key in ["clicks_by_device", "clicks_by_country"] {
                if let Some(Value::String(text)) = row.get(key)
                    && let Ok(v) = serde_json::from_str::<Value>(text)
                {
                    row.insert(key.to_string(), v);
                }
            }
            Value::Object(row)
        })
        .collect())
}
