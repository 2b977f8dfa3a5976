//! A typed client for the deploy-safety API, used by the CLI and the end-to-end tests.

use std::time::Duration;

use deploy_safety_api_types::{
    API_PREFIX, AuditListQuery, AuditPage, AuditPublicKey, AuditVerification, CheckRequest,
    CheckResponse, CreateOverrideRequest, CreateProbeRequest, ErrorBody, EscalateIncidentRequest,
    GateStatus, HealthReport, IncidentList, IncidentListQuery, NewOverrideRequest,
    OpenIncidentRequest, OverrideList, OverrideRequestList, OverrideRequestListQuery,
    OverrideRequestView, OverrideView, ProbeList, ProbeView, ResolveIncidentRequest,
    SetModeRequest, SetThreatLevelRequest, StartValidationRequest, ValidationList,
    ValidationListQuery, ValidationView, VoteBody, WhoAmI,
};
use deploy_safety_api_types::{
    AbortSoakRequest, SoakList, SoakListQuery, SoakMetricsRequest, StartSoakRequest,
};
use deploy_safety_api_types::{
    CanaryList, CanaryMetricsRequest, CanaryView, CreateFreezeRequest, CreateRollbackRequest,
    EndFreezeRequest, EnvironmentList, EnvironmentListQuery, FreezeList, FreezeListQuery,
    FreezeView, PromoteCanaryRequest, ReleaseHistory, RollbackList, ServiceQuery,
    SetLoadSheddingRequest, StartCanaryRequest,
};
use deploy_safety_core::{
    Checkpoint, Environment, Event, Incident, LoadShedding, RequestStatus, Rollback, Soak,
};
use reqwest::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call did not return what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{} ({status})", body.error.message)]
    Api { status: u16, body: Box<ErrorBody> },
    /// The server could not be reached, or the exchange failed.
    #[error("cannot reach the server at {url}: {message}")]
    Transport { url: String, message: String },
    /// The server answered something this client cannot read.
    #[error("unexpected answer from the server ({status}): {message}")]
    Unexpected { status: u16, message: String },
}

fn service_query(service: Option<&str>) -> ServiceQuery {
    ServiceQuery {
        service: service.map(str::to_owned),
    }
}

