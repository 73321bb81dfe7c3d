//! The agent's own SSH key (ed25519, `POLARIS_HOME/keys/id_ed25519`), made once: the tunnel
//! logs in to the relay with it. Validators never get a password.

use std::path::{Path, PathBuf};

use anyhow::Context;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, PrivateKey};

pub fn path(home: &Path) -> PathBuf {
    home.join("keys").join("id_ed25519")
}

/// Creates the key if it is missing (and its `.pub` twin if only that is); returns its path and
/// whether the key was made now.
pub fn ensure(home: &Path) -> anyhow::Result<(PathBuf, bool)> {
    let comment = format!(
        "polaris@{}",
        sysinfo::System::host_name().unwrap_or_else(|_| "miner".to_owned())
    );
    let path = path(home);
    let created = ensure_at(&path, &comment)?;
    Ok((path, created))
}

/// Creates an ed25519 key at `path` (private, its directory private too) if it is missing, and
/// its `.pub` twin if only that is; true when the key was made now. The built-in relay's host
/// key is made the same way.
pub fn ensure_at(path: &Path, comment: &str) -> anyhow::Result<bool> {
    if path.exists() {
        let public_path = path.with_extension("pub");
        if !public_path.exists() {
            let key = russh::keys::load_secret_key(path, None)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let public = key
                .public_key()
                .to_openssh()
                .context("cannot encode the SSH public key")?;
            crate::files::write_atomically(&public_path, format!("{public}\n").as_bytes())
                .with_context(|| format!("cannot write {}", public_path.display()))?;
        }
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::files::create_private_dir_all(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    let seed: [u8; 32] = rand::random();
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode the SSH key")?;
    let public = key
        .public_key()
        .to_openssh()
        .context("cannot encode the SSH public key")?;
    crate::files::write_private_atomically(path, private.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    crate::files::write_atomically(
        &path.with_extension("pub"),
        format!("{public}\n").as_bytes(),
    )
    .with_context(|| format!("cannot write {}.pub", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_readable_by_openssh_tools() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let (path, created) = ensure(home.path())?;
        assert!(created);
        let first = std::fs::read(&path)?;
        let (_, again) = ensure(home.path())?;
        assert!(!again);
        assert_eq!(std::fs::read(&path)?, first, "never replaced");
        let parsed = russh::keys::load_secret_key(&path, None)?;
        assert_eq!(parsed.algorithm(), russh::keys::Algorithm::Ed25519);
        let public = std::fs::read_to_string(path.with_extension("pub"))?;
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        std::fs::remove_file(path.with_extension("pub"))?;
        ensure(home.path())?;
        assert_eq!(
            std::fs::read_to_string(path.with_extension("pub"))?,
            public,
            "remade"
        );
        Ok(())
    }
}
