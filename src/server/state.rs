//! What every request handler shares, and the rules for who may do what.

use std::sync::Arc;

use super::alerts::Alerter;
use super::auth::{Bearer, same_hash};
use super::commands::CommandBook;
use super::error::ApiError;
use super::learn::Learner;
use super::limit::RegistrationLimiter;
use super::metrics::Metrics;
use super::registry::{Credential, CredentialNews, Refusal, Registry, TokenOwner};
use super::relay::{RelayKeys, RelayView};
use super::replicas::Replica;
use crate::store::writer::StoreWriter;
use crate::store::{Store, Write};

/// The coordinator's shared state. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub registry: Registry,
    pub writer: StoreWriter,
    pub store: Arc<dyn Store>,
    pub alerter: Alerter,
    pub metrics: Arc<Metrics>,
    pub limiter: RegistrationLimiter,
    pub relay: RelayParts,
    /// Commands queued for miners and not yet reported.
    pub commands: CommandBook,
    /// How long a command waits to be reported before it expires.
    pub command_expiry: std::time::Duration,
    admin_hash: [u8; 32],
    /// `--legacy-clients`: the original's token-less requests are accepted for miners that never
    /// used their token.
    pub legacy_clients: bool,
    /// With a store other coordinators share: store lookups of miners they registered.
    pub learner: Option<Learner>,
    /// With a store other coordinators share: this coordinator among them.
    pub replica: Option<Arc<Replica>>,
}

/// What the shared state is made of, as the coordinator's start-up gathers it.
#[derive(Debug)]
pub struct Parts {
    pub registry: Registry,
    pub writer: StoreWriter,
    pub store: Arc<dyn Store>,
    pub alerter: Alerter,
    pub metrics: Arc<Metrics>,
    pub access: Access,
    pub relay: RelayParts,
    pub commands: Commands,
    /// This coordinator among those sharing the store, if it is shared.
    pub replica: Option<Arc<Replica>>,
}

/// Who gets in: the admin token's hash, and whether the original's token-less clients do.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pub admin_hash: [u8; 32],
    pub legacy_clients: bool,
}

/// The open commands as the store left them, and how long a new one waits.
#[derive(Debug)]
pub struct Commands {
    pub book: CommandBook,
    pub expiry: std::time::Duration,
}

/// What the routes know of the built-in relay.
#[derive(Debug)]
pub struct RelayParts {
    /// Miners' relay keys, kept whether or not this coordinator runs the relay.
    pub keys: Arc<RelayKeys>,
    /// The relay's sessions, when it runs.
    pub view: Option<RelayView>,
}

impl std::fmt::Debug for dyn crate::store::Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Peers")
    }
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Why a token-less request is refused for a miner that has used its token.
pub(super) const TOKEN_REQUIRED: &str =
    "this miner has used its token: send it (Authorization: Bearer <token>)";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Miner(Arc<str>),
}

impl AppState {
    pub fn new(parts: Parts) -> Self {
        let Parts {
            registry,
            writer,
            store,
            alerter,
            metrics,
            access,
            relay,
            commands,
            replica,
        } = parts;
        let learner = replica.is_some().then(|| Learner::new(Arc::clone(&store)));
        Self(Arc::new(Shared {
            registry,
            writer,
            store,
            alerter,
            metrics,
            limiter: RegistrationLimiter::default(),
            relay,
            commands: commands.book,
            command_expiry: commands.expiry,
            admin_hash: access.admin_hash,
            legacy_clients: access.legacy_clients,
            learner,
            replica,
        }))
    }

