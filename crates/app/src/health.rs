//! `GET /health`: is the service able to do its job?

use deploy_safety_api_types::{HealthReport, OverallHealth, ProbeSummary};

use crate::App;

impl App {
    /// The built-in database probe: a read of the gate's state must succeed. It is critical:
    /// a gate that cannot read its state cannot decide.
    pub async fn health(&self) -> HealthReport {
        let database = match self.store.read(|tx| tx.gate_state()).await {
            Ok(_) => ProbeSummary {
                name: "database".to_owned(),
                kind: "database".to_owned(),
                critical: true,
                healthy: true,
                message: format!("{} answers", self.store.describe()),
            },
            Err(error) => {
                tracing::warn!(%error, "database probe failed");
                ProbeSummary {
                    name: "database".to_owned(),
                    kind: "database".to_owned(),
                    critical: true,
                    healthy: false,
                    message: "the database does not answer".to_owned(),
                }
            }
        };
        let overall = if database.healthy {
            OverallHealth::Healthy
        } else {
            OverallHealth::Unhealthy
        };
        HealthReport {
            overall_health: overall,
            probes: Some(vec![database]),
        }
    }
}
