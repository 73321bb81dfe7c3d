//! Bearer tokens: miners get one at registration, admins use the admin token. Only SHA-256
//! hashes are kept; the tokens carry 256 random bits, so a fast hash is enough.

use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// A new random token: 64 hex digits.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality that takes the same time wherever the first difference is.
pub fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The hash of the `Authorization: Bearer` token of a request. A missing or malformed header is
/// rejected with 401 before the handler runs.
#[derive(Debug, Clone, Copy)]
pub struct Bearer(pub [u8; 32]);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing Authorization: Bearer <token> header",
            ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                // The scheme name is case-insensitive (RFC 9110 §11.1).
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ))?;
        Ok(Bearer(hash_token(token)))
    }
}

/// An absent header is `None` (anonymous); a malformed one is still a 401.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if parts.headers.contains_key(AUTHORIZATION) {
            <Self as FromRequestParts<S>>::from_request_parts(parts, state)
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Where the generated admin token is kept.
pub fn admin_token_path(home: &Path) -> PathBuf {
    home.join("admin_token")
}

/// The admin token a coordinator keeps in `POLARIS_HOME/admin_token`, if there is one (for the
/// admin commands run on the coordinator's machine). Refused, like the coordinator refuses it,
/// when others can read it.
pub fn read_admin_token(home: &Path) -> anyhow::Result<Option<String>> {
    let path = admin_token_path(home);
    refuse_if_others_can_read(&path)?;
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 16 => Ok(Some(text.trim().to_owned())),
        Ok(_) => anyhow::bail!(
            "{} holds no usable admin token (at least 16 characters): delete it to get a new one",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The admin token from the settings, else from `POLARIS_HOME/admin_token`, else a new one
/// written there (mode 0600). Returns the token and, when it was just created, its path.
pub fn load_or_create_admin_token(
    configured: Option<&str>,
    home: &Path,
) -> anyhow::Result<(String, Option<PathBuf>)> {
    if let Some(token) = configured {
        return Ok((token.to_owned(), None));
    }
    if let Some(token) = read_admin_token(home)? {
        return Ok((token, None));
    }
    let path = admin_token_path(home);
    let token = generate_token();
    write_private(&path, &format!("{token}\n"))
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    Ok((token, Some(path)))
}

/// A token file that others can read is refused, as OpenSSH refuses such a key: the token is
/// the fleet's master key, and a copy may already have been read.
fn refuse_if_others_can_read(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        anyhow::ensure!(
            mode & 0o077 == 0,
            "{0} can be read by others (mode {mode:03o}): run `chmod 600 {0}` (and consider a new token: delete the file)",
            path.display()
        );
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes a file only its owner can read, creating it; never replaces an existing file.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_consistently() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(same_hash(&hash_token(&a), &hash_token(&a)));
        assert!(!same_hash(&hash_token(&a), &hash_token(&b)));
    }

    #[test]
    fn admin_token_is_created_once_and_private() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (first, created) = load_or_create_admin_token(None, dir.path())?;
        assert_eq!(
            created.as_deref(),
            Some(admin_token_path(dir.path()).as_path())
        );
        let (second, created) = load_or_create_admin_token(None, dir.path())?;
        assert_eq!(first, second);
        assert!(created.is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(admin_token_path(dir.path()))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        Ok(())
    }
}
