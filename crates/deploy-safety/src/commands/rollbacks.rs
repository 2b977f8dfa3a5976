//! Rollbacks and release history.

use deploy_safety_api_types::{CreateRollbackRequest, EnvironmentListQuery};

use super::{client, show};
use crate::cli::{Command, RollbackCommand};
use crate::output;

pub(super) async fn rollback_command(command: RollbackCommand) -> anyhow::Result<u8> {
    Ok(match command {
        RollbackCommand::Create {
            environment,
            service,
            from_version,
            to_version,
            reason,
            remote,
        } => show(
            client(&remote)?
                .create_rollback(&CreateRollbackRequest {
                    environment,
                    service,
                    from_version,
                    to_version,
                    reason,
                })
                .await,
            &remote,
            output::rollback,
        ),
        RollbackCommand::Execute { id, remote } => show(
            client(&remote)?.execute_rollback(&id).await,
            &remote,
            output::rollback,
        ),
        RollbackCommand::Show { id, remote } => show(
            client(&remote)?.get_rollback(&id).await,
            &remote,
            output::rollback,
        ),
        RollbackCommand::List {
            environment,
            service,
            limit,
            remote,
        } => show(
            client(&remote)?
                .list_rollbacks(&EnvironmentListQuery {
                    environment,
                    service,
                    limit,
                })
                .await,
            &remote,
            |list| output::rollbacks(&list.rollbacks),
        ),
    })
}

/// `releases ENVIRONMENT`.
pub(super) async fn releases_command(command: Command) -> anyhow::Result<u8> {
    Ok(match command {
        Command::Releases {
            environment,
            service,
            remote,
        } => show(
            client(&remote)?
                .releases(environment, service.as_deref())
                .await,
            &remote,
            output::releases,
        ),
        _ => anyhow::bail!("not a releases command"),
    })
}
