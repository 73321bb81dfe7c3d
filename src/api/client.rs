//! The coordinator's HTTP API as the miner side calls it: registration, the network-specific
//! registrations and the pod view. Errors carry the coordinator's own message.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    BittensorRegistration, CommuneRegistration, ErrorBody, Pod, RegistrationRequest,
    RegistrationResponse, SimpleResponse,
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
        let url = self.url(&format!("/miners/{miner_id}"));
        self.send(self.http.get(url).bearer_auth(token)).await
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
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(200).collect());
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
