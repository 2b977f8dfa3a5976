//! Canary deployments.

use deploy_safety_api_types::{
    CanaryConfigRequest, CanaryMetricsRequest, EnvironmentListQuery, PromoteCanaryRequest,
    StartCanaryRequest,
};
use deploy_safety_core::CanaryPhase;

use super::{client, print_json, show};
use crate::cli::{CanaryCommand, RemoteArgs};
use crate::output::{self, exit};

pub(super) async fn canary_command(command: CanaryCommand) -> anyhow::Result<u8> {
    Ok(match command {
        CanaryCommand::Start {
            release,
            environment,
            service,
            deployment,
            initial_percentage,
            increment_percentage,
            increment_interval,
            max_percentage,
            failure_threshold,
            remote,
        } => {
            let config = CanaryConfigRequest {
                initial_percentage,
                increment_percentage,
                increment_interval,
                max_percentage,
                failure_threshold,
            };
            show(
                client(&remote)?
                    .start_canary(&StartCanaryRequest {
                        release_id: release,
                        environment,
                        service,
                        deployment_id: deployment,
                        config: Some(config),
                    })
                    .await,
                &remote,
                output::canary,
            )
        }
        CanaryCommand::Status {
            environment,
            service,
            remote,
        } => show(
            client(&remote)?
                .canary_status(environment, service.as_deref())
                .await,
            &remote,
            output::canary,
        ),
        CanaryCommand::Promote {
            environment,
            service,
            remote,
        } => show(
            client(&remote)?
                .promote_canary(&PromoteCanaryRequest {
                    environment,
                    service,
                    canary_id: None,
                })
                .await,
            &remote,
            output::canary,
        ),
        CanaryCommand::Metrics {
            environment,
            service,
            error_rate,
            latency_p99,
            baseline_latency_p99,
            cpu,
            memory,
            remote,
        } => show(
            client(&remote)?
                .push_canary_metrics(
                    environment,
                    service.as_deref(),
                    &CanaryMetricsRequest {
                        error_rate_percent: error_rate,
                        latency_p99_ms: latency_p99,
                        baseline_latency_p99_ms: baseline_latency_p99,
                        cpu_percent: cpu,
                        memory_percent: memory,
                    },
                )
                .await,
            &remote,
            output::canary,
        ),
        CanaryCommand::Watch {
            environment,
            service,
            remote,
        } => watch_canary(environment, service.as_deref(), &remote).await?,
        CanaryCommand::List {
            environment,
            service,
            limit,
            remote,
        } => show(
            client(&remote)?
                .list_canaries(&EnvironmentListQuery {
                    environment,
                    service,
                    limit,
                })
                .await,
            &remote,
            |list| output::canaries(&list.canaries),
        ),
    })
}

/// Prints the canary, then one line per change as events arrive, until it finishes.
async fn watch_canary(
    environment: deploy_safety_core::Environment,
    service: Option<&str>,
    remote: &RemoteArgs,
) -> anyhow::Result<u8> {
    let client = client(remote)?;
    // Subscribe first, then read the state: no change can fall between the two.
    let mut events = match client.events(None, Some(environment)).await {
        Ok(events) => events,
        Err(error) => return Ok(output::report_error(&error, remote.json)),
    };
    let mut current = match client.canary_status(environment, service).await {
        Ok(view) => view,
        Err(error) => return Ok(output::report_error(&error, remote.json)),
    };
    let id = current.canary.id.clone();
    if remote.json {
        print_json(&current);
    } else {
        print!("{}", output::canary(&current));
    }
    loop {
        if !current.canary.phase.is_active() {
            return Ok(match current.canary.phase {
                CanaryPhase::RolledBack => exit::NO,
                _ => exit::OK,
            });
        }
        let Some(event) = events.next().await else {
            anyhow::bail!("the server ended the event stream");
        };
        let event = event?;
        if event.data["canaryId"].as_str() != Some(id.as_str()) {
            continue;
        }
        if remote.json {
            print_json(&event);
        }
        current = match client.canary_status(environment, service).await {
            Ok(view) => view,
            Err(error) => return Ok(output::report_error(&error, remote.json)),
        };
        if !remote.json {
            println!("{}", output::canary_line(&event, &current));
        }
    }
}
