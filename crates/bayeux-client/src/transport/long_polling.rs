//! The `long-polling` transport: each batch is one HTTP POST of a JSON array.
//!
//! Requests go through hyper's connection pool, so a `/meta/connect` held by the server for
//! many seconds sits on one connection while other requests use another. Requests other than
//! connects are sent one at a time, in order, like the CometD JavaScript client does: two
//! publishes sent back to back would otherwise race on two connections and could reach the
//! server in the wrong order.

use std::sync::Arc;
use std::time::Duration;

use bayeux_message::{parse_batch, Message};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::connector::{self, Connector, HttpConnector};
use super::TransportError;
use crate::cookie::CookieJar;

/// POSTs batches to one URL, keeping the server's cookies.
pub(crate) struct LongPolling {
    http: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    cookies: Arc<CookieJar>,
    in_order: tokio::sync::Mutex<()>,
}

impl LongPolling {
    /// A transport POSTing to `uri`, connecting through `connector`.
    pub fn new(uri: Uri, cookies: Arc<CookieJar>, connector: Connector) -> Self {
        let http = Client::builder(TokioExecutor::new()).build(HttpConnector(connector));
        Self {
            http,
            uri,
            cookies,
            in_order: tokio::sync::Mutex::new(()),
        }
    }

    /// Sends one batch (JSON array text) and returns the messages of the response.
    ///
    /// `is_connect` marks a lone `/meta/connect`, which may be held by the server and so does
    /// not wait for (or block) the other requests.
    pub async fn exchange(
        &self,
        body: String,
        is_connect: bool,
        timeout: Duration,
    ) -> Result<Vec<Message>, TransportError> {
        let exchange = async {
            let _turn = if is_connect {
                None
            } else {
                Some(self.in_order.lock().await)
            };
            self.post(body).await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout)?
    }

    async fn post(&self, body: String) -> Result<Vec<Message>, TransportError> {
        let mut request =
            Request::post(self.uri.clone()).header(CONTENT_TYPE, "application/json;charset=UTF-8");
        if let Some(cookies) = self.cookies.header() {
            request = request.header(COOKIE, cookies);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        let response = self.http.request(request).await.map_err(|e| {
            if let Some(why) = connector::tls_failure(&e) {
                return TransportError::Tls(why);
            }
            let detail = match std::error::Error::source(&e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            };
            if e.is_connect() {
                TransportError::Connect(detail)
            } else {
                TransportError::Io(detail)
            }
        })?;
        for value in response.headers().get_all(SET_COOKIE) {
            if let Ok(text) = value.to_str() {
                self.cookies.store(text);
            }
        }
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| TransportError::Io(e.to_string()))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(TransportError::Status(status.as_u16()));
        }
        // An empty array is a failure too: a reply was owed for every message sent.
        parse_batch(&body).map_err(|e| TransportError::Protocol(e.to_string()))
    }
}
