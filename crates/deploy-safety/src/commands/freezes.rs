//! Freezes.

use deploy_safety_api_types::{CreateFreezeRequest, EndFreezeRequest, FreezeListQuery};
use deploy_safety_core::ScheduleSpec;

use super::{client, show};
use crate::cli::FreezeCommand;
use crate::output;

pub(super) async fn freeze_command(command: FreezeCommand) -> anyhow::Result<u8> {
    Ok(match command {
        FreezeCommand::Create {
            name,
            reason,
            environments,
            services,
            actions,
            start,
            end,
            schedule,
            duration,
            time_zone,
            hard,
            remote,
        } => {
            let schedule = schedule.map(|cron| ScheduleSpec {
                cron,
                duration_minutes: duration
                    .map_or(0, |d| i64::try_from(d.as_secs() / 60).unwrap_or(i64::MAX)),
                time_zone: time_zone.unwrap_or_default(),
            });
            show(
                client(&remote)?
                    .create_freeze(&CreateFreezeRequest {
                        name,
                        reason,
                        environments: (!environments.is_empty()).then_some(environments),
                        services: (!services.is_empty()).then_some(services),
                        actions: (!actions.is_empty()).then_some(actions),
                        start,
                        end,
                        schedule,
                        hard: Some(hard),
                    })
                    .await,
                &remote,
                output::freeze,
            )
        }
        FreezeCommand::List { all, limit, remote } => show(
            client(&remote)?
                .list_freezes(&FreezeListQuery {
                    all: Some(all),
                    limit,
                })
                .await,
            &remote,
            output::freezes,
        ),
        FreezeCommand::Show { id, remote } => show(
            client(&remote)?.get_freeze(&id).await,
            &remote,
            output::freeze,
        ),
        FreezeCommand::End { id, reason, remote } => show(
            client(&remote)?
                .end_freeze(&id, &EndFreezeRequest { reason })
                .await,
            &remote,
            output::freeze,
        ),
    })
}
