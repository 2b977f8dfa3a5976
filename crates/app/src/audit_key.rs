//! The checkpoint signing key's file (SPEC §20): outside the database, readable by its owner
//! only, created at first start.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use deploy_safety_core::CheckpointKey;

/// Why the key file cannot be used. The server refuses to start with any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "the audit signing key {path} has permissions {mode:04o}: it must be readable by its owner only (chmod 600 {path})"
    )]
    TooOpen { path: String, mode: u32 },
    #[error("cannot read the audit signing key {path}: {cause}")]
    Unreadable { path: String, cause: String },
    #[error("cannot create the audit signing key {path}: {cause}")]
    Uncreatable { path: String, cause: String },
}

/// The key at `path`, and whether it was created now. A missing file is created with a new
/// key, mode 0600 (never over a file that appeared meanwhile); an existing one must be a
/// regular file that group and others cannot read or write, holding an Ed25519 private key in
/// PKCS#8 PEM.
pub fn load_or_create_signing_key(path: &Path) -> Result<(CheckpointKey, bool), KeyFileError> {
    match load(path) {
        Err(KeyFileError::Unreadable { .. }) if !path.exists() => match create(path) {
            Ok(key) => Ok((key, true)),
            // Another process (a second replica on this host) created it first.
            Err(_) if path.exists() => load(path).map(|key| (key, false)),
            Err(e) => Err(e),
        },
        other => other.map(|key| (key, false)),
    }
}

/// Reads the key at `path` (for `deploy-safety audit public-key --key-file`).
pub fn load_signing_key(path: &Path) -> Result<CheckpointKey, KeyFileError> {
    load(path)
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn load(path: &Path) -> Result<CheckpointKey, KeyFileError> {
    let unreadable = |cause: String| KeyFileError::Unreadable {
        path: shown(path),
        cause,
    };
    let metadata = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    if !metadata.is_file() {
        return Err(unreadable("not a regular file".to_owned()));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: shown(path),
            mode,
        });
    }
    let pem = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
    CheckpointKey::from_pem(&pem).map_err(|e| unreadable(e.to_string()))
}

/// Writes the new key to a private temporary file beside `path`, then links it into place: the
/// key file appears whole or not at all (a failed write leaves no empty key to refuse at every
/// later start, and a second replica on this host never reads half a key), and never over a
/// file that appeared meanwhile.
fn create(path: &Path) -> Result<CheckpointKey, KeyFileError> {
    let uncreatable = |cause: String| KeyFileError::Uncreatable {
        path: shown(path),
        cause,
    };
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| uncreatable(format!("no system randomness: {e}")))?;
    let key = CheckpointKey::from_secret(&secret);
    let pem = key.to_pem().map_err(|e| uncreatable(e.to_string()))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".new-{}", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()?;
        std::fs::hard_link(&temporary, path)
    })();
    let _ = std::fs::remove_file(&temporary);
    written.map_err(|e| uncreatable(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_created_owner_only_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.pem");
        let (key, created) = load_or_create_signing_key(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = load_or_create_signing_key(&path).unwrap();
        assert!(!created);
        assert_eq!(again.key_id(), key.key_id());
    }

    #[test]
    fn a_key_others_could_read_or_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.pem");
        load_or_create_signing_key(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = load_or_create_signing_key(&path).unwrap_err();
            assert!(
                matches!(error, KeyFileError::TooOpen { mode: m, .. } if m == mode),
                "{mode:o}: {error}"
            );
            assert!(error.to_string().contains("chmod 600"));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_or_create_signing_key(&path).is_ok());

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a key").unwrap();
        std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create_signing_key(&garbage),
            Err(KeyFileError::Unreadable { .. })
        ));
        // A directory where the file should be.
        assert!(matches!(
            load_or_create_signing_key(dir.path()),
            Err(KeyFileError::Unreadable { .. })
        ));
        // A folder that does not exist.
        assert!(matches!(
            load_or_create_signing_key(&dir.path().join("missing/audit.pem")),
            Err(KeyFileError::Uncreatable { .. })
        ));
    }

    #[test]
    fn a_key_made_by_openssl_is_read() {
        let Ok(output) = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519"])
            .output()
        else {
            eprintln!("SKIPPED: openssl is not installed");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openssl.pem");
        std::fs::write(&path, &output.stdout).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_signing_key(&path).is_ok());
    }
}
