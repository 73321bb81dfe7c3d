//! The coordinator's HTTP API as the miner side calls it: registration, the network-specific
//! registrations, the pod view, and what the tunnel keeper tells it (the advertised SSH address,
//! the key it logs in to the built-in relay with). Errors carry the coordinator's own message.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    BittensorRegistration, Command, CommandList, CommandQueued, CommuneRegistration, ErrorBody,
    HeartbeatStatusEntry, MinerList, NetworkUpdate, Pod, RegistrationRequest, RegistrationResponse,
    RelayKey, SimpleResponse,
};

/// The original's registration timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the coordinator at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("the coordinator answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("unexpected answer from {url}: {detail}")]
    Unexpected { url: String, detail: String },
}

pub struct CoordinatorClient {
    http: reqwest::Client,
    base: String,
}

impl CoordinatorClient {
    /// `base` is SERVER_URL, e.g. `http://127.0.0.1:8420/api/v1`.
    pub fn new(base: &reqwest::Url) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("polaris/", env!("CARGO_PKG_VERSION")))
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| ClientError::Unexpected {
                url: base.to_string(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: base.as_str().trim_end_matches('/').to_owned(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn register(
        &self,
        body: &RegistrationRequest,
    ) -> Result<RegistrationResponse, ClientError> {
        self.send(self.http.post(self.url("/miners/")).json(body))
            .await
    }

    pub async fn register_bittensor(
        &self,
        token: &str,
        body: &BittensorRegistration,
    ) -> Result<SimpleResponse, ClientError> {
        self.post_as(token, "/bittensor/register", body).await
    }

    pub async fn register_commune(
        &self,
        token: &str,
        body: &CommuneRegistration,
    ) -> Result<SimpleResponse, ClientError> {
        self.post_as(token, "/commune/register", body).await
    }

    pub async fn miner(&self, token: &str, miner_id: &str) -> Result<Pod, ClientError> {
        let url = self.miner_url(miner_id, None)?;
        self.send(self.http.get(url).bearer_auth(token)).await
    }

    /// `POST /network_update`: how validators reach the miner now.
    pub async fn network_update(
        &self,
        token: &str,
        body: &NetworkUpdate,
    ) -> Result<SimpleResponse, ClientError> {
        self.post_as(token, "/network_update", body).await
    }

    /// `POST /miners/{id}/relay_key`: the key the miner's tunnel logs in to the built-in relay
    /// with (replacing an older one).
    pub async fn set_relay_key(
        &self,
        token: &str,
        miner_id: &str,
        body: &RelayKey,
    ) -> Result<SimpleResponse, ClientError> {
        let url = self.miner_url(miner_id, Some("relay_key"))?;
        self.send(self.http.post(url).bearer_auth(token).json(body))
            .await
    }

    /// `GET /miners` (admin): one page of every miner.
    pub async fn miners(
        &self,
        admin_token: &str,
        after: Option<&str>,
    ) -> Result<MinerList, ClientError> {
        let mut url =
            reqwest::Url::parse(&self.url("/miners")).map_err(|e| ClientError::Unexpected {
                url: self.base.clone(),
                detail: e.to_string(),
            })?;
        url.query_pairs_mut().append_pair("limit", "1000");
        if let Some(after) = after {
            url.query_pairs_mut().append_pair("after", after);
        }
        self.send(self.http.get(url).bearer_auth(admin_token)).await
    }

    /// `GET /miners/heartbeat_status` (admin): every miner's liveness.
    pub async fn heartbeat_status(
        &self,
        admin_token: &str,
    ) -> Result<std::collections::BTreeMap<String, HeartbeatStatusEntry>, ClientError> {
        let request = self
            .http
            .get(self.url("/miners/heartbeat_status"))
            .bearer_auth(admin_token);
        self.send(request).await
    }

    /// `POST /miners/{id}/commands` (admin): queues a command for the miner.
    pub async fn queue_command(
        &self,
        admin_token: &str,
        miner_id: &str,
        command: &Command,
    ) -> Result<CommandQueued, ClientError> {
        let url = self.miner_url(miner_id, Some("commands"))?;
        self.send(self.http.post(url).bearer_auth(admin_token).json(command))
            .await
    }

    /// `GET /miners/{id}/commands` (admin): the miner's recent commands and reported SSH keys.
    pub async fn commands(
        &self,
        admin_token: &str,
        miner_id: &str,
    ) -> Result<CommandList, ClientError> {
        let url = self.miner_url(miner_id, Some("commands"))?;
        self.send(self.http.get(url).bearer_auth(admin_token)).await
    }

    /// `/miners/{id}[/{rest}]`, the id escaped as one path segment so it can never reach
    /// another route.
    fn miner_url(&self, miner_id: &str, rest: Option<&str>) -> Result<reqwest::Url, ClientError> {
        let mut url =
            reqwest::Url::parse(&self.url("/miners")).map_err(|e| ClientError::Unexpected {
                url: self.base.clone(),
                detail: e.to_string(),
            })?;
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(miner_id);
            segments.extend(rest);
        }
        Ok(url)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post_as<B: Serialize, T: DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let request = self.http.post(self.url(path)).bearer_auth(token).json(body);
        self.send(request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let answer = request.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            cause: crate::inventory::network::root_cause(&e),
        })?;
        let url = answer.url().to_string();
        let status = answer.status();
        let bytes = answer.bytes().await.map_err(|e| ClientError::Unexpected {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|body| format!("{} ({})", body.detail, body.error))
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            // It goes to a terminal: no escape sequences, and not a whole HTML page.
            let message: String = message
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect();
            return Err(ClientError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
            url,
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refusal_carries_the_coordinators_message() {
        use axum::http::StatusCode;
        use axum::routing::post;
        let router = axum::Router::new().route(
            "/api/v1/miners/",
            post(|| async {
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    axum::Json(serde_json::json!({
                        "error": "invalid_body",
                        "detail": "compute_resources[0].ram: expected a number followed by GB"
                    })),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        let base = reqwest::Url::parse(&format!("http://{address}/api/v1")).expect("url");
        let client = CoordinatorClient::new(&base).expect("client");
        let request: RegistrationRequest = serde_json::from_value(serde_json::json!({
            "name": "x", "compute_resources": []
        }))
        .expect("request");
        let err = client.register(&request).await.expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("422"), "{text}");
        assert!(text.contains("expected a number followed by GB"), "{text}");

        let closed = reqwest::Url::parse("http://127.0.0.1:9/api/v1").expect("url");
        let err = CoordinatorClient::new(&closed)
            .expect("client")
            .register(&request)
            .await
            .expect_err("unreachable");
        assert!(
            err.to_string()
                .starts_with("cannot reach the coordinator at"),
            "{err}"
        );
    }
}