impl ClientError {
    /// The API error body, if the server sent one.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Api { body, .. } => Some(body),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                Some(*status)
            }
            ClientError::Transport { .. } => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `base` is the server's URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: &str, token: Option<String>) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("deploy-safety-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport {
                url: base.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{API_PREFIX}{path}", self.base)
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send_raw(
        &self,
        builder: RequestBuilder,
        url: &str,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let transport = |e: reqwest::Error| ClientError::Transport {
            url: url.to_owned(),
            message: e.to_string(),
        };
        let response = builder.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport)?;
        Ok((status, bytes.to_vec()))
    }

    async fn send<T: DeserializeOwned>(
        &self,
        builder: RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.send_raw(builder, url).await?;
        interpret(status, &bytes)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(self.request(Method::GET, &url), &url).await
    }

    async fn get_query<T: DeserializeOwned, Q: Serialize>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(self.request(Method::GET, &url).query(query), &url)
            .await
    }

    async fn post_query<T: DeserializeOwned, Q: Serialize, B: Serialize>(
        &self,
        path: &str,
        query: &Q,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(
            self.request(Method::POST, &url).query(query).json(body),
            &url,
        )
        .await
    }

    async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(self.request(Method::POST, &url).json(body), &url)
            .await
    }

    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(self.request(Method::DELETE, &url), &url).await
    }

    pub async fn gate_status(&self) -> Result<GateStatus, ClientError> {
        self.get("/security-gate/status").await
    }

    pub async fn set_mode(&self, request: &SetModeRequest) -> Result<GateStatus, ClientError> {
        self.post("/security-gate/mode", request).await
    }

    pub async fn set_threat_level(
        &self,
        request: &SetThreatLevelRequest,
    ) -> Result<GateStatus, ClientError> {
        self.post("/security-gate/threat-level", request).await
    }

    pub async fn create_override(
        &self,
        request: &CreateOverrideRequest,
    ) -> Result<OverrideView, ClientError> {
        self.post("/security-gate/override", request).await
    }

    pub async fn list_overrides(&self, all: bool) -> Result<OverrideList, ClientError> {
        self.get_query("/security-gate/overrides", &[("all", all)])
            .await
    }

    pub async fn get_override(&self, id: &str) -> Result<OverrideView, ClientError> {
        self.get(&format!("/security-gate/override/{}", encode(id)))
            .await
    }

    pub async fn revoke_override(&self, id: &str) -> Result<OverrideView, ClientError> {
        self.delete(&format!("/security-gate/override/{}", encode(id)))
            .await
    }

    /// `POST /security-gate/override-requests`: ask for an override others approve.
    pub async fn request_override(
        &self,
        request: &NewOverrideRequest,
    ) -> Result<OverrideRequestView, ClientError> {
        self.post("/security-gate/override-requests", request).await
    }

    /// `GET /security-gate/override-requests`, newest first; `status` keeps only those that
    /// stand so now.
    pub async fn list_override_requests(
        &self,
        status: Option<RequestStatus>,
    ) -> Result<OverrideRequestList, ClientError> {
        self.get_query(
            "/security-gate/override-requests",
            &OverrideRequestListQuery { status },
        )
        .await
    }

    pub async fn get_override_request(&self, id: &str) -> Result<OverrideRequestView, ClientError> {
        self.get(&format!("/security-gate/override-requests/{}", encode(id)))
            .await
    }

    pub async fn approve_override_request(
        &self,
        id: &str,
        vote: &VoteBody,
    ) -> Result<OverrideRequestView, ClientError> {
        self.post(
            &format!("/security-gate/override-requests/{}/approve", encode(id)),
            vote,
        )
        .await
    }

    pub async fn deny_override_request(
        &self,
        id: &str,
        vote: &VoteBody,
    ) -> Result<OverrideRequestView, ClientError> {
        self.post(
            &format!("/security-gate/override-requests/{}/deny", encode(id)),
            vote,
        )
        .await
    }

    pub async fn check(&self, request: &CheckRequest) -> Result<CheckResponse, ClientError> {
        self.post("/security-gate/check", request).await
    }

    pub async fn audit_page(&self, query: &AuditListQuery) -> Result<AuditPage, ClientError> {
        self.get_query("/audit", query).await
    }

    pub async fn audit_verify(&self) -> Result<AuditVerification, ClientError> {
        self.get("/audit/verify").await
    }

    pub async fn start_soak(&self, request: &StartSoakRequest) -> Result<Soak, ClientError> {
        self.post("/soaks", request).await
    }

    pub async fn get_soak(&self, id: &str) -> Result<Soak, ClientError> {
        self.get(&format!("/soaks/{}", encode(id))).await
    }

    pub async fn list_soaks(&self, query: &SoakListQuery) -> Result<SoakList, ClientError> {
        self.get_query("/soaks", query).await
    }

    pub async fn push_soak_metrics(
        &self,
        id: &str,
        metrics: &SoakMetricsRequest,
    ) -> Result<Soak, ClientError> {
        self.post(&format!("/soaks/{}/metrics", encode(id)), metrics)
            .await
    }

    pub async fn abort_soak(
        &self,
        id: &str,
        request: &AbortSoakRequest,
    ) -> Result<Soak, ClientError> {
        self.post(&format!("/soaks/{}/abort", encode(id)), request)
            .await
    }

    pub async fn audit_public_key(&self) -> Result<AuditPublicKey, ClientError> {
        self.get("/audit/public-key").await
    }

    pub async fn latest_checkpoint(&self) -> Result<Checkpoint, ClientError> {
        self.get("/audit/checkpoints/latest").await
    }

    /// `GET /health`. An unhealthy service answers 503 with a report: that is a report, not an
    /// error.
    pub async fn health(&self) -> Result<HealthReport, ClientError> {
        let url = self.url("/health");
        let (status, bytes) = self.send_raw(self.request(Method::GET, &url), &url).await?;
        if status == 503 {
            return decode(status, &bytes);
        }
        interpret(status, &bytes)
    }

    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get("/auth/whoami").await
    }

    pub async fn open_incident(
        &self,
        request: &OpenIncidentRequest,
    ) -> Result<Incident, ClientError> {
        self.post("/incidents", request).await
    }

    pub async fn list_incidents(
        &self,
        query: &IncidentListQuery,
    ) -> Result<IncidentList, ClientError> {
        self.get_query("/incidents", query).await
    }

    pub async fn get_incident(&self, id: &str) -> Result<Incident, ClientError> {
        self.get(&format!("/incidents/{}", encode(id))).await
    }

    pub async fn escalate_incident(
        &self,
        id: &str,
        request: &EscalateIncidentRequest,
    ) -> Result<Incident, ClientError> {
        self.post(&format!("/incidents/{}/escalate", encode(id)), request)
            .await
    }

    pub async fn resolve_incident(
        &self,
        id: &str,
        request: &ResolveIncidentRequest,
    ) -> Result<Incident, ClientError> {
        self.post(&format!("/incidents/{}/resolve", encode(id)), request)
            .await
    }

    pub async fn start_validation(
        &self,
        request: &StartValidationRequest,
    ) -> Result<ValidationView, ClientError> {
        self.post("/validations/start", request).await
    }

    pub async fn run_validation(&self, id: &str) -> Result<ValidationView, ClientError> {
        self.post(
            &format!("/validations/{}/run", encode(id)),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn get_validation(&self, id: &str) -> Result<ValidationView, ClientError> {
        self.get(&format!("/validations/{}", encode(id))).await
    }

    pub async fn list_validations(
        &self,
        query: &ValidationListQuery,
    ) -> Result<ValidationList, ClientError> {
        self.get_query("/validations", query).await
    }

    pub async fn create_probe(
        &self,
        request: &CreateProbeRequest,
    ) -> Result<ProbeView, ClientError> {
        self.post("/probes", request).await
    }

    pub async fn list_probes(&self) -> Result<ProbeList, ClientError> {
        self.get("/probes").await
    }

    pub async fn get_probe(&self, id: &str) -> Result<ProbeView, ClientError> {
        self.get(&format!("/probes/{}", encode(id))).await
    }

    pub async fn delete_probe(&self, id: &str) -> Result<ProbeView, ClientError> {
        self.delete(&format!("/probes/{}", encode(id))).await
    }

    pub async fn start_canary(
        &self,
        request: &StartCanaryRequest,
    ) -> Result<CanaryView, ClientError> {
        self.post("/canary/start", request).await
    }

    /// `GET /canary/{environment}`, for `service` (or the canary that names none).
    pub async fn canary_status(
        &self,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<CanaryView, ClientError> {
        self.get_query(&format!("/canary/{environment}"), &service_query(service))
            .await
    }

    pub async fn promote_canary(
        &self,
        request: &PromoteCanaryRequest,
    ) -> Result<CanaryView, ClientError> {
        self.post("/canary/promote", request).await
    }

    pub async fn push_canary_metrics(
        &self,
        environment: Environment,
        service: Option<&str>,
        request: &CanaryMetricsRequest,
    ) -> Result<CanaryView, ClientError> {
        self.post_query(
            &format!("/canary/{environment}/metrics"),
            &service_query(service),
            request,
        )
        .await
    }

    pub async fn list_canaries(
        &self,
        query: &EnvironmentListQuery,
    ) -> Result<CanaryList, ClientError> {
        self.get_query("/canaries", query).await
    }

    pub async fn create_rollback(
        &self,
        request: &CreateRollbackRequest,
    ) -> Result<Rollback, ClientError> {
        self.post("/rollback/create", request).await
    }

    pub async fn execute_rollback(&self, id: &str) -> Result<Rollback, ClientError> {
        self.post(
            &format!("/rollback/{}/execute", encode(id)),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn get_rollback(&self, id: &str) -> Result<Rollback, ClientError> {
        self.get(&format!("/rollback/{}", encode(id))).await
    }

    pub async fn list_rollbacks(
        &self,
        query: &EnvironmentListQuery,
    ) -> Result<RollbackList, ClientError> {
        self.get_query("/rollbacks", query).await
    }

    pub async fn releases(
        &self,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<ReleaseHistory, ClientError> {
        self.get_query(&format!("/releases/{environment}"), &service_query(service))
            .await
    }

    pub async fn set_load_shedding(
        &self,
        request: &SetLoadSheddingRequest,
    ) -> Result<LoadShedding, ClientError> {
        self.post("/load-shedding", request).await
    }

    pub async fn load_shedding(
        &self,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<LoadShedding, ClientError> {
        self.get_query(
            &format!("/load-shedding/{environment}"),
            &service_query(service),
        )
        .await
    }

    pub async fn create_freeze(
        &self,
        request: &CreateFreezeRequest,
    ) -> Result<FreezeView, ClientError> {
        self.post("/freezes", request).await
    }

    pub async fn list_freezes(&self, query: &FreezeListQuery) -> Result<FreezeList, ClientError> {
        self.get_query("/freezes", query).await
    }

    pub async fn get_freeze(&self, id: &str) -> Result<FreezeView, ClientError> {
        self.get(&format!("/freezes/{}", encode(id))).await
    }

    pub async fn end_freeze(
        &self,
        id: &str,
        request: &EndFreezeRequest,
    ) -> Result<FreezeView, ClientError> {
        let url = self.url(&format!("/freezes/{}", encode(id)));
        self.send(self.request(Method::DELETE, &url).json(request), &url)
            .await
    }

    /// `GET /environments`.
    pub async fn environments(&self) -> Result<EnvironmentList, ClientError> {
        self.get("/environments").await
    }

    /// Follows `GET /events`: events after `since` (or from now), for `environment` (and
    /// those of none).
    pub async fn events(
        &self,
        since: Option<u64>,
        environment: Option<Environment>,
    ) -> Result<EventStream, ClientError> {
        let url = self.url("/events");
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(since) = since {
            query.push(("since", since.to_string()));
        }
        if let Some(environment) = environment {
            query.push(("environment", environment.to_string()));
        }
        // No overall timeout: the stream lasts as long as the caller reads it.
        let builder = self
            .request(Method::GET, &url)
            .query(&query)
            .timeout(Duration::from_secs(365 * 24 * 3600));
        let response = builder.send().await.map_err(|e| ClientError::Transport {
            url: url.clone(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            let bytes = response.bytes().await.unwrap_or_default();
            return Err(interpret::<serde_json::Value>(status, &bytes)
                .err()
                .unwrap_or(ClientError::Unexpected {
                    status,
                    message: "not an event stream".to_owned(),
                }));
        }
        Ok(EventStream {
            response,
            buffer: String::new(),
            url,
        })
    }
}

/// A response as the caller's type, or as the API error it carries.
fn interpret<T: DeserializeOwned>(status: u16, bytes: &[u8]) -> Result<T, ClientError> {
    if (200..300).contains(&status) {
        return decode(status, bytes);
    }
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => Err(ClientError::Api {
            status,
            body: Box::new(body),
        }),
        Err(_) => Err(ClientError::Unexpected {
            status,
            message: String::from_utf8_lossy(bytes).chars().take(500).collect(),
        }),
    }
}

fn decode<T: DeserializeOwned>(status: u16, bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Unexpected {
        status,
        message: e.to_string(),
    })
}

/// Percent-encodes a path segment (ids are plain, but a typo must not change the path).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `GET /events` stream, read one event at a time.
#[derive(Debug)]
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
    url: String,
}

impl EventStream {
    /// The next event; `None` when the server ends the stream.
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(serde_json::from_str(&data.join("\n")).map_err(|e| {
                    ClientError::Unexpected {
                        status: 200,
                        message: format!("not an event: {e}"),
                    }
                }));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n")),
                Ok(None) => return None,
                Err(e) => {
                    return Some(Err(ClientError::Transport {
                        url: self.url.clone(),
                        message: e.to_string(),
                    }));
                }
            }
        }
    }
}
