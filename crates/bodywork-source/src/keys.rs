//! Private SSH keys given as text (the `ssh-github-private-key` secret, the
//! `BODYWORK_GITHUB_SSH_PRIVATE_KEY` variable of a pod) written to a file
//! git's ssh can read: readable by the user only, ending in a newline
//! (OpenSSH refuses a key without one), removed when dropped.
//!
//! Host keys: a host seen for the first time is accepted and remembered in
//! `~/.ssh/known_hosts` (`StrictHostKeyChecking=accept-new`, trust on first
//! use); a host whose key has *changed* since is refused. Never `no`.
//!
//! Must not: log or display the key.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The secret a namespace keeps its deploy key in.
pub const SSH_KEY_SECRET: &str = "ssh-github-private-key";
/// Its key, and the environment variable a pod gets it as.
pub const SSH_KEY_VAR: &str = "BODYWORK_GITHUB_SSH_PRIVATE_KEY";
/// Bodywork 3's name for the deploy key's secret in a namespace (copied
/// there from the secrets group's `GROUP-ssh-git-private-key`).
pub const GIT_SSH_KEY_SECRET: &str = "ssh-git-private-key";
/// Its key, and the environment variable a pod gets it as (Bodywork 3).
pub const GIT_SSH_KEY_VAR: &str = "BODYWORK_GIT_SSH_PRIVATE_KEY";

/// A private key written to a file for one fetch (or one run); the file is
/// removed when this is dropped.
#[derive(Debug)]
pub struct KeyFile {
    path: tempfile::TempPath,
}

impl KeyFile {
    /// Write `key` to a new file in `dir` (created if need be), mode 0600.
    pub fn write(dir: &Path, key: &str) -> std::io::Result<KeyFile> {
        std::fs::create_dir_all(dir)?;
        let mut file = tempfile::Builder::new()
            .prefix("ssh-key-")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)?;
        file.write_all(key.trim_end().as_bytes())?;
        file.write_all(b"\n")?;
        Ok(KeyFile {
            path: file.into_temp_path(),
        })
    }

    /// Where the key is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The key in `SSH_KEY_VAR` of this process (a pod's), else in Bodywork
/// 3's `GIT_SSH_KEY_VAR`, when set.
pub fn key_from_env() -> Option<String> {
    key_and_secret_from_env().map(|(_, key)| key)
}

/// The secret of the key [`key_from_env`] finds: the one a pod gets its
/// variable from (`SSH_KEY_SECRET`, `GIT_SSH_KEY_SECRET`).
pub fn key_secret_from_env() -> Option<&'static str> {
    key_and_secret_from_env().map(|(secret, _)| secret)
}

fn key_and_secret_from_env() -> Option<(&'static str, String)> {
    [
        (SSH_KEY_SECRET, SSH_KEY_VAR),
        (GIT_SSH_KEY_SECRET, GIT_SSH_KEY_VAR),
    ]
    .into_iter()
    .filter_map(|(secret, var)| Some((secret, std::env::var(var).ok()?)))
    .find(|(_, key)| !key.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_file_is_private_ends_in_a_newline_and_goes_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = {
            let key = KeyFile::write(dir.path(), "-----BEGIN KEY-----\nabc\n-----END KEY-----")
                .expect("written");
            let meta = std::fs::metadata(key.path()).expect("exists");
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            let text = std::fs::read_to_string(key.path()).expect("read");
            assert!(text.ends_with("-----END KEY-----\n"), "{text:?}");
            key.path().to_path_buf()
        };
        assert!(!path.exists(), "removed when dropped");
    }
}
