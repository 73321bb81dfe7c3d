//! What every [`Store`] must do, as one suite run against any `Arc<dyn Store>`: each backend's
//! tests call [`holds_for`] with a fresh, empty store (SQLite; Firestore through its emulator).
//! A store several coordinators share (Firestore) must also keep the rules of
//! [`holds_for_shared`]: compare-and-set transitions, first-status-only refreshes, and what
//! [`Peers`] promises. Rules that belong to one backend (SQLite's schema upgrades) stay in that
//! backend's own tests.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    Applied, MinerState, NewMiner, Peers, Seen, SeenDoc, StatusChange, Store, StoreError,
    StoredCommand, TransitionWrite, Write,
};
use crate::api::{Command, CommandState, HeartbeatStatus, RestartTarget, VerificationStatus};

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Runs every rule against `store`, which must be empty.
pub(crate) async fn holds_for(store: Arc<dyn Store>) -> Outcome {
    registered_miners_are_loaded_and_listed_in_pages(store.as_ref()).await?;
    a_miner_is_found_by_id_and_by_token(store.as_ref()).await?;
    a_batch_is_applied_all_or_none(store.as_ref()).await?;
    history_keeps_the_order_of_the_writes(store.as_ref()).await?;
    relay_keys_replace_each_other(store.as_ref()).await?;
    commands_follow_their_rules(store.as_ref()).await?;
    pruning_drops_only_old_metrics(store.as_ref()).await?;
    a_full_batch_fits(store.as_ref()).await?;
    Ok(())
}

/// Runs the rules of a store several coordinators share against `first` and `second`, two
/// clients of one empty store (as two coordinators would hold), and `peers`, the [`Peers`] of
/// the same store.
pub(crate) async fn holds_for_shared(
    first: Arc<dyn Store>,
    second: Arc<dyn Store>,
    peers: Arc<dyn Peers>,
) -> Outcome {
    a_stale_transition_is_superseded_and_writes_nothing(first.as_ref()).await?;
    transitions_of_one_batch_are_judged_in_order(first.as_ref()).await?;
    a_refresh_sets_only_the_first_status(first.as_ref()).await?;
    seen_documents_come_back_to_the_others_only(first.as_ref(), peers.as_ref()).await?;
    of_two_racing_transitions_exactly_one_is_recorded(first, second).await?;
    memberships_expire_and_end(peers.as_ref()).await?;
    Ok(())
}

fn miner(id: &str, at: DateTime<Utc>) -> Write {
    Write::Register(Box::new(NewMiner {
        id: id.into(),
        name: format!("name-{id}"),
        location: Some("Kampala".into()),
        description: None,
        registration_type: Some("independent".into()),
        compute_resources: Vec::new(),
        token_hash: [7; 32],
        at,
    }))
}

async fn apply(store: &dyn Store, writes: Vec<Write>) -> Result<(), StoreError> {
    let applied = store.apply(writes.into()).await?;
    assert!(
        applied.superseded.is_empty(),
        "a transition of a miner only this test writes was superseded: {applied:?}"
    );
    Ok(())
}

fn state(miner_id: &str, status: HeartbeatStatus, count: u64, at: DateTime<Utc>) -> MinerState {
    MinerState {
        miner_id: miner_id.into(),
        last_heartbeat: at,
        status,
        heartbeat_count: count,
        metrics: None,
        at,
    }
}

async fn a_miner_is_found_by_id_and_by_token(store: &dyn Store) -> Outcome {
    let at = Utc::now();
    let before = store.documents_written();
    let Write::Register(mut new) = miner("t1", at) else {
        return Err("miner() makes a registration".into());
    };
    new.token_hash = [42; 32];
    apply(store, vec![Write::Register(new)]).await?;
    apply(
        store,
        vec![Write::State(state("t1", HeartbeatStatus::Degraded, 9, at))],
    )
    .await?;
    assert!(
        store.documents_written() >= before + 2,
        "two writes were counted"
    );
    let by_id = store.summary("t1").await?.ok_or("t1 by id")?;
    assert_eq!(by_id.token_hash, [42; 32]);
    assert_eq!(by_id.current_status, Some(HeartbeatStatus::Degraded));
    assert_eq!(by_id.heartbeat_count, 9);
    let by_token = store
        .summary_by_token(&[42; 32])
        .await?
        .ok_or("t1 by token")?;
    assert_eq!(by_token.id, "t1");
    assert!(store.summary("nobody").await?.is_none());
    assert!(store.summary_by_token(&[43; 32]).await?.is_none());
    Ok(())
}

