//! The audit log: list and verify, through the server or offline on the database; the public
//! key and the latest signed checkpoint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use deploy_safety_api_types::{AuditListQuery, AuditVerification};
use deploy_safety_app::{
    CheckpointProof, Clock, SystemClock, load_signing_key, prove_checkpoints, verify_chain,
};
use deploy_safety_core::SignedCheckpoint;
use deploy_safety_core::checkpoint::{VerifyingKey, public_key_from_pem};
use deploy_safety_store::{Store, redact_url};
use serde::Serialize;

use super::serve::database_settings;
use super::{client, print_json, show};
use crate::cli::{AuditCommand, DatabaseArgs};
use crate::output::{self, exit};

pub(super) async fn audit_command(command: AuditCommand) -> anyhow::Result<u8> {
    Ok(match command {
        AuditCommand::Verify {
            config,
            database_url,
            checkpoints,
            public_key,
            max_age,
            remote,
        } if config.is_some() || database_url.is_some() => {
            let database = DatabaseArgs {
                config,
                database_url,
            };
            let proof = match checkpoints {
                Some(file) => Some(KeptCheckpoints::read(&file, &public_key, max_age)?),
                None => None,
            };
            verify_offline(&database, proof, remote.json).await?
        }
        AuditCommand::Verify {
            checkpoints: Some(_),
            ..
        } => anyhow::bail!(
            "--checkpoints checks the database itself: pass --database-url (or --config)"
        ),
        AuditCommand::List {
            action,
            environment,
            principal,
            decision,
            since,
            until,
            limit,
            cursor,
            remote,
        } => show(
            client(&remote)?
                .audit_page(&AuditListQuery {
                    action,
                    environment,
                    principal,
                    decision,
                    since,
                    until,
                    limit,
                    cursor,
                })
                .await,
            &remote,
            output::audit_page,
        ),
        AuditCommand::Verify { remote, .. } => {
            let result = client(&remote)?.audit_verify().await;
            let broken = matches!(&result, Ok(v) if !v.valid);
            let code = show(result, &remote, output::verification);
            if broken { exit::CHAIN_BROKEN } else { code }
        }
        AuditCommand::PublicKey {
            key_file: Some(path),
            remote,
        } => {
            let key = load_signing_key(&path)?;
            if remote.json {
                print_json(&serde_json::json!({
                    "keyId": key.key_id(),
                    "algorithm": deploy_safety_core::checkpoint::ALGORITHM,
                    "publicKey": key.public_key_pem(),
                }));
            } else {
                print!("{}", key.public_key_pem());
            }
            exit::OK
        }
        AuditCommand::PublicKey {
            key_file: None,
            remote,
        } => show(client(&remote)?.audit_public_key().await, &remote, |key| {
            key.public_key.clone()
        }),
        AuditCommand::Checkpoint { remote } => {
            show(client(&remote)?.latest_checkpoint().await, &remote, |c| {
                let line = serde_json::to_string(&SignedCheckpoint::from(c)).unwrap_or_default();
                format!("{line}\n")
            })
        }
    })
}

/// Checkpoints kept outside the database, and the keys to check them with.
struct KeptCheckpoints {
    file: PathBuf,
    lines: Vec<(usize, Result<SignedCheckpoint, String>)>,
    keys: Vec<VerifyingKey>,
    max_age: Option<Duration>,
}

impl KeptCheckpoints {
    fn read(file: &Path, key_files: &[PathBuf], max_age: Option<Duration>) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the checkpoints {}", file.display()))?;
        let lines = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| Some((i + 1, kept_line(line)?)))
            .collect();
        let keys = key_files
            .iter()
            .map(|path| {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the public key {}", path.display()))?;
                public_key_from_pem(&pem)
                    .with_context(|| format!("the public key {}", path.display()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(KeptCheckpoints {
            file: file.to_owned(),
            lines,
            keys,
            max_age,
        })
    }
}

/// A line of a file of kept checkpoints: a checkpoint as `[audit] checkpoint_file` writes it,
/// or an `audit.checkpoint` event as a webhook receiver stored it (its `data`). Blank lines
/// and other events are passed over (`None`).
fn kept_line(line: &str) -> Option<Result<SignedCheckpoint, String>> {
    if line.trim().is_empty() {
        return None;
    }
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(e) => return Some(Err(e.to_string())),
    };
    let checkpoint = match value.get("type").and_then(serde_json::Value::as_str) {
        Some("audit.checkpoint") => value.get("data").cloned().unwrap_or_default(),
        Some(_) => return None,
        None => value,
    };
    Some(serde_json::from_value(checkpoint).map_err(|e| e.to_string()))
}

/// What `audit verify --checkpoints --json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Proof {
    /// Every check held.
    valid: bool,
    chain: AuditVerification,
    checkpoints: CheckpointProof,
}

async fn verify_offline(
    database: &DatabaseArgs,
    kept: Option<KeptCheckpoints>,
    json: bool,
) -> anyhow::Result<u8> {
    let settings = database_settings(database)?;
    let url = settings.database_url.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_read_only(&url))
        .await?
        .with_context(|| {
            format!(
                "cannot open the database {}",
                redact_url(&settings.database_url)
            )
        })?;
    let Some(kept) = kept else {
        let verification = store.read(verify_chain).await?;
        if json {
            print_json(&verification);
        } else {
            print!("{}", output::verification(&verification));
        }
        return Ok(if verification.valid {
            exit::OK
        } else {
            exit::CHAIN_BROKEN
        });
    };
    let now = SystemClock.now();
    let max_age = kept
        .max_age
        .map(|age| (now, i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
    let (lines, keys) = (kept.lines, kept.keys);
    // One snapshot for the chain and the checkpoints.
    let (chain, checkpoints) = store
        .read(move |tx| {
            let chain = verify_chain(tx)?;
            let checkpoints = prove_checkpoints(tx, &lines, &keys, max_age)?;
            Ok((chain, checkpoints))
        })
        .await?;
    let proof = Proof {
        valid: chain.valid && checkpoints.failures.is_empty(),
        chain,
        checkpoints,
    };
    if json {
        print_json(&proof);
    } else {
        print!("{}", output::verification(&proof.chain));
        print!(
            "{}",
            output::checkpoint_proof(&proof.checkpoints, &kept.file)
        );
    }
    Ok(if proof.valid {
        exit::OK
    } else {
        exit::CHAIN_BROKEN
    })
}

#[cfg(test)]
mod tests {
    use super::kept_line;

    #[test]
    fn kept_lines_are_checkpoints_or_checkpoint_events() {
        let bare = r#"{"seq":3,"headHash":"ab","at":"2026-12-01T00:00:00.000Z","keyId":"k","signature":"00"}"#;
        let event = format!(
            r#"{{"seq":17,"type":"audit.checkpoint","at":"2026-12-01T00:00:00.000Z","environment":null,"data":{bare}}}"#
        );
        assert_eq!(kept_line(bare).unwrap().unwrap().seq, 3);
        assert_eq!(
            kept_line(&event).unwrap().unwrap().seq,
            3,
            "the event's data, not its seq"
        );
        assert!(kept_line(r#"{"seq":18,"type":"soak.passed","data":{}}"#).is_none());
        assert!(kept_line("   ").is_none());
        assert!(kept_line("not json").unwrap().is_err());
        assert!(kept_line(r#"{"seq":3}"#).unwrap().is_err());
    }
}
