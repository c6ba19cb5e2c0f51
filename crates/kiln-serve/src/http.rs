//! HTTP/REST (axum): the Open Inference Protocol's endpoints, Triton's repository and
//! statistics extensions, and the metrics router.
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/v2/health/live` | 200 |
//! | GET | `/v2/health/ready` | 200 when ready, else 503 |
//! | GET | `/v2` | server metadata |
//! | GET | `/v2/models/{m}[/versions/{v}]` | model metadata |
//! | GET | `/v2/models/{m}[/versions/{v}]/ready` | 200 when ready, 503 when not, 404 unknown |
//! | POST | `/v2/models/{m}[/versions/{v}]/infer` | inference (JSON, binary extension) |
//! | GET | `/v2/models/stats`, `/v2/models/{m}[/versions/{v}]/stats` | `{"model_stats": [...]}` |
//! | POST | `/v2/repository/index` | `[{"name", "version", "state", "reason"}]` |
//! | POST | `/v2/repository/models/{m}/load`, `.../unload` | 200 `{}` |
//!
//! Errors are `{"error": "..."}` with 400 (bad request), 404 (unknown model or version), 413
//! (body above `--max-body`), 500 (backend failure) or 503 (overload, shutdown, queue
//! timeout). The metrics router serves `GET /metrics` (OpenMetrics text).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::core::Core;
use crate::error::ServeError;
use crate::http_codec;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub core: Arc<Core>,
    /// Largest request body accepted, in bytes (413 above).
    pub max_body: usize,
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error_response(e: &ServeError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &json!({ "error": e.to_string() }))
}

/// Counts the request and turns the result into a response.
fn finish(s: &HttpState, endpoint: &str, r: Result<Response, ServeError>) -> Response {
    let resp = r.unwrap_or_else(|e| error_response(&e));
    s.core
        .counters
        .request("http", endpoint, resp.status().as_str());
    resp
}

fn ok_json<T: serde::Serialize>(v: &T) -> Result<Response, ServeError> {
    let v = serde_json::to_value(v).map_err(|e| ServeError::Internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, &v))
}

/// Reads a body up to the limit (413 above it).
async fn read_body(s: &HttpState, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ServeError> {
    let too_large = || {
        ServeError::TooLarge(format!(
            "the request body is larger than the server's limit of {} bytes (kiln serve \
             --max-body)",
            s.max_body
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.max_body as u64) {
        return Err(too_large());
    }
    if let Some(enc) = headers.get(header::CONTENT_ENCODING)
        && enc.as_bytes() != b"identity"
    {
        return Err(ServeError::InvalidArgument(format!(
            "Content-Encoding {enc:?} is not supported; send the body uncompressed"
        )));
    }
    match axum::body::to_bytes(body, s.max_body).await {
        Ok(b) => Ok(b.to_vec()),
        Err(e) => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = src {
                if err.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                src = err.source();
            }
            Err(ServeError::InvalidArgument(format!(
                "cannot read the request body: {e}"
            )))
        }
    }
}

/// The HTTP/REST router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{m}", get(model_metadata))
        .route("/v2/models/{m}/versions/{v}", get(model_metadata_v))
        .route("/v2/models/{m}/ready", get(model_ready))
        .route("/v2/models/{m}/versions/{v}/ready", get(model_ready_v))
        .route("/v2/models/{m}/infer", post(infer))
        .route("/v2/models/{m}/versions/{v}/infer", post(infer_v))
        .route("/v2/models/{m}/stats", get(model_stats))
        .route("/v2/models/{m}/versions/{v}/stats", get(model_stats_v))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{m}/load", post(load))
        .route("/v2/repository/models/{m}/unload", post(unload))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(State(s): State<HttpState>, uri: axum::http::Uri) -> Response {
    let e = ServeError::NotFound(format!(
        "no endpoint {}; the protocol's endpoints start with /v2",
        uri.path()
    ));
    finish(&s, "unknown", Err(e))
}

async fn live(State(s): State<HttpState>) -> Response {
    finish(&s, "live", Ok(StatusCode::OK.into_response()))
}

async fn ready(State(s): State<HttpState>) -> Response {
    let r = if s.core.server_ready() {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ServeError::Unavailable(
            "the server is not ready (starting, shutting down, or a model is loading or failed)"
                .into(),
        ))
    };
    finish(&s, "ready", r)
}

async fn server_metadata(State(s): State<HttpState>) -> Response {
    let r = ok_json(&s.core.server_metadata());
    finish(&s, "server_metadata", r)
}

fn metadata(s: &HttpState, m: &str, v: Option<&str>) -> Response {
    let r = s.core.model_metadata(m, v).and_then(|md| ok_json(&md));
    finish(s, "model_metadata", r)
}

async fn model_metadata(State(s): State<HttpState>, Path(m): Path<String>) -> Response {
    metadata(&s, &m, None)
}

async fn model_metadata_v(
    State(s): State<HttpState>,
    Path((m, v)): Path<(String, String)>,
) -> Response {
    metadata(&s, &m, Some(&v))
}

fn readiness(s: &HttpState, m: &str, v: Option<&str>) -> Response {
    let r = s.core.model_ready(m, v).and_then(|ok| {
        if ok {
            Ok(StatusCode::OK.into_response())
        } else {
            Err(ServeError::Unavailable(format!("model '{m}' is not ready")))
        }
    });
    finish(s, "model_ready", r)
}

async fn model_ready(State(s): State<HttpState>, Path(m): Path<String>) -> Response {
    readiness(&s, &m, None)
}

async fn model_ready_v(
    State(s): State<HttpState>,
    Path((m, v)): Path<(String, String)>,
) -> Response {
    readiness(&s, &m, Some(&v))
}

async fn run_infer(
    s: &HttpState,
    m: &str,
    v: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ServeError> {
    let bytes = read_body(s, headers, body).await?;
    let header_length = match headers.get(http_codec::HEADER_LENGTH) {
        None => None,
        Some(h) => Some(h.to_str().map_err(|_| {
            ServeError::InvalidArgument("header Inference-Header-Content-Length is not text".into())
        })?),
    };
    let req = http_codec::parse_request(&bytes, header_length, m, v)?;
    let resp = s.core.infer(req).await?;
    let enc = http_codec::encode_response(&resp);
    let mut r = Response::new(Body::from(enc.body));
    let h = r.headers_mut();
    match enc.header_length {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(http_codec::HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    Ok(r)
}

async fn infer(
    State(s): State<HttpState>,
    Path(m): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = run_infer(&s, &m, None, &headers, body).await;
    finish(&s, "infer", r)
}

async fn infer_v(
    State(s): State<HttpState>,
    Path((m, v)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = run_infer(&s, &m, Some(&v), &headers, body).await;
    finish(&s, "infer", r)
}

fn stats(s: &HttpState, m: Option<&str>, v: Option<&str>) -> Response {
    let r = s
        .core
        .statistics(m, v)
        .and_then(|st| ok_json(&json!({ "model_stats": st })));
    finish(s, "statistics", r)
}

async fn all_stats(State(s): State<HttpState>) -> Response {
    stats(&s, None, None)
}

async fn model_stats(State(s): State<HttpState>, Path(m): Path<String>) -> Response {
    stats(&s, Some(&m), None)
}

async fn model_stats_v(
    State(s): State<HttpState>,
    Path((m, v)): Path<(String, String)>,
) -> Response {
    stats(&s, Some(&m), Some(&v))
}

/// Parses an optional JSON body (empty: `{}`).
fn optional_json(bytes: &[u8]) -> Result<Value, ServeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ServeError::InvalidArgument(format!("the body is not JSON: {e}")))
}

async fn repository_index(State(s): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let body = optional_json(&read_body(&s, &headers, body).await?)?;
        let ready = body.get("ready").and_then(Value::as_bool).unwrap_or(false);
        let repo = s.core.repo.clone();
        let index = tokio::task::spawn_blocking(move || repo.index(ready))
            .await
            .map_err(|e| ServeError::Internal(e.to_string()))?;
        ok_json(&index)
    }
    .await;
    finish(&s, "repository_index", r)
}

/// Load requests may carry no parameters kiln would have to honour.
fn check_load_parameters(body: &Value) -> Result<(), ServeError> {
    if let Some(p) = body.get("parameters").and_then(Value::as_object)
        && let Some(k) = p.keys().find(|k| *k == "config" || k.starts_with("file:"))
    {
        return Err(ServeError::InvalidArgument(format!(
            "load parameter '{k}' is not supported: kiln reads the model's files and \
             config.json from the repository folder; edit them there and load again"
        )));
    }
    Ok(())
}

async fn load(
    State(s): State<HttpState>,
    Path(m): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = async {
        check_load_parameters(&optional_json(&read_body(&s, &headers, body).await?)?)?;
        let repo = s.core.repo.clone();
        tokio::task::spawn_blocking(move || repo.load(&m))
            .await
            .map_err(|e| ServeError::Internal(e.to_string()))??;
        ok_json(&json!({}))
    }
    .await;
    finish(&s, "repository_load", r)
}

async fn unload(
    State(s): State<HttpState>,
    Path(m): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = async {
        optional_json(&read_body(&s, &headers, body).await?)?;
        let repo = s.core.repo.clone();
        tokio::task::spawn_blocking(move || repo.unload(&m))
            .await
            .map_err(|e| ServeError::Internal(e.to_string()))??;
        ok_json(&json!({}))
    }
    .await;
    finish(&s, "repository_unload", r)
}

/// The metrics router: `GET /metrics`.
pub fn metrics_router(core: Arc<Core>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let core = core.clone();
            async move {
                let text = crate::metrics::exposition(&core.counters, &core.repo.loaded());
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    )
}
