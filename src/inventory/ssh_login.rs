//! What an SSH server lets a user log in with, asked the way every client starts: the key
//! exchange, then the `none` method, whose refusal lists the methods the server still allows
//! (RFC 4252 §5.2). No credential is ever sent. `polaris inventory --check` warns when
//! passwords are among them: validators log in with keys, and a password login on a port open
//! to the internet is what brute-force scanners look for.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, AuthResult};
use serde::Serialize;

/// The whole probe (connection, key exchange, the `none` request) gets this long: a port that
/// accepts and then says nothing must not hang `--check`.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(3);

/// How the server answered the `none` method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "methods", rename_all = "snake_case")]
pub enum Logins {
    /// It let the user in with no credential at all.
    Open,
    /// It refused and named what it still allows (`publickey`, `password` …), in its order.
    Methods(Vec<String>),
}

impl Logins {
    /// A password, or keyboard-interactive (how PAM usually asks for one), is allowed.
    pub fn allows_passwords(&self) -> bool {
        match self {
            Self::Open => false,
            Self::Methods(methods) => methods
                .iter()
                .any(|m| m == "password" || m == "keyboard-interactive"),
        }
    }
}

/// Accepts any host key: the probe only reads the method list and sends nothing a wrong server
/// could take, and the server is this machine's own (or the one the tunnel forwards to).
struct AnyHostKey;

impl client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Asks the SSH server at `address` which methods `user` may log in with. The error says why
/// it could not be asked (refused, no answer within [`LOGIN_TIMEOUT`], a failed handshake).
pub async fn login_methods(address: SocketAddr, user: &str) -> Result<Logins, String> {
    tokio::time::timeout(LOGIN_TIMEOUT, ask(address, user))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{address} did not finish the SSH handshake within {} s",
                LOGIN_TIMEOUT.as_secs()
            ))
        })
}

async fn ask(address: SocketAddr, user: &str) -> Result<Logins, String> {
    let config = Arc::new(client::Config {
        // Nothing is kept open: a keepalive or an idle limit would never fire.
        inactivity_timeout: None,
        ..Default::default()
    });
    let mut handle = client::connect(config, address, AnyHostKey)
        .await
        .map_err(|e| format!("the SSH handshake with {address} failed: {e}"))?;
    let answer = handle
        .authenticate_none(user)
        .await
        .map_err(|e| format!("{address} broke off the login: {e}"))?;
    // Polite, and the server's log says why we left; the answer is already in hand.
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    Ok(match answer {
        AuthResult::Success => Logins::Open,
        AuthResult::Failure {
            remaining_methods, ..
        } => Logins::Methods(
            remaining_methods
                .iter()
                .map(|m| <&'static str>::from(m).to_owned())
                .collect(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::MethodKind;

    #[test]
    fn passwords_and_keyboard_interactive_count_as_password_logins() {
        // Named as russh names what the server sent, the way `ask` does.
        let methods = |names: &[MethodKind]| {
            Logins::Methods(names.iter().map(|m| <&str>::from(m).to_owned()).collect())
        };
        assert!(!methods(&[MethodKind::PublicKey]).allows_passwords());
        assert!(methods(&[MethodKind::PublicKey, MethodKind::Password]).allows_passwords());
        assert!(methods(&[MethodKind::KeyboardInteractive]).allows_passwords());
        assert!(!Logins::Open.allows_passwords());
    }

    #[tokio::test]
    async fn a_closed_port_is_an_error_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let started = std::time::Instant::now();
        let answer = login_methods(SocketAddr::from(([127, 0, 0, 1], port)), "nobody").await;
        assert!(answer.is_err(), "{answer:?}");
        assert!(started.elapsed() < LOGIN_TIMEOUT + Duration::from_secs(1));
    }

    // Paused time jumps to the limit once nothing else can happen: no 3 s wait.
    #[tokio::test(start_paused = true)]
    async fn a_silent_port_is_given_up_on_in_time() {
        // Accepts and never speaks: the handshake would wait forever without the time limit.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let held = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(held);
        });
        let answer = login_methods(address, "nobody").await;
        let why = answer.expect_err("no answer from a silent port");
        assert!(why.contains("within 3 s"), "{why}");
    }
}