async fn registered_miners_are_loaded_and_listed_in_pages(store: &dyn Store) -> Outcome {
    let at = Utc::now();
    apply(
        store,
        vec![miner("c1", at), miner("a1", at), miner("b1", at)],
    )
    .await?;
    apply(
        store,
        vec![Write::State(state("b1", HeartbeatStatus::Online, 3, at))],
    )
    .await?;
    let mut summaries = store.load_summaries().await?;
    summaries.sort_by(|x, y| x.id.cmp(&y.id));
    let ids: Vec<_> = summaries.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a1", "b1", "c1"]);
    assert_eq!(summaries[1].heartbeat_count, 3);
    assert_eq!(summaries[1].current_status, Some(HeartbeatStatus::Online));
    assert_eq!(summaries[0].token_hash, [7; 32]);
    let first = store.miners(None, 2).await?;
    let page: Vec<_> = first.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(page, ["a1", "b1"], "ordered by id");
    let rest = store.miners(Some("b1".into()), 2).await?;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, "c1");
    let one = store.miner("b1").await?.ok_or("b1 is gone")?;
    assert_eq!(one.name, "name-b1");
    assert_eq!(one.verification, VerificationStatus::PendingVerification);
    assert!(store.miner("nobody").await?.is_none());
    Ok(())
}

async fn a_batch_is_applied_all_or_none(store: &dyn Store) -> Outcome {
    let at = Utc::now();
    // The second write names a miner that does not exist: the whole batch must be refused, for
    // good (splitting it is how the writer finds the write at fault).
    let refused = apply(
        store,
        vec![
            miner("d1", at),
            Write::Verification {
                miner_id: "nobody".into(),
                status: VerificationStatus::Verified,
                at,
            },
        ],
    )
    .await;
    let err = refused
        .err()
        .ok_or("a batch with a bad write was applied")?;
    assert!(!err.is_transient(), "{err}");
    assert!(
        store.miner("d1").await?.is_none(),
        "half a batch was applied"
    );
    Ok(())
}

async fn history_keeps_the_order_of_the_writes(store: &dyn Store) -> Outcome {
    let at = Utc::now();
    apply(store, vec![miner("h1", at)]).await?;
    let change = |old, new, reason: &str| {
        Write::Transition(Box::new(TransitionWrite {
            change: StatusChange {
                miner_id: "h1".into(),
                timestamp: at,
                old_status: old,
                new_status: new,
                reason: reason.into(),
            },
            state: state("h1", new, 1, at),
        }))
    };
    // Same timestamp each: only the order of the writes tells them apart.
    apply(
        store,
        vec![
            change(None, HeartbeatStatus::Online, "first"),
            change(
                Some(HeartbeatStatus::Online),
                HeartbeatStatus::Offline,
                "second",
            ),
        ],
    )
    .await?;
    apply(
        store,
        vec![change(
            Some(HeartbeatStatus::Offline),
            HeartbeatStatus::Online,
            "third",
        )],
    )
    .await?;
    let reasons: Vec<_> = store
        .status_history("h1")
        .await?
        .into_iter()
        .map(|c| c.reason)
        .collect();
    assert_eq!(reasons, ["first", "second", "third"]);
    Ok(())
}

async fn relay_keys_replace_each_other(store: &dyn Store) -> Outcome {
    let at = Utc::now();
    apply(store, vec![miner("r1", at)]).await?;
    let key = |miner: &str, line: &str| Write::RelayKey {
        miner_id: miner.into(),
        public_key: line.into(),
        at,
    };
    apply(store, vec![key("r1", "ssh-ed25519 AAAA1")]).await?;
    apply(store, vec![key("r1", "ssh-ed25519 AAAA2")]).await?;
    assert!(
        apply(store, vec![key("nobody", "ssh-ed25519 AAAA3")])
            .await
            .is_err(),
        "no key for a miner that does not exist"
    );
    let keys = store.relay_keys().await?;
    assert!(keys.contains(&("r1".to_owned(), "ssh-ed25519 AAAA2".to_owned())));
    assert!(!keys.iter().any(|(_, line)| line.ends_with("AAAA1")));
    Ok(())
}

