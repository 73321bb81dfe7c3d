//! How a coordinator sharing its store learns of miners another coordinator registered: a
//! request with a token, or naming a miner, that this coordinator's registry does not know is
//! looked up in the store once before the route runs. Registration commits before it answers,
//! so a miner registered anywhere is known everywhere at its first request.
//!
//! Unknown tokens and ids cost a store read each, so they are remembered for a moment (a
//! negative cache), ids are looked up only for callers with a known token, and lookups are
//! capped per second: a client spraying made-up tokens cannot turn into a flood of reads. Past
//! the cap, the request goes on as unknown (401 or 404).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::auth::Bearer;
use super::error::ApiError;
use super::registry::{Registry, TokenOwner};
use super::state::AppState;
use crate::store::Store;

/// How long a token or id the store did not have is not looked up again: longer than two ticks
/// of the coordinators' news, so an id named there is asked for once, not every tick. A miner
/// registered since is unaffected: nobody could name it before it existed.
const REMEMBER_MISSES_FOR: Duration = Duration::from_secs(15);
/// Most store lookups a second.
const LOOKUPS_PER_SECOND: u32 = 200;
/// Most misses remembered (beyond it, the oldest second's are forgotten).
const MAX_MISSES: usize = 10_000;

/// What was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Token([u8; 32]),
    Id(String),
}

/// The store lookups of unknown miners, rate-capped and with their misses remembered.
#[derive(Debug)]
pub struct Learner {
    store: Arc<dyn Store>,
    inner: Mutex<Misses>,
}

#[derive(Debug)]
struct Misses {
    until: HashMap<Key, Instant>,
    second_started: Instant,
    lookups_this_second: u32,
}

impl Learner {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            inner: Mutex::new(Misses {
                until: HashMap::new(),
                second_started: Instant::now(),
                lookups_this_second: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Misses> {
        // Every critical section leaves the map consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether `key` may be looked up now (not a recent miss, and under the cap).
    fn may_look_up(&self, key: &Key, now: Instant) -> bool {
        let mut misses = self.lock();
        if misses.until.get(key).is_some_and(|&until| now < until) {
            return false;
        }
        if now.duration_since(misses.second_started) >= Duration::from_secs(1) {
            misses.second_started = now;
            misses.lookups_this_second = 0;
        }
        if misses.lookups_this_second >= LOOKUPS_PER_SECOND {
            return false;
        }
        misses.lookups_this_second += 1;
        true
    }

    fn missed(&self, key: Key, now: Instant) {
        let mut misses = self.lock();
        if misses.until.len() >= MAX_MISSES {
            misses.until.retain(|_, until| now < *until);
        }
        if misses.until.len() < MAX_MISSES {
            misses.until.insert(key, now + REMEMBER_MISSES_FOR);
        }
    }

    /// Looks `key` up in the store and adds what it finds to `registry`. Returns false when it
    /// was not asked, for the cap on lookups a second.
    async fn learn(&self, registry: &Registry, key: Key) -> bool {
        let now = Instant::now();
        if self
            .lock()
            .until
            .get(&key)
            .is_some_and(|&until| now < until)
        {
            return true;
        }
        if !self.may_look_up(&key, now) {
            return false;
        }
        let found = match &key {
            Key::Token(hash) => self.store.summary_by_token(hash).await,
            Key::Id(id) => self.store.summary(id).await,
        };
        match found {
            Ok(Some(summary)) => {
                tracing::info!(miner_id = %summary.id, "miner registered by another coordinator learned from the store");
                registry.learn(summary, Instant::now());
            }
            Ok(None) => self.missed(key, now),
            // The route answers as for an unknown miner; the next request tries again.
            Err(err) => tracing::warn!(error = %err, "cannot look a miner up in the store"),
        }
        true
    }

    /// Looks up a miner by id (a route that names one, or another coordinator's news).
    pub async fn learn_id(&self, registry: &Registry, id: &str) {
        if !registry.contains(id) {
            self.learn(registry, Key::Id(id.to_owned())).await;
        }
    }
}

/// Middleware for coordinators sharing the store: learns the token's miner and the miner the
/// path names, when the registry does not know them, before the route runs.
pub(super) async fn unknown_miners(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(learner) = state.learner.as_ref() else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    // A malformed header is the route's to refuse; only a well-formed unknown token is learned.
    let mut known_caller = false;
    if let Ok(Bearer(hash)) = Bearer::from_request_parts(&mut parts, &()).await {
        if !state.is_admin(&hash)
            && state.registry.token_owner(&hash) == TokenOwner::Unknown
            && !learner.learn(&state.registry, Key::Token(hash)).await
        {
            // Past the cap a real miner's token would read as unknown, and its agent would
            // tell the operator to register again: ask it to come back instead.
            return ApiError::RateLimited {
                detail: "this coordinator is looking up many miners it does not know yet; try again in a second".into(),
                retry_after: Duration::from_secs(1),
            }
            .into_response();
        }
        known_caller =
            state.is_admin(&hash) || state.registry.token_owner(&hash) != TokenOwner::Unknown;
    }
    // Only for a caller with a token this coordinator knows: an anonymous client naming made-up
    // miners must not spend the lookups real miners need.
    if known_caller
        && let Ok(params) = RawPathParams::from_request_parts(&mut parts, &state).await
        && let Some((_, id)) = params.iter().find(|(name, _)| *name == "id")
    {
        learner.learn_id(&state.registry, id).await;
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{NewMiner, Write};

    #[tokio::test]
    async fn a_miner_another_coordinator_registered_is_learned_and_a_miss_is_remembered()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteStore::open(&dir.path().join("p.db"))?);
        let learner = Learner::new(Arc::clone(&store) as Arc<dyn Store>);
        let registry = Registry::new(
            Duration::from_secs(45),
            super::super::registry::Sampling::EVERY_MINUTE,
            Vec::new(),
            Instant::now(),
        );
        learner.learn_id(&registry, "elsewhere").await;
        assert!(!registry.contains("elsewhere"));
        // Registered now (by "another coordinator"): the miss is remembered for a moment…
        store
            .apply(
                vec![Write::Register(Box::new(NewMiner {
                    id: "elsewhere".into(),
                    name: "n".into(),
                    location: None,
                    description: None,
                    registration_type: None,
                    compute_resources: Vec::new(),
                    token_hash: [9; 32],
                    at: chrono::Utc::now(),
                }))]
                .into(),
            )
            .await?;
        learner.learn_id(&registry, "elsewhere").await;
        assert!(
            !registry.contains("elsewhere"),
            "a recent miss is not asked again"
        );
        // …while its token, never asked for, is found at once.
        learner.learn(&registry, Key::Token([9; 32])).await;
        assert_eq!(
            registry.token_owner(&[9; 32]),
            TokenOwner::Miner("elsewhere".into())
        );
        Ok(())
    }

    #[test]
    fn lookups_are_capped_per_second() {
        let dir = tempfile::tempdir().ok();
        let Some(store) = dir
            .as_ref()
            .and_then(|d| SqliteStore::open(&d.path().join("p.db")).ok())
        else {
            panic!("cannot open a test database");
        };
        let learner = Learner::new(Arc::new(store));
        let now = Instant::now();
        let allowed = (0..LOOKUPS_PER_SECOND + 50)
            .filter(|i| learner.may_look_up(&Key::Id(format!("m{i}")), now))
            .count();
        assert_eq!(allowed, LOOKUPS_PER_SECOND as usize);
        assert!(learner.may_look_up(&Key::Id("next".into()), now + Duration::from_secs(1)));
    }
}
