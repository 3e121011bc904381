//! The one error envelope: `{"error": {"code", "message", "request_id"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::ServiceError;
use crate::store::StoreError;

/// Machine-readable error codes of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No or bad credentials.
    Unauthorized,
    /// Authenticated but not allowed.
    Forbidden,
    /// No such resource (or not in the caller's tenant).
    NotFound,
    /// Wrong method.
    MethodNotAllowed,
    /// Input rejected.
    InvalidRequest,
    /// Conflicts with existing state.
    Conflict,
    /// The body did not arrive (or the response could not start) in time.
    RequestTimeout,
    /// Body too large.
    PayloadTooLarge,
    /// The request target (path and query) is too long.
    UriTooLong,
    /// The request's headers are too large.
    HeadersTooLarge,
    /// Too many requests for the key or the tenant (see `Retry-After`).
    RateLimited,
    /// A per-tenant quota would be exceeded.
    QuotaExceeded,
    /// Database unavailable.
    Unavailable,
    /// A bug on our side.
    Internal,
}

impl ErrorCode {
    pub(super) fn status(self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::Conflict => StatusCode::CONFLICT,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RateLimited | Self::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An API error, rendered as the envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    retry_after: Option<u64>,
}

/// Marker put into error responses so the request-id middleware can fill the envelope in.
#[derive(Debug, Clone)]
struct PendingEnvelope {
    code: ErrorCode,
    message: String,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: ErrorCode,
    message: &'a str,
    request_id: &'a str,
}

impl ApiError {
    /// An error with a code and a message for the caller.
    pub fn new(code: ErrorCode, message: &str) -> Self {
        Self {
            code,
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// 429 with `Retry-After: secs`.
    pub fn rate_limited(message: &str, secs: u64) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: message.to_string(),
            retry_after: Some(secs.max(1)),
        }
    }

    /// 403.
    pub fn forbidden(message: &str) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 401.
    pub fn unauthorized(message: &str) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// 400.
    pub fn invalid(message: &str) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// 503.
    pub fn unavailable(message: &str) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                Self::new(ErrorCode::NotFound, &format!("{what} not found"))
            }
            StoreError::Conflict(m) => Self::new(ErrorCode::Conflict, &m),
            StoreError::Invalid(m) => Self::invalid(&m),
            StoreError::Forbidden(m) => Self::forbidden(&m),
            StoreError::QuotaExceeded(m) => Self {
                code: ErrorCode::QuotaExceeded,
                message: m,
                retry_after: Some(3600),
            },
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                Self::unavailable("the database is unavailable; retry later")
            }
            e => {
                tracing::error!(error = %e, "internal error");
                Self::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(m) => Self::invalid(&m),
            ServiceError::Forbidden(m) => Self::forbidden(&m),
            ServiceError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.code.status().into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response.extensions_mut().insert(PendingEnvelope {
            code: self.code,
            message: self.message,
        });
        response
    }
}

/// Render pending error envelopes with the request id; turn axum's own plain-text rejections
/// (e.g. body too large) into envelopes too.
pub(super) fn stamp_request_id(mut response: Response, request_id: &str) -> Response {
    let pending = response.extensions_mut().remove::<PendingEnvelope>();
    let (code, message) = match pending {
        Some(p) => (p.code, p.message),
        None if response.status() == StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::PayloadTooLarge,
            "request body too large".to_string(),
        ),
        None if response.status().is_client_error() && is_plain_text(&response) => {
            (ErrorCode::InvalidRequest, "invalid request".to_string())
        }
        None => return response,
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(axum::http::header::RETRY_AFTER)
        .cloned();
    let body = Envelope {
        error: Body {
            code,
            message: &message,
            request_id,
        },
    };
    let mut out = (status, Json(body)).into_response();
    if let Some(v) = retry_after {
        out.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    out
}

/// The envelope's JSON, for answers written below the router (the connection layer).
pub(super) fn envelope_json(code: ErrorCode, message: &str, request_id: &str) -> Vec<u8> {
    let body = Envelope {
        error: Body {
            code,
            message,
            request_id,
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

fn is_plain_text(response: &Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"))
}
