//! Health probes.

use deploy_safety_api_types::CreateProbeRequest;

use super::{client, show};
use crate::cli::ProbeCommand;
use crate::output;

pub(super) async fn probe_command(command: ProbeCommand) -> anyhow::Result<u8> {
    Ok(match command {
        ProbeCommand::Add {
            name,
            kind,
            url,
            method,
            expected_status,
            address,
            timeout_ms,
            interval_ms,
            failure_threshold,
            success_threshold,
            critical,
            remote,
        } => show(
            client(&remote)?
                .create_probe(&CreateProbeRequest {
                    name,
                    kind,
                    url,
                    method,
                    expected_status,
                    address,
                    timeout_ms,
                    interval_ms,
                    failure_threshold,
                    success_threshold,
                    critical: Some(critical),
                })
                .await,
            &remote,
            output::probe_detail,
        ),
        ProbeCommand::List { remote } => {
            show(client(&remote)?.list_probes().await, &remote, |list| {
                output::probes(&list.probes)
            })
        }
        ProbeCommand::Show { id, remote } => show(
            client(&remote)?.get_probe(&id).await,
            &remote,
            output::probe_detail,
        ),
        ProbeCommand::Rm { id, remote } => {
            show(client(&remote)?.delete_probe(&id).await, &remote, |p| {
                format!(
                    "Removed probe {} ({}).\n",
                    p.probe.definition.name, p.probe.id
                )
            })
        }
    })
}
