//! What every handler can reach.

use std::sync::Arc;

use deploy_safety_app::App;
use metrics_exporter_prometheus::PrometheusHandle;

#[derive(Clone, Debug)]
pub struct AppState {
    pub app: App,
    pub metrics: PrometheusHandle,
    /// The OpenAPI document, serialized once at startup.
    pub openapi_json: Arc<String>,
}