fn command(id: &str, miner: &str, at: DateTime<Utc>) -> StoredCommand {
    StoredCommand {
        id: id.into(),
        miner_id: miner.into(),
        command: Command::Restart {
            target: RestartTarget::ComputeSubnet,
        },
        state: CommandState::Queued,
        reason: None,
        created_at: at,
        expires_at: at + TimeDelta::hours(1),
        delivered_at: None,
        finished_at: None,
    }
}

fn finished(id: &str, miner: &str, state: CommandState, at: DateTime<Utc>) -> Write {
    Write::CommandFinished {
        id: id.into(),
        miner_id: miner.into(),
        state,
        reason: Some(format!("{} by {miner}", state.as_str())),
        at,
    }
}

async fn commands_follow_their_rules(store: &dyn Store) -> Outcome {
    let at = Utc::now();
    apply(store, vec![miner("k1", at), miner("k2", at)]).await?;
    let queue = |id: &str, miner: &str, offset: i64| {
        Write::QueueCommand(Box::new(command(
            id,
            miner,
            at + TimeDelta::seconds(offset),
        )))
    };
    apply(
        store,
        vec![
            queue("c-a", "k1", 0),
            queue("c-b", "k1", 1),
            queue("c-c", "k1", 2),
        ],
    )
    .await?;
    assert!(
        apply(store, vec![queue("c-x", "nobody", 0)]).await.is_err(),
        "no command for a miner that does not exist"
    );
    let open: Vec<_> = store
        .open_commands()
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(open, ["c-a", "c-b", "c-c"], "oldest first");

    apply(
        store,
        vec![
            Write::CommandDelivered {
                id: "c-a".into(),
                at,
            },
            // Another miner's report changes nothing.
            finished("c-a", "k2", CommandState::Done, at),
            // An unreported command expires; the one never delivered stays expired whatever its
            // miner says later, the delivered one takes its late report.
            finished("c-b", "k1", CommandState::Expired, at),
            Write::CommandDelivered {
                id: "c-c".into(),
                at,
            },
            finished("c-c", "k1", CommandState::Expired, at),
        ],
    )
    .await?;
    apply(
        store,
        vec![
            finished("c-b", "k1", CommandState::Done, at),
            finished("c-c", "k1", CommandState::Failed, at),
        ],
    )
    .await?;
    let listed = store.commands("k1", 10).await?;
    let states: Vec<_> = listed.iter().map(|c| (c.id.as_str(), c.state)).collect();
    assert_eq!(
        states,
        [
            ("c-c", CommandState::Failed),
            ("c-b", CommandState::Expired),
            ("c-a", CommandState::Delivered),
        ],
        "newest first, each by its rule"
    );
    assert!(listed[2].delivered_at.is_some() && listed[2].finished_at.is_none());
    assert_eq!(listed[0].reason.as_deref(), Some("failed by k1"));
    assert_eq!(store.commands("k1", 1).await?.len(), 1, "the limit holds");
    assert!(store.commands("k2", 10).await?.is_empty());
    let open: Vec<_> = store
        .open_commands()
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(open, ["c-a"]);
    Ok(())
}

async fn pruning_drops_only_old_metrics(store: &dyn Store) -> Outcome {
    let now = Utc::now();
    apply(store, vec![miner("p1", now)]).await?;
    let sample = |at| Write::Metrics {
        miner_id: "p1".into(),
        at,
        status: HeartbeatStatus::Online,
        metrics: r#"{"cpu_usage": 1.0}"#.into(),
        time_since_last: None,
    };
    apply(
        store,
        vec![
            sample(now - TimeDelta::days(32)),
            sample(now - TimeDelta::days(31)),
            sample(now),
        ],
    )
    .await?;
    assert_eq!(store.prune_metrics(now - TimeDelta::days(30)).await?, 2);
    assert_eq!(store.prune_metrics(now - TimeDelta::days(30)).await?, 0);
    assert_eq!(store.prune_metrics(now + TimeDelta::seconds(1)).await?, 1);
    Ok(())
}

async fn a_full_batch_fits(store: &dyn Store) -> Outcome {
    let max = store.max_batch();
    assert!(max >= 1);
    let now = Utc::now();
    apply(store, vec![miner("f1", now)]).await?;
    let samples: Vec<Write> = (0..max)
        .map(|i| Write::Metrics {
            miner_id: "f1".into(),
            at: now - TimeDelta::days(40) + TimeDelta::milliseconds(i as i64),
            status: HeartbeatStatus::Online,
            metrics: "{}".into(),
            time_since_last: None,
        })
        .collect();
    apply(store, samples).await?;
    assert_eq!(
        store.prune_metrics(now - TimeDelta::days(30)).await?,
        max as u64
    );
    Ok(())
}

