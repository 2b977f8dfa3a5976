//! Commands that work on the database directly: tokens and `migrate-data`.

use std::sync::Arc;

use anyhow::Context;

use deploy_safety_app::{App, SystemClock, verify_chain};
use deploy_safety_store::{Store, redact_url, sqlite};
use serde::Serialize;

use super::print_json;
use super::serve::{database_settings, open_store};
use crate::cli::{DatabaseArgs, SessionCommand, TokenCommand};
use crate::output::{self, exit};

/// Who did it, for the audit log of commands run directly on the database.
fn local_operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

async fn local_app(database: &DatabaseArgs) -> anyhow::Result<App> {
    let settings = database_settings(database)?;
    if let Some(path) = sqlite::path_from_url(&settings.database_url)
        && !path.exists()
    {
        // Token commands create the database if it is new; say so, in case this is the wrong
        // directory (the default URL is relative).
        let shown = std::path::absolute(&path).unwrap_or(path);
        eprintln!(
            "note: no database at {}; creating a new one",
            shown.display()
        );
    }
    let store = open_store(&settings.database_url, None).await?;
    Ok(App::new(store, Arc::new(SystemClock), settings.app()))
}

pub(super) async fn token(command: TokenCommand) -> anyhow::Result<u8> {
    match command {
        TokenCommand::Create {
            name,
            role,
            database,
        } => {
            let app = local_app(&database).await?;
            let issued = app.create_token(&name, role, &local_operator()).await?;
            println!("{}", issued.token);
        }
        TokenCommand::List { database, json } => {
            let app = local_app(&database).await?;
            let tokens = app.list_tokens().await?;
            if json {
                print_json(&tokens);
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.role.to_string(),
                            t.created_at.to_rfc3339(),
                            t.created_by.clone(),
                            t.revoked_at
                                .map_or_else(|| "active".to_owned(), |at| format!("revoked {at}")),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    output::table(
                        &["ID", "NAME", "ROLE", "CREATED", "CREATED BY", "STATUS"],
                        &rows
                    )
                );
            }
        }
        TokenCommand::Revoke { name, id, database } => {
            let app = local_app(&database).await?;
            let revoked = match (name, id) {
                (_, Some(id)) => vec![app.revoke_token(&id, &local_operator()).await?],
                (Some(name), None) => {
                    app.revoke_principal_tokens(&name, &local_operator())
                        .await?
                }
                (None, None) => anyhow::bail!("name a principal or pass --id"),
            };
            for token in revoked {
                println!("Revoked token {} of {}.", token.id, token.name);
            }
        }
    }
    Ok(exit::OK)
}

pub(super) async fn session(command: SessionCommand) -> anyhow::Result<u8> {
    match command {
        SessionCommand::List { database, json } => {
            let app = local_app(&database).await?;
            let sessions = app.list_sessions().await?;
            if json {
                print_json(&sessions);
            } else {
                let now = app.clock().now();
                let rows: Vec<Vec<String>> = sessions
                    .iter()
                    .map(|s| {
                        let status = match s.revoked_at {
                            Some(at) => format!("revoked {at}"),
                            None if s.expires_at <= now || s.idle_expires_at <= now => {
                                "expired".to_owned()
                            }
                            None => "active".to_owned(),
                        };
                        vec![
                            s.id.clone(),
                            s.principal.clone(),
                            s.role.to_string(),
                            s.created_at.to_rfc3339(),
                            s.last_seen_at.to_rfc3339(),
                            s.expires_at.to_rfc3339(),
                            status,
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    output::table(
                        &[
                            "ID",
                            "PRINCIPAL",
                            "ROLE",
                            "CREATED",
                            "LAST SEEN",
                            "EXPIRES",
                            "STATUS"
                        ],
                        &rows
                    )
                );
            }
        }
        SessionCommand::Revoke { name, id, database } => {
            let app = local_app(&database).await?;
            let revoked = app
                .revoke_sessions(id.as_deref(), name.as_deref(), &local_operator())
                .await?;
            if revoked.is_empty() {
                println!("No active session to revoke.");
            }
            for id in revoked {
                println!("Revoked session {id}.");
            }
        }
    }
    Ok(exit::OK)
}

/// What `migrate-data --json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MigrationReport {
    rows_copied: std::collections::BTreeMap<String, u64>,
    total_rows: u64,
    /// The copy's audit chain, verified on the target.
    audit_chain: deploy_safety_api_types::AuditVerification,
}

pub(super) async fn migrate_data(from: String, to: String, json: bool) -> anyhow::Result<u8> {
    // A broken chain is evidence for the security team, not something to carry over quietly.
    let source_url = from.clone();
    let source = tokio::task::spawn_blocking(move || Store::open_read_only(&source_url))
        .await?
        .with_context(|| format!("cannot open the source database {}", redact_url(&from)))?;
    let source_chain = source.read(verify_chain).await?;
    drop(source);
    if !source_chain.valid {
        eprint!("{}", output::verification(&source_chain));
        eprintln!("error: the source's audit chain does not verify; nothing was copied");
        return Ok(exit::CHAIN_BROKEN);
    }

    let (copy_from, copy_to) = (from.clone(), to.clone());
    let copied =
        tokio::task::spawn_blocking(move || deploy_safety_store::copy_data(&copy_from, &copy_to))
            .await?;
    let report = match copied {
        Ok(report) => report,
        Err(error @ deploy_safety_store::StoreError::Conflict(_)) => {
            eprintln!("error: nothing was copied: {error}");
            return Ok(exit::REFUSED);
        }
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!(
                "cannot copy {} into {}; nothing was copied",
                redact_url(&from),
                redact_url(&to)
            )));
        }
    };

    let target_url = to.clone();
    let target = tokio::task::spawn_blocking(move || Store::open_read_only(&target_url))
        .await?
        .with_context(|| format!("cannot open the copy {}", redact_url(&to)))?;
    let target_chain = target.read(verify_chain).await?;
    drop(target);
    // The copy's chain, recomputed from its entries, must end at the head the source recorded
    // in the copied snapshot, and continue the chain verified on the source before the copy
    // (the same head, unless something was appended in between).
    let same_chain = target_chain.valid
        && target_chain.entries_verified == report.audit_head_seq
        && target_chain.head_hash == report.audit_head_hash
        && (report.audit_head_seq > source_chain.entries_verified
            || report.audit_head_hash == source_chain.head_hash);
    if json {
        print_json(&MigrationReport {
            rows_copied: report.rows.iter().cloned().collect(),
            total_rows: report.total_rows(),
            audit_chain: target_chain.clone(),
        });
    } else {
        println!(
            "Copied {} records from {} to {}:",
            report.total_rows(),
            redact_url(&from),
            redact_url(&to)
        );
        for (table, rows) in &report.rows {
            println!("  {table:<16} {rows}");
        }
        print!("{}", output::verification(&target_chain));
    }
    if same_chain {
        Ok(exit::OK)
    } else {
        eprintln!(
            "error: the copy's audit chain does not match the source's (head {} at entry {})",
            report.audit_head_hash, report.audit_head_seq
        );
        Ok(exit::CHAIN_BROKEN)
    }
}
