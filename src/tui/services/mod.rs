//! What runs beside the dashboard's loop and how it reaches the app: each service publishes its
//! latest state on a `watch` (the agent link, the coordinator, the machine's load) or sends
//! events (log lines, finished jobs) on a channel. The loop `select!`s on all of them.
//!
//! The dashboard runs no agent service itself: heartbeats, compute_subnet and the local
//! coordinator live in the agent, which keeps running when the dashboard quits.

pub(crate) mod agent_link;
pub(crate) mod coordinator;
mod jobs;
pub(crate) mod log_feed;
pub(crate) mod sampler;

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

use super::action::{Job, JobResult};
use agent_link::AgentLink;
use coordinator::CoordinatorView;
use log_feed::{Feed, Source};
use sampler::{Interest, MachineUsage};

pub(crate) struct Services {
    settings: Arc<Settings>,
    pub(crate) agent: watch::Receiver<AgentLink>,
    agent_poke: Arc<Notify>,
    pub(crate) coordinator: watch::Receiver<CoordinatorView>,
    coordinator_poke: Arc<Notify>,
    pub(crate) usage: watch::Receiver<MachineUsage>,
    interest: watch::Sender<Interest>,
    pub(crate) logs: mpsc::Receiver<Feed>,
    logs_tx: mpsc::Sender<Feed>,
    feed: Option<(CancellationToken, u64)>,
    pub(crate) jobs: mpsc::UnboundedReceiver<JobResult>,
    jobs_tx: mpsc::UnboundedSender<JobResult>,
}

/// How many log events may wait for the app before the feed waits (back-pressure reaches the
/// agent's stream, never the dashboard's memory).
const LOG_QUEUE: usize = 8192;

impl Services {
    /// Starts every service; call inside the runtime.
    pub(crate) fn start(settings: Settings) -> std::io::Result<Self> {
        let settings = Arc::new(settings);
        let socket = crate::agent::control::socket_path(&settings.home);
        let (agent_tx, agent) = watch::channel(AgentLink::Connecting);
        let agent_poke = Arc::new(Notify::new());
        tokio::spawn(agent_link::run(socket, agent_tx, agent_poke.clone()));
        let url = settings
            .server_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        let (coordinator_tx, coordinator) = watch::channel(CoordinatorView::new(url.clone()));
        let coordinator_poke = Arc::new(Notify::new());
        tokio::spawn(coordinator::run(
            settings.home.clone(),
            url,
            coordinator_tx,
            coordinator_poke.clone(),
        ));
        let (usage_tx, usage) = watch::channel(MachineUsage::default());
        let (interest, interest_rx) = watch::channel(Interest::new());
        sampler::spawn(
            settings.home.clone(),
            settings.nvml_library.clone(),
            usage_tx,
            interest_rx,
        )?;
        let (logs_tx, logs) = mpsc::channel(LOG_QUEUE);
        let (jobs_tx, jobs) = mpsc::unbounded_channel();
        Ok(Self {
            settings,
            agent,
            agent_poke,
            coordinator,
            coordinator_poke,
            usage,
            interest,
            logs,
            logs_tx,
            feed: None,
            jobs,
            jobs_tx,
        })
    }

    pub(crate) fn spawn(&self, job: Job) {
        jobs::spawn(job, self.settings.clone(), self.jobs_tx.clone());
    }

    /// A sender for results of work done outside a job (the terminal hand-over).
    pub(crate) fn results(&self) -> mpsc::UnboundedSender<JobResult> {
        self.jobs_tx.clone()
    }

    pub(crate) fn poke_agent(&self) {
        self.agent_poke.notify_one();
    }

    pub(crate) fn poke_coordinator(&self) {
        self.coordinator_poke.notify_one();
    }

    pub(crate) fn measure(&self, interest: Interest) {
        self.interest.send_if_modified(|current| {
            let changed = *current != interest;
            *current = interest;
            changed
        });
    }

    /// Replaces the log feed with one following `source`, its events marked `generation`.
    pub(crate) fn follow_logs(&mut self, source: Source, generation: u64) {
        if let Some((cancel, _)) = self.feed.take() {
            cancel.cancel();
        }
        let cancel = CancellationToken::new();
        let socket = crate::agent::control::socket_path(&self.settings.home);
        tokio::spawn(log_feed::run(
            socket,
            source,
            generation,
            self.logs_tx.clone(),
            cancel.clone(),
        ));
        self.feed = Some((cancel, generation));
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        if let Some((cancel, _)) = self.feed.take() {
            cancel.cancel();
        }
    }
}
