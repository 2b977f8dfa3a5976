//! Incidents.

use deploy_safety_api_types::{
    EscalateIncidentRequest, IncidentListQuery, OpenIncidentRequest, ResolveIncidentRequest,
};

use super::{client, show};
use crate::cli::IncidentCommand;
use crate::output;

pub(super) async fn incident_command(command: IncidentCommand) -> anyhow::Result<u8> {
    Ok(match command {
        IncidentCommand::Open {
            title,
            severity,
            category,
            environment,
            remote,
        } => show(
            client(&remote)?
                .open_incident(&OpenIncidentRequest {
                    title,
                    severity,
                    category,
                    environment,
                })
                .await,
            &remote,
            output::incident,
        ),
        IncidentCommand::List {
            status,
            severity,
            environment,
            limit,
            remote,
        } => show(
            client(&remote)?
                .list_incidents(&IncidentListQuery {
                    status,
                    severity,
                    environment,
                    limit,
                })
                .await,
            &remote,
            |list| output::incidents(&list.incidents),
        ),
        IncidentCommand::Show { id, remote } => show(
            client(&remote)?.get_incident(&id).await,
            &remote,
            output::incident,
        ),
        IncidentCommand::Escalate {
            id,
            severity,
            reason,
            remote,
        } => show(
            client(&remote)?
                .escalate_incident(&id, &EscalateIncidentRequest { severity, reason })
                .await,
            &remote,
            output::incident,
        ),
        IncidentCommand::Resolve { id, reason, remote } => show(
            client(&remote)?
                .resolve_incident(&id, &ResolveIncidentRequest { reason })
                .await,
            &remote,
            output::incident,
        ),
    })
}
