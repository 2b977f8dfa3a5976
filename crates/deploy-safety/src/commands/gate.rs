//! The gate: status, identity, health, mode and threat level, checks, overrides and load
//! shedding.

use deploy_safety_api_types::{
    CheckRequest, CreateOverrideRequest, NewOverrideRequest, OverallHealth, SetLoadSheddingRequest,
    SetModeRequest, SetThreatLevelRequest, VoteBody,
};
use deploy_safety_app::{Clock, SystemClock};

use super::{client, client_without_token, show};
use crate::cli::{
    Command, GateCommand, LoadshedCommand, ModeCommand, OverrideCommand, ThreatCommand,
};
use crate::output::{self, exit};

/// The top-level commands about the gate itself.
pub(super) async fn gate_command(command: Command) -> anyhow::Result<u8> {
    Ok(match command {
        Command::Status(remote) => show(
            client(&remote)?.gate_status().await,
            &remote,
            output::gate_status,
        ),
        Command::Whoami(remote) => show(client(&remote)?.whoami().await, &remote, |w| {
            match &w.token_id {
                Some(id) => format!("{} ({}), token {id}\n", w.principal, w.role),
                None => format!("{} ({}), by {}\n", w.principal, w.role, w.authenticated_by),
            }
        }),
        Command::Health(remote) => {
            let result = client_without_token(&remote)?.health().await;
            let not_healthy =
                matches!(&result, Ok(h) if h.overall_health != OverallHealth::Healthy);
            let code = show(result, &remote, output::health);
            if not_healthy { exit::NO } else { code }
        }
        Command::Mode(ModeCommand::Set {
            mode,
            reason,
            remote,
        }) => show(
            client(&remote)?
                .set_mode(&SetModeRequest { mode, reason })
                .await,
            &remote,
            output::gate_status,
        ),
        Command::Threat(ThreatCommand::Set {
            level,
            reason,
            remote,
        }) => show(
            client(&remote)?
                .set_threat_level(&SetThreatLevelRequest { level, reason })
                .await,
            &remote,
            output::gate_status,
        ),
        Command::Gate(GateCommand::Check {
            action,
            environment,
            service,
            release,
            remote,
        }) => {
            let result = client(&remote)?
                .check(&CheckRequest {
                    action,
                    environment,
                    service,
                    release_id: release,
                })
                .await;
            let blocked = matches!(&result, Ok(r) if !r.decision.allowed);
            let code = show(result, &remote, |r| output::decision(&r.decision));
            if blocked { exit::NO } else { code }
        }
        Command::Loadshed(LoadshedCommand::Set {
            environment,
            service,
            percentage,
            off,
            reason,
            remote,
        }) => show(
            client(&remote)?
                .set_load_shedding(&SetLoadSheddingRequest {
                    environment,
                    service,
                    enabled: !off,
                    percentage: if off { None } else { percentage },
                    reason,
                })
                .await,
            &remote,
            output::load_shedding,
        ),
        Command::Loadshed(LoadshedCommand::Show {
            environment,
            service,
            remote,
        }) => show(
            client(&remote)?
                .load_shedding(environment, service.as_deref())
                .await,
            &remote,
            output::load_shedding,
        ),
        Command::Override(command) => override_command(command).await?,
        _ => anyhow::bail!("not a gate command"),
    })
}

async fn override_command(command: OverrideCommand) -> anyhow::Result<u8> {
    Ok(match command {
        OverrideCommand::Create {
            action,
            environment,
            service,
            reason,
            ttl_minutes,
            release,
            approver,
            remote,
        } => show(
            client(&remote)?
                .create_override(&CreateOverrideRequest {
                    action,
                    environment,
                    service,
                    reason,
                    approver,
                    ttl_minutes,
                    release_id: release,
                })
                .await,
            &remote,
            output::override_detail,
        ),
        OverrideCommand::List { all, remote } => show(
            client(&remote)?.list_overrides(all).await,
            &remote,
            |list| output::overrides(&list.overrides),
        ),
        OverrideCommand::Show { id, remote } => show(
            client(&remote)?.get_override(&id).await,
            &remote,
            output::override_detail,
        ),
        OverrideCommand::Revoke { id, remote } => show(
            client(&remote)?.revoke_override(&id).await,
            &remote,
            output::override_detail,
        ),
        OverrideCommand::Request {
            action,
            environment,
            service,
            release,
            reason,
            ttl_minutes,
            remote,
        } => show(
            client(&remote)?
                .request_override(&NewOverrideRequest {
                    action,
                    environment,
                    service,
                    release_id: release,
                    reason,
                    ttl_minutes,
                })
                .await,
            &remote,
            |r| output::override_request(r, SystemClock.now()),
        ),
        OverrideCommand::Approve {
            id,
            comment,
            remote,
        } => show(
            client(&remote)?
                .approve_override_request(&id, &VoteBody { comment })
                .await,
            &remote,
            |r| output::override_vote(r, SystemClock.now()),
        ),
        OverrideCommand::Deny {
            id,
            comment,
            remote,
        } => show(
            client(&remote)?
                .deny_override_request(
                    &id,
                    &VoteBody {
                        comment: Some(comment),
                    },
                )
                .await,
            &remote,
            |r| output::override_vote(r, SystemClock.now()),
        ),
        OverrideCommand::Requests {
            id: Some(id),
            remote,
            ..
        } => show(
            client(&remote)?.get_override_request(&id).await,
            &remote,
            |r| output::override_request(r, SystemClock.now()),
        ),
        OverrideCommand::Requests {
            id: None,
            status,
            remote,
        } => show(
            client(&remote)?.list_override_requests(status).await,
            &remote,
            |list| output::override_requests(list, SystemClock.now()),
        ),
    })
}
