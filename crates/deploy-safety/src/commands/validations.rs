//! Release validations.

use deploy_safety_api_types::{StartValidationRequest, ValidationListQuery};
use deploy_safety_core::ValidationStatus;

use super::{client, show};
use crate::cli::ValidateCommand;
use crate::output::{self, exit};

pub(super) async fn validate_command(command: ValidateCommand) -> anyhow::Result<u8> {
    Ok(match command {
        ValidateCommand::Start {
            release,
            environment,
            service,
            remote,
        } => show(
            client(&remote)?
                .start_validation(&StartValidationRequest {
                    release_id: release,
                    environment,
                    service,
                })
                .await,
            &remote,
            output::validation,
        ),
        ValidateCommand::Run { id, remote } => {
            let result = client(&remote)?.run_validation(&id).await;
            let failed = matches!(&result, Ok(v) if v.status != ValidationStatus::Passed);
            let code = show(result, &remote, output::validation);
            if failed { exit::NO } else { code }
        }
        ValidateCommand::Show { id, remote } => show(
            client(&remote)?.get_validation(&id).await,
            &remote,
            output::validation,
        ),
        ValidateCommand::List {
            release,
            environment,
            service,
            limit,
            remote,
        } => show(
            client(&remote)?
                .list_validations(&ValidationListQuery {
                    release_id: release,
                    environment,
                    service,
                    limit,
                })
                .await,
            &remote,
            |list| output::validations(&list.validations),
        ),
    })
}
