//! Canary metrics pulled from Prometheus: one instant query per metric through the HTTP API,
//! each bounded by a timeout. A failed, empty or non-numeric answer leaves that metric
//! missing, which the evaluation judges `unknown` — never healthy.

use std::time::Duration;

use deploy_safety_core::{CanaryMetrics, Environment, MetricsSource, Timestamp};
use serde::Deserialize;

use crate::App;

/// Where to find Prometheus and what to ask it, per environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusSettings {
    /// e.g. `http://127.0.0.1:9090`.
    pub url: String,
    pub timeout: Duration,
    pub queries: Vec<(Environment, PrometheusQueries)>,
}

/// PromQL per metric. `{releaseId}`, `{deploymentId}` and `{environment}` are replaced by the
/// canary's values. A missing query leaves its metric unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrometheusQueries {
    pub error_rate_percent: Option<String>,
    pub latency_p99_ms: Option<String>,
    pub baseline_latency_p99_ms: Option<String>,
    pub cpu_percent: Option<String>,
    pub memory_percent: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<AnswerData>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerData {
    result_type: String,
    result: serde_json::Value,
}

/// The one number an instant query answered: a scalar, or a vector's single sample. Prometheus
/// writes sample values as strings (`"NaN"`, `"+Inf"` included).
fn number(answer: Answer) -> Result<f64, String> {
    if answer.status != "success" {
        return Err(answer.error.unwrap_or_else(|| "query failed".to_owned()));
    }
    let data = answer.data.ok_or("no data in the answer")?;
    let sample = match data.result_type.as_str() {
        "scalar" => data.result,
        "vector" => {
            let samples = data.result.as_array().cloned().unwrap_or_default();
            match samples.as_slice() {
                [] => return Err("the query returned no samples".to_owned()),
                [one] => one.get("value").cloned().unwrap_or_default(),
                many => {
                    return Err(format!(
                        "the query returned {} samples, not one",
                        many.len()
                    ));
                }
            }
        }
        other => return Err(format!("unexpected result type `{other}`")),
    };
    let text = sample
        .get(1)
        .and_then(serde_json::Value::as_str)
        .ok_or("no sample value")?;
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("the value is {text}"))
    }
}

impl App {
    /// Pulls a canary's metrics, if Prometheus queries are configured for `environment`.
    pub async fn pull_metrics(
        &self,
        environment: Environment,
        release_id: &str,
        deployment_id: &str,
        now: Timestamp,
    ) -> Option<CanaryMetrics> {
        let settings = self.settings.prometheus.as_ref()?;
        let queries = settings
            .queries
            .iter()
            .find(|(env, _)| *env == environment)
            .map(|(_, q)| q)?;
        let fill = |query: &Option<String>| {
            query.as_ref().map(|q| {
                q.replace("{releaseId}", release_id)
                    .replace("{deploymentId}", deployment_id)
                    .replace("{environment}", environment.as_str())
            })
        };
        let ask = |query: Option<String>| async move {
            let query = query?;
            match self.query_prometheus(settings, &query).await {
                Ok(value) => Some(value),
                Err(error) => {
                    tracing::warn!(%environment, %query, %error, "a Prometheus query gave no value");
                    None
                }
            }
        };
        let (error_rate, latency, baseline, cpu, memory) = tokio::join!(
            ask(fill(&queries.error_rate_percent)),
            ask(fill(&queries.latency_p99_ms)),
            ask(fill(&queries.baseline_latency_p99_ms)),
            ask(fill(&queries.cpu_percent)),
            ask(fill(&queries.memory_percent)),
        );
        Some(CanaryMetrics {
            error_rate_percent: error_rate,
            latency_p99_ms: latency,
            baseline_latency_p99_ms: baseline,
            cpu_percent: cpu,
            memory_percent: memory,
            received_at: now,
            source: MetricsSource::Prometheus,
        })
    }

    async fn query_prometheus(
        &self,
        settings: &PrometheusSettings,
        query: &str,
    ) -> Result<f64, String> {
        let url = format!("{}/api/v1/query", settings.url.trim_end_matches('/'));
        let response = self
            .http
            .get(&url)
            .query(&[("query", query)])
            .timeout(settings.timeout)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {} ms", settings.timeout.as_millis())
                } else {
                    crate::checks::root_cause(&e)
                }
            })?;
        let status = response.status();
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| format!("HTTP {status}: not a Prometheus answer ({e})"))?;
        number(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<f64, String> {
        number(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn answers_are_read_or_refused() {
        assert_eq!(
            parse(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"0.25"]}]}}"#
            ),
            Ok(0.25)
        );
        assert_eq!(
            parse(r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"3"]}}"#),
            Ok(3.0)
        );
        for bad in [
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"NaN"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"+Inf"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
