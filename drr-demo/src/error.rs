//! The handlers' error type, and how each error becomes an HTTP status with
//! a JSON body `{"error": "..."}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_postgres::error::SqlState;

/// What went wrong in a request, by the status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A malformed header (`x-drr-consistency`, `x-drr-lsn`, ...): 400.
    #[error("{0}")]
    BadHeader(String),
    /// A body that is not JSON: 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Input that fails validation: 422, nothing written.
    #[error("{0}")]
    Invalid(String),
    /// No such row: 404.
    #[error("{0}")]
    NotFound(String),
    /// No database node can serve the request: 503.
    #[error("no database node can serve the request: {0}")]
    Unavailable(String),
    /// Anything else: 500. The details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadHeader(_) => StatusCode::BAD_REQUEST,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Maps a driver error from a connection to `node`.
    pub fn postgres(node: &str, err: tokio_postgres::Error) -> Self {
        let connection = err.is_closed()
            || std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>());
        if connection {
            return AppError::Unavailable(format!("connection to {node} failed: {err}"));
        }
        if err.code() == Some(&SqlState::CHECK_VIOLATION) {
            return AppError::Invalid(format!("the database rejected the input: {err}"));
        }
        AppError::Internal(format!("query failed on {node}: {err}"))
    }
}

impl From<drr_core::Error> for AppError {
    fn from(err: drr_core::Error) -> Self {
        if err.is_no_healthy_node() || err.is_connection() || err.is_pool_timeout() {
            return AppError::Unavailable(err.to_string());
        }
        if err.code() == Some(&SqlState::CHECK_VIOLATION) {
            return AppError::Invalid(format!("the database rejected the input: {err}"));
        }
        AppError::Internal(err.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let AppError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
