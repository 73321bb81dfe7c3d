//! Carries out the coordinator's commands (handed over by the heartbeats) and records how each
//! ended, to be reported in the next heartbeats. A restart runs on a task of its own, so a slow
//! one never holds the heartbeats or the key commands back; key commands run one after another
//! in the order they came (an `authorize_key` then a `revoke_key` of the same key must end with
//! the key revoked).

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::commands::{Order, Reports};
use super::supervisor::{self, Phase};
use crate::api::Command;

/// Why a key command fails on a miner that did not opt in.
const KEYS_OFF: &str =
    "SSH access by key is off on this miner: it takes key commands with POLARIS_SSH_ACCESS=keys";

/// Longest a `restart` waits for compute_subnet to run again before it is reported failed.
const RESTART_LIMIT: Duration = Duration::from_secs(60);

/// What the commands act on.
#[derive(Debug, Clone)]
pub struct Targets {
    /// The supervisor of compute_subnet and its state, when POLARIS_COMPUTE_CMD is set.
    pub compute: Option<(
        mpsc::Sender<supervisor::Request>,
        watch::Receiver<supervisor::State>,
    )>,
    /// SSH access by key, when POLARIS_SSH_ACCESS=keys.
    pub ssh: Option<super::ssh_keys::KeyKeeper>,
}

/// Runs every order that arrives, until the heartbeats stop sending them.
pub async fn run(mut orders: mpsc::Receiver<Order>, targets: Targets, reports: Reports) {
    let (key_orders, mut keys_in_order) = mpsc::unbounded_channel::<Order>();
    {
        let (targets, reports) = (targets.clone(), reports.clone());
        tokio::spawn(async move {
            while let Some(order) = keys_in_order.recv().await {
                finish(order, &targets, &reports).await;
            }
        });
    }
    while let Some(order) = orders.recv().await {
        match order.command {
            Command::Restart { .. } => {
                let (targets, reports) = (targets.clone(), reports.clone());
                tokio::spawn(async move { finish(order, &targets, &reports).await });
            }
            Command::AuthorizeKey { .. } | Command::RevokeKey { .. } => {
                // The key task ends once this sender is dropped, when the heartbeats stop.
                let _ = key_orders.send(order);
            }
        }
    }
}

/// Carries out one order and records how it ended.
async fn finish(order: Order, targets: &Targets, reports: &Reports) {
    let action = order.command.action();
    let outcome = carry_out(order.command, targets).await;
    match &outcome {
        Ok(()) => tracing::info!(action, "command from the coordinator done"),
        Err(why) => tracing::warn!(action, "command from the coordinator failed: {why}"),
    }
    if let Some(id) = order.id {
        reports.end(id, outcome);
    }
}

async fn carry_out(command: Command, targets: &Targets) -> Result<(), String> {
    match command {
        Command::Restart { .. } => {
            let Some((requests, state)) = &targets.compute else {
                let why = "compute_subnet is not configured on this miner (POLARIS_COMPUTE_CMD)";
                return Err(why.to_owned());
            };
            restart(requests, state.clone()).await
        }
        Command::AuthorizeKey { .. } | Command::RevokeKey { .. } => match &targets.ssh {
            Some(keeper) => keeper.carry_out(command).await,
            None => Err(KEYS_OFF.to_owned()),
        },
    }
}

/// Restarts compute_subnet and waits until it runs again with a new process.
async fn restart(
    requests: &mpsc::Sender<supervisor::Request>,
    mut state: watch::Receiver<supervisor::State>,
) -> Result<(), String> {
    let before = state.borrow_and_update().pid;
    requests
        .send(supervisor::Request::Restart)
        .await
        .map_err(|_| "the supervisor of compute_subnet has stopped".to_owned())?;
    let running_anew =
        |s: &supervisor::State| s.phase == Phase::Running && s.pid.is_some() && s.pid != before;
    let waited = tokio::time::timeout(RESTART_LIMIT, state.wait_for(running_anew))
        .await
        .map(|ran| ran.is_ok());
    match waited {
        Ok(true) => Ok(()),
        Ok(false) => Err("the agent stopped before compute_subnet ran again".to_owned()),
        Err(_) => {
            let now = state.borrow().clone();
            let why = now
                .spawn_error
                .or_else(|| now.last_exit.map(|e| format!("it last ended with {e}")))
                .unwrap_or_else(|| "no reason known".to_owned());
            Err(format!(
                "compute_subnet did not run again within {} s: {why}",
                RESTART_LIMIT.as_secs()
            ))
        }
    }
}
