//! The dashboard's only way to data: HTTP calls to the public `/v1` API with the signed-in
//! caller's bearer credential. Answers stay JSON values: the dashboard depends on the API's
//! documented shapes, not on the control plane's types.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::session::Credential;

/// How long one API call may take before the page shows an error instead.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest an event stream is relayed; the API ends its streams well before (10 minutes).
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    /// The API answered with its error envelope.
    #[error("{message} ({code}, HTTP {status})")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Envelope `error.code`.
        code: String,
        /// Envelope `error.message`.
        message: String,
    },
    /// The API could not be reached or answered something that is not JSON.
    #[error("the API at {url} could not be reached: {detail}")]
    Unreachable {
        /// Base URL of the API.
        url: String,
        /// What went wrong.
        detail: String,
    },
}

impl ApiFailure {
    /// HTTP status of a refusal (502 for an unreachable API).
    pub fn status(&self) -> u16 {
        match self {
            Self::Refused { status, .. } => *status,
            Self::Unreachable { .. } => 502,
        }
    }
}

/// A client of one API base URL.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of `base` (e.g. `https://cp.internal`), trusting the system's roots plus
    /// `extra_root_pem` when given (a private CA in front of the API).
    pub fn new(base: &str, extra_root_pem: Option<&[u8]>) -> Result<Self, crate::UiError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(crate::UiError::Config(format!(
                "the API URL must start with http:// or https://, not {base:?}"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agent-bom-ui/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = extra_root_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                crate::UiError::Config(format!("the API CA file is not PEM certificates: {e}"))
            })?;
            if certs.is_empty() {
                return Err(crate::UiError::Config(
                    "the API CA file holds no certificate".into(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| crate::UiError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { base, http })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The HTTP client (its trust roots also serve the identity provider).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET path` (with its query) as JSON.
    pub async fn get(&self, credential: &Credential, path: &str) -> Result<Value, ApiFailure> {
        self.call(Method::GET, credential, path, None).await
    }

    /// A state-changing call with an optional JSON body; an empty answer is `null`.
    pub async fn send(
        &self,
        method: Method,
        credential: &Credential,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiFailure> {
        self.call(method, credential, path, body).await
    }

    /// `GET path` as raw bytes and the named response headers (signed exports).
    pub async fn get_raw(
        &self,
        credential: &Credential,
        path: &str,
        headers: &[&str],
    ) -> Result<(Vec<u8>, Vec<(String, String)>), ApiFailure> {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(credential.expose());
        let (bytes, picked) = self.exchange(request, headers).await?;
        Ok((bytes.to_vec(), picked))
    }

    /// Open `GET path` as a stream of server-sent events (`/v1/fleet/events`), resuming after
    /// `last_event_id`. The answer's body is read by the caller as it comes; the API ends the
    /// stream itself (see its `STREAM_LIFETIME`), so only the wait for the head is bounded by
    /// [`CALL_TIMEOUT`] and the whole stream by [`STREAM_TIMEOUT`].
    pub async fn open_stream(
        &self,
        credential: &Credential,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, ApiFailure> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(credential.expose())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .timeout(STREAM_TIMEOUT);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = tokio::time::timeout(CALL_TIMEOUT, request.send())
            .await
            .map_err(|_| ApiFailure::Unreachable {
                url: self.base.clone(),
                detail: format!("{path} did not answer within {CALL_TIMEOUT:?}"),
            })?
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        if status >= 400 {
            let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
            return Err(refusal(status, &bytes));
        }
        Ok(response)
    }

    /// Send `request` and read its whole answer with the named response headers; an error
    /// status is the refusal its body describes.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        headers: &[&str],
    ) -> Result<(axum::body::Bytes, Vec<(String, String)>), ApiFailure> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let picked = headers
            .iter()
            .filter_map(|h| {
                response
                    .headers()
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| ((*h).to_string(), v.to_string()))
            })
            .collect();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status >= 400 {
            return Err(refusal(status, &bytes));
        }
        Ok((bytes, picked))
    }

    async fn call(
        &self,
        method: Method,
        credential: &Credential,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiFailure> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(credential.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let (bytes, _) = self.exchange(request, &[]).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ApiFailure::Unreachable {
            url: self.base.clone(),
            detail: format!("the answer to {path} is not JSON: {e}"),
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> ApiFailure {
        // reqwest's Display can carry the URL with its query; the path is ours, never a secret.
        ApiFailure::Unreachable {
            url: self.base.clone(),
            detail: e.to_string(),
        }
    }
}

fn refusal(status: u16, bytes: &[u8]) -> ApiFailure {
    let envelope: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let text = |k: &str| {
        envelope["error"][k]
            .as_str()
            .map(str::to_string)
            .unwrap_or_default()
    };
    ApiFailure::Refused {
        status,
        code: Some(text("code"))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "error".into()),
        message: Some(text("message"))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("the API answered HTTP {status}")),
    }
}