/// `at` to whole microseconds, what stores keep, so that it compares equal once read back.
fn whole_microseconds(at: DateTime<Utc>) -> Result<DateTime<Utc>, &'static str> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).ok_or("a time out of range")
}

fn transition(
    miner_id: &str,
    old: Option<HeartbeatStatus>,
    new: HeartbeatStatus,
    count: u64,
    at: DateTime<Utc>,
) -> Write {
    Write::Transition(Box::new(TransitionWrite {
        change: StatusChange {
            miner_id: miner_id.into(),
            timestamp: at,
            old_status: old,
            new_status: new,
            reason: format!("{old:?} to {new:?}"),
        },
        state: state(miner_id, new, count, at),
    }))
}

async fn a_stale_transition_is_superseded_and_writes_nothing(store: &dyn Store) -> Outcome {
    let at = Utc::now();
    apply(
        store,
        vec![
            miner("s1", at),
            Write::State(state("s1", HeartbeatStatus::Online, 4, at)),
        ],
    )
    .await?;
    // This coordinator believes s1 offline; the store says online.
    let applied = store
        .apply(
            vec![transition(
                "s1",
                Some(HeartbeatStatus::Offline),
                HeartbeatStatus::Online,
                5,
                at,
            )]
            .into(),
        )
        .await?;
    assert_eq!(applied.superseded, [0]);
    assert!(
        store.status_history("s1").await?.is_empty(),
        "no history row"
    );
    let summary = store.summary("s1").await?.ok_or("s1 is gone")?;
    assert_eq!(summary.current_status, Some(HeartbeatStatus::Online));
    assert_eq!(summary.heartbeat_count, 4, "the state is unchanged");
    Ok(())
}

async fn transitions_of_one_batch_are_judged_in_order(store: &dyn Store) -> Outcome {
    use HeartbeatStatus::{Degraded, Offline, Online};
    let at = Utc::now();
    apply(store, vec![miner("s2", at)]).await?;
    let applied = store
        .apply(
            vec![
                transition("s2", None, Online, 1, at),
                transition("s2", Some(Online), Offline, 2, at),
                // Judged against offline, which the batch reached: stale.
                transition("s2", Some(Online), Degraded, 3, at),
                transition("s2", Some(Offline), Online, 4, at),
            ]
            .into(),
        )
        .await?;
    assert_eq!(
        applied,
        Applied {
            superseded: vec![2]
        }
    );
    let history: Vec<_> = store
        .status_history("s2")
        .await?
        .into_iter()
        .map(|c| (c.old_status, c.new_status))
        .collect();
    assert_eq!(
        history,
        [
            (None, Online),
            (Some(Online), Offline),
            (Some(Offline), Online)
        ]
    );
    let summary = store.summary("s2").await?.ok_or("s2 is gone")?;
    assert_eq!(
        (summary.current_status, summary.heartbeat_count),
        (Some(Online), 4)
    );
    Ok(())
}

async fn a_refresh_sets_only_the_first_status(store: &dyn Store) -> Outcome {
    let at = whole_microseconds(Utc::now())?;
    apply(store, vec![miner("s3", at)]).await?;
    apply(
        store,
        vec![Write::State(state("s3", HeartbeatStatus::Degraded, 1, at))],
    )
    .await?;
    let first = store.summary("s3").await?.ok_or("s3 is gone")?;
    assert_eq!(first.current_status, Some(HeartbeatStatus::Degraded));
    let later = at + TimeDelta::seconds(30);
    apply(
        store,
        vec![Write::State(state(
            "s3",
            HeartbeatStatus::Offline,
            2,
            later,
        ))],
    )
    .await?;
    let summary = store.summary("s3").await?.ok_or("s3 is gone")?;
    assert_eq!(
        summary.current_status,
        Some(HeartbeatStatus::Degraded),
        "a refresh never changes a stored status"
    );
    assert_eq!(summary.heartbeat_count, 2);
    assert_eq!(summary.last_heartbeat, Some(later));
    Ok(())
}

