//! The built-in relay's side of the API: a miner's SSH public key (`POST
//! /miners/{id}/relay_key`, with the miner's token), which the relay lets log in, and the
//! admin's view of who holds which relay port (`GET /relay/sessions`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::validate::{FieldError, Validate, fail};

/// Longest public key line accepted (an RSA-16384 key is ~2.8 KB).
const MAX_KEY: usize = 8 * 1024;

/// Body of `POST /miners/{id}/relay_key`: the key the miner's tunnel logs in to the built-in
/// relay with. A new key replaces the old one (rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelayKey {
    /// One OpenSSH public key line, `ssh-ed25519 AAAA… comment`.
    #[schema(
        max_length = 8192,
        pattern = r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,2}( [ -~]*)?$"
    )]
    pub public_key: String,
}

impl RelayKey {
    /// The key, parsed (comment dropped).
    pub fn parsed(&self) -> Result<russh::keys::PublicKey, FieldError> {
        if self.public_key.len() > MAX_KEY {
            return Err(fail(
                "public_key",
                format!("must be at most {MAX_KEY} bytes"),
            ));
        }
        russh::keys::PublicKey::from_openssh(self.public_key.trim()).map_err(|_| {
            fail(
                "public_key",
                "expected one OpenSSH public key line, like `ssh-ed25519 AAAA… comment`",
            )
        })
    }
}

impl Validate for RelayKey {
    fn validate(&self) -> Result<(), FieldError> {
        self.parsed().map(|_| ())
    }
}

/// One miner's session on the built-in relay, as `GET /relay/sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelaySession {
    pub miner_id: String,
    /// The relay port that leads to this miner's SSH server.
    pub port: u16,
    /// Where the miner's tunnel connects from.
    pub peer: String,
    pub connected_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_openssh_public_key_line_is_a_relay_key() {
        use russh::keys::ssh_key::private::{Ed25519Keypair, PrivateKey};
        let private = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
        let good = format!(
            "{} polaris@miner",
            private.public_key().to_openssh().expect("encodes")
        );
        let key = RelayKey { public_key: good };
        assert!(key.validate().is_ok(), "{:?}", key.validate());
        for bad in ["", "ssh-ed25519", "ssh-ed25519 notbase64", "hello world"] {
            let key = RelayKey {
                public_key: bad.to_owned(),
            };
            assert!(key.validate().is_err(), "{bad:?}");
        }
        let huge = RelayKey {
            public_key: format!("ssh-rsa {}", "A".repeat(MAX_KEY)),
        };
        assert!(huge.validate().is_err());
    }
}
