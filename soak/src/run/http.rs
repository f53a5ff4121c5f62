//! The clients' HTTP: one request, its answer (status, JSON body, the session cookie set),
//! or why there was none. A new connection per request: an instance killed and restarted
//! leaves no pooled connection behind to blur the history.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::history::{App, Via};

/// Longer than any documented timeout: a request still unanswered then is silence.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest body read.
const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
pub(super) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A credential to send.
#[derive(Clone, Copy)]
pub(super) struct Credential<'a> {
    pub token: &'a str,
    pub via: Via,
}

pub(super) struct Answer {
    pub status: u16,
    pub json: Option<Value>,
    /// The value of the app's session cookie when the answer set one.
    pub cookie: Option<String>,
}

impl Answer {
    pub(super) fn error(&self) -> Option<String> {
        self.json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    pub(super) fn str(&self, field: &str) -> Option<String> {
        self.json
            .as_ref()
            .and_then(|j| j.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

pub(super) fn cookie_name(app: App) -> &'static str {
    match app {
        App::Web => "__Host-web_sid",
        App::Admin => "__Host-admin_sid",
    }
}

impl Http {
    pub(super) fn new() -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        Self { client }
    }

    pub(super) async fn send(
        &self,
        port: u16,
        method: Method,
        app: App,
        path: &str,
        credential: Option<Credential<'_>>,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let uri = format!("http://127.0.0.1:{port}{path}");
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(credential) = credential {
            let header = match credential.via {
                Via::Bearer => (AUTHORIZATION, format!("Bearer {}", credential.token)),
                Via::Cookie => (COOKIE, format!("{}={}", cookie_name(app), credential.token)),
            };
            let value = HeaderValue::from_str(&header.1).map_err(|e| e.to_string())?;
            request = request.header(header.0, value);
        }
        let body = match body {
            Some(json) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                // The innermost cause says what happened (refused, reset, closed).
                let mut source: &dyn std::error::Error = &e;
                while let Some(inner) = source.source() {
                    source = inner;
                }
                source.to_string()
            })?;
            let status = response.status().as_u16();
            let cookie = session_cookie(response.headers().get_all(SET_COOKIE), app);
            let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            let json = serde_json::from_slice(&body).ok();
            Ok(Answer {
                status,
                json,
                cookie,
            })
        };
        match tokio::time::timeout(CLIENT_TIMEOUT, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {CLIENT_TIMEOUT:?}")),
        }
    }
}

/// The app's session cookie among `Set-Cookie` headers (others, say a device cookie, are
/// ignored); an empty value (a removal) counts as none.
fn session_cookie(headers: hyper::header::GetAll<'_, HeaderValue>, app: App) -> Option<String> {
    let prefix = format!("{}=", cookie_name(app));
    headers
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix(prefix.as_str()))
        .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
        .find(|value| !value.is_empty())
}
