//! Soaks: the runbook's step 6.

use std::time::Duration;

use deploy_safety_api_types::{
    AbortSoakRequest, SoakConfigRequest, SoakListQuery, SoakMetricsRequest, StartSoakRequest,
};
use deploy_safety_core::SoakStatus;

use deploy_safety_client::ClientError;

use super::{client, print_json, show};
use crate::cli::{RemoteArgs, SoakCommand};
use crate::output::{self, exit};

fn millis(duration: Option<Duration>) -> Option<u64> {
    duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) async fn soak_command(command: SoakCommand) -> anyhow::Result<u8> {
    Ok(match command {
        SoakCommand::Start {
            release,
            environment,
            service,
            deployment,
            duration,
            interval,
            max_error_rate,
            max_latency_increase,
            remote,
        } => show(
            client(&remote)?
                .start_soak(&StartSoakRequest {
                    release_id: release,
                    environment,
                    service,
                    deployment_id: deployment,
                    config: Some(SoakConfigRequest {
                        duration_ms: millis(duration),
                        interval_ms: millis(interval),
                        max_error_rate_percent: max_error_rate,
                        max_latency_increase_percent: max_latency_increase,
                    }),
                })
                .await,
            &remote,
            output::soak,
        ),
        SoakCommand::Status { id, remote } => {
            show(client(&remote)?.get_soak(&id).await, &remote, output::soak)
        }
        SoakCommand::Watch { id, remote } => watch(&id, &remote).await?,
        SoakCommand::List {
            release,
            environment,
            service,
            status,
            limit,
            remote,
        } => show(
            client(&remote)?
                .list_soaks(&SoakListQuery {
                    release_id: release,
                    environment,
                    service,
                    status,
                    limit,
                })
                .await,
            &remote,
            |list| output::soaks(&list.soaks),
        ),
        SoakCommand::Abort { id, reason, remote } => show(
            client(&remote)?
                .abort_soak(&id, &AbortSoakRequest { reason })
                .await,
            &remote,
            output::soak,
        ),
        SoakCommand::Metrics {
            id,
            error_rate,
            latency_p99,
            baseline_latency_p99,
            remote,
        } => show(
            client(&remote)?
                .push_soak_metrics(
                    &id,
                    &SoakMetricsRequest {
                        error_rate_percent: error_rate,
                        latency_p99_ms: latency_p99,
                        baseline_latency_p99_ms: baseline_latency_p99,
                    },
                )
                .await,
            &remote,
            output::soak,
        ),
    })
}

/// How long `soak watch` keeps trying to reach the server again after losing it (a restart, a
/// change of leader) before it gives up: the soak goes on meanwhile.
const RECONNECT_FOR: Duration = Duration::from_secs(120);

/// Subscribes to the event stream, then reads the soak: no evaluation can fall between the two.
async fn subscribe(
    client: &deploy_safety_client::Client,
    id: &str,
) -> Result<(deploy_safety_client::EventStream, deploy_safety_core::Soak), ClientError> {
    let events = client.events(None, None).await?;
    let soak = client.get_soak(id).await?;
    Ok((events, soak))
}

/// Prints the soak, then each evaluation as it is recorded, until the soak ends. A lost
/// connection is retried: the evaluations are read from the soak itself, so none is missed.
async fn watch(id: &str, remote: &RemoteArgs) -> anyhow::Result<u8> {
    let client = client(remote)?;
    let (mut events, mut soak) = match subscribe(&client, id).await {
        Ok(subscribed) => subscribed,
        Err(error) => return Ok(output::report_error(&error, remote.json)),
    };
    if remote.json {
        print_json(&soak);
    } else {
        print!("{}", output::soak(&soak));
    }
    let mut shown = soak.evaluations.len();
    loop {
        if soak.status != SoakStatus::Running {
            if !remote.json {
                println!("{}", output::soak_result(&soak));
            }
            return Ok(if soak.status == SoakStatus::Passed {
                exit::OK
            } else {
                exit::NO
            });
        }
        match events.next().await {
            Some(Ok(event)) => {
                if event.data["soakId"].as_str() != Some(id) {
                    continue;
                }
                if remote.json {
                    print_json(&event);
                }
                match client.get_soak(id).await {
                    Ok(now) => soak = now,
                    Err(error) => return Ok(output::report_error(&error, remote.json)),
                }
            }
            Some(Err(_)) | None => {
                let give_up = std::time::Instant::now() + RECONNECT_FOR;
                (events, soak) = loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match subscribe(&client, id).await {
                        Ok(subscribed) => break subscribed,
                        Err(error) if std::time::Instant::now() >= give_up => {
                            eprintln!(
                                "error: lost the server and could not reach it again for {} s; the soak goes on: deploy-safety soak status {id}",
                                RECONNECT_FOR.as_secs()
                            );
                            return Ok(output::report_error(&error, remote.json));
                        }
                        Err(_) => {}
                    }
                };
            }
        }
        if !remote.json {
            for evaluation in soak.evaluations.iter().skip(shown) {
                println!("{}", output::soak_evaluation_line(evaluation));
            }
        }
        shown = soak.evaluations.len();
    }
}