    /// The request speaks for miner `miner_id`: with that miner's token, or (with
    /// `--legacy-clients`) without any for a miner that never used its own. Records the first
    /// use of each.
    pub fn speak_for(&self, bearer: Option<&Bearer>, miner_id: &str) -> Result<(), ApiError> {
        let credential = match bearer {
            Some(bearer) => {
                self.require_miner(bearer, miner_id)?;
                Credential::Token(&bearer.0)
            }
            None if self.legacy_clients => Credential::Legacy,
            None => {
                return Err(ApiError::Unauthorized(
                    "missing Authorization: Bearer <token> header",
                ));
            }
        };
        match self.registry.admit(miner_id, credential) {
            Ok(news) => {
                self.credential_news(miner_id, news);
                Ok(())
            }
            Err(Refusal::NoSuchMiner) => Err(ApiError::no_such_miner(miner_id)),
            Err(Refusal::WrongToken) => {
                Err(ApiError::Forbidden("this token belongs to another miner"))
            }
            Err(Refusal::TokenRequired) => Err(ApiError::Unauthorized(TOKEN_REQUIRED)),
        }
    }

    /// Stores a first token use and says a first token-less one.
    pub fn credential_news(&self, miner_id: &str, news: CredentialNews) {
        if news.first_token_use {
            self.writer.send(Write::TokenUsed {
                miner_id: miner_id.to_owned(),
            });
        }
        if news.first_legacy_use {
            tracing::warn!(
                %miner_id,
                "a request without a token was accepted (--legacy-clients): this miner runs the original client; once it moves to polaris and uses its token, token-less requests for it are refused"
            );
        }
    }

    /// The token is the admin's.
    pub fn is_admin(&self, token_hash: &[u8; 32]) -> bool {
        same_hash(token_hash, &self.admin_hash)
    }

    /// Who a token belongs to; an unknown token is a 401.
    pub fn caller(&self, bearer: &Bearer) -> Result<Caller, ApiError> {
        if same_hash(&bearer.0, &self.admin_hash) {
            return Ok(Caller::Admin);
        }
        match self.registry.token_owner(&bearer.0) {
            TokenOwner::Miner(id) => Ok(Caller::Miner(id)),
            TokenOwner::Unknown => Err(ApiError::Unauthorized("unknown token")),
        }
    }

    /// Only the admin token passes.
    pub fn require_admin(&self, bearer: &Bearer) -> Result<(), ApiError> {
        match self.caller(bearer)? {
            Caller::Admin => Ok(()),
            Caller::Miner(_) => Err(ApiError::Forbidden("this route needs the admin token")),
        }
    }

    /// The admin, or the miner `miner_id` itself (401 unknown token, 404 unknown miner, 403 a
    /// token of another miner).
    pub fn require_miner_or_admin(&self, bearer: &Bearer, miner_id: &str) -> Result<(), ApiError> {
        let caller = self.caller(bearer)?;
        if !self.registry.contains(miner_id) {
            return Err(ApiError::no_such_miner(miner_id));
        }
        match caller {
            Caller::Admin => Ok(()),
            Caller::Miner(id) if &*id == miner_id => Ok(()),
            Caller::Miner(_) => Err(ApiError::Forbidden("this token belongs to another miner")),
        }
    }

    /// Some miner's own token (401 unknown, 403 the admin's): what a route whose body names
    /// the miner checks before it reads the body.
    pub fn require_a_miner(&self, bearer: &Bearer) -> Result<(), ApiError> {
        match self.caller(bearer)? {
            Caller::Admin => Err(ApiError::Forbidden(
                "use the miner's own token, not the admin token",
            )),
            Caller::Miner(_) => Ok(()),
        }
    }

    /// The miner `miner_id` itself, and nobody else (not even the admin).
    pub fn require_miner(&self, bearer: &Bearer, miner_id: &str) -> Result<(), ApiError> {
        match self.caller(bearer)? {
            Caller::Admin => Err(ApiError::Forbidden(
                "use the miner's own token, not the admin token",
            )),
            Caller::Miner(id) if &*id == miner_id => Ok(()),
            Caller::Miner(_) if !self.registry.contains(miner_id) => {
                Err(ApiError::no_such_miner(miner_id))
            }
            Caller::Miner(_) => Err(ApiError::Forbidden("this token belongs to another miner")),
        }
    }
}