async fn of_two_racing_transitions_exactly_one_is_recorded(
    first: Arc<dyn Store>,
    second: Arc<dyn Store>,
) -> Outcome {
    use HeartbeatStatus::{Offline, Online};
    let at = Utc::now();
    let ids: Vec<String> = (0..5).map(|i| format!("race{i}")).collect();
    let mut setup: Vec<Write> = ids.iter().map(|id| miner(id, at)).collect();
    setup.extend(ids.iter().map(|id| Write::State(state(id, Online, 1, at))));
    apply(first.as_ref(), setup).await?;
    for id in &ids {
        // Both coordinators saw the miner go silent and decide it is offline.
        let (a, b) = tokio::join!(
            first.apply(vec![transition(id, Some(Online), Offline, 1, at)].into()),
            second.apply(vec![transition(id, Some(Online), Offline, 1, at)].into()),
        );
        let superseded = [a?.superseded, b?.superseded];
        let lost = superseded.iter().filter(|s| s.as_slice() == [0]).count();
        let won = superseded.iter().filter(|s| s.is_empty()).count();
        assert_eq!((won, lost), (1, 1), "{id}: {superseded:?}");
        assert_eq!(store_history_len(second.as_ref(), id).await?, 1, "{id}");
        let summary = second.summary(id).await?.ok_or("a racer is gone")?;
        assert_eq!(summary.current_status, Some(Offline));
    }
    Ok(())
}

async fn store_history_len(store: &dyn Store, id: &str) -> Result<usize, StoreError> {
    Ok(store.status_history(id).await?.len())
}

fn seen_doc(replica: &str, part: u32, written_at: DateTime<Utc>) -> SeenDoc {
    SeenDoc {
        replica: replica.into(),
        part,
        written_at,
        miners: vec![Seen {
            miner_id: format!("seen-by-{replica}"),
            last_heartbeat: written_at,
            status: HeartbeatStatus::Online,
            heartbeats: u64::from(part) + 1,
        }],
    }
}

/// Seen documents are written through [`Store::apply`] and read through [`Peers`].
async fn seen_documents_come_back_to_the_others_only(
    store: &dyn Store,
    peers: &dyn Peers,
) -> Outcome {
    let now = whole_microseconds(Utc::now())?;
    let old = now - TimeDelta::minutes(10);
    let writes = vec![
        Write::Seen(Box::new(seen_doc("alpha", 3, now))),
        Write::Seen(Box::new(seen_doc("alpha", 4, old))),
        Write::Seen(Box::new(seen_doc("beta", 3, now))),
    ];
    apply(store, writes).await?;
    let since = now - TimeDelta::minutes(1);
    let for_beta = peers.seen_since("beta", since).await?;
    assert_eq!(
        for_beta,
        [seen_doc("alpha", 3, now)],
        "not beta's own, not older"
    );
    let for_gamma = peers.seen_since("gamma", since).await?;
    assert_eq!(
        for_gamma,
        [seen_doc("alpha", 3, now), seen_doc("beta", 3, now)]
    );
    // A newer document for the same shard replaces the older.
    let newer = now + TimeDelta::seconds(5);
    apply(
        store,
        vec![Write::Seen(Box::new(seen_doc("alpha", 3, newer)))],
    )
    .await?;
    let for_beta = peers.seen_since("beta", since).await?;
    assert_eq!(for_beta, [seen_doc("alpha", 3, newer)]);
    Ok(())
}

async fn memberships_expire_and_end(peers: &dyn Peers) -> Outcome {
    let now = whole_microseconds(Utc::now())?;
    let until = now + TimeDelta::seconds(30);
    // Renewed until the past: expired, not listed.
    peers
        .renew_membership(
            "c-gone",
            now - TimeDelta::seconds(60),
            now - TimeDelta::seconds(1),
        )
        .await?;
    peers.renew_membership("c-b", now, until).await?;
    let members = peers.renew_membership("c-a", now, until).await?;
    let names: Vec<_> = members.iter().map(|m| m.replica.as_str()).collect();
    assert_eq!(
        names,
        ["c-a", "c-b"],
        "ordered by name, the expired one left out"
    );
    assert_eq!(members[0].expires_at, until);
    peers.leave("c-b").await?;
    let members = peers.renew_membership("c-a", now, until).await?;
    let names: Vec<_> = members.iter().map(|m| m.replica.as_str()).collect();
    assert_eq!(names, ["c-a"], "c-b left");
    Ok(())
}
