//! The only ways the app changes: an [`Action`] comes in (a key, a timer, a service's new
//! state, a finished job), and [`Effect`]s go out for the event loop to carry out (start a job,
//! follow another log, hand the terminal to btcli …). Tabs never reach a service directly.

use crossterm::event::{KeyEvent, MouseEvent};

use crate::agent::lifecycle::{Started, StopReport};
use crate::inventory::Inventory;
use crate::inventory::bench::{DiskBench, Phase};
use crate::register::engine::Plan;
use crate::register::record::RegistrationRecord;
use crate::register::session::Prepared;

use super::services::agent_link::AgentLink;
use super::services::coordinator::CoordinatorView;
use super::services::log_feed::{Feed, Source};
use super::services::sampler::{Interest, MachineUsage};

#[derive(Debug)]
pub(crate) enum Action {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize,
    /// The 1 s (or, while something is pending, 100 ms) timer.
    Tick,
    Agent(AgentLink),
    Coordinator(Box<CoordinatorView>),
    Usage(Box<MachineUsage>),
    Logs(Vec<Feed>),
    Job(JobResult),
    /// SIGTERM, SIGHUP or the input closing.
    Quit,
}

/// Background work the app asks for; each ends in one [`JobResult`] (some send progress first).
#[derive(Debug)]
pub(crate) enum Job {
    StartAgent,
    StopAgent,
    StartCompute,
    StopCompute,
    RestartCompute,
    UpdateSubnet,
    Bench,
    Prepare,
    Submit(Box<Plan>),
    Inventory,
}

#[derive(Debug)]
pub(crate) enum JobResult {
    AgentStarted(Result<Box<Started>, String>),
    AgentStopped(Result<StopReport, String>),
    /// A control request answered (start/stop/restart compute_subnet).
    Control(Result<String, String>),
    UpdateLine(String),
    UpdateDone(Result<String, String>),
    BenchProgress {
        phase: Phase,
        fraction: f64,
    },
    BenchDone(Result<DiskBench, String>),
    Prepared(Result<Box<Prepared>, String>),
    Submitted(Result<Box<RegistrationRecord>, String>),
    Inventory(Result<Box<Inventory>, String>),
    /// A wallet tool ran on the terminal and gave it back.
    HandedBack(Result<bool, String>),
}

/// What the event loop does for the app.
#[derive(Debug)]
pub(crate) enum Effect {
    Spawn(Job),
    /// Follow `source`; the feed's events carry `generation`.
    FollowLogs {
        source: Source,
        generation: u64,
    },
    PokeAgent,
    PokeCoordinator,
    Measure(Interest),
    SetMouse(bool),
    Suspend,
    /// Leave the screen to this command (btcli / comx), then take it back.
    HandOver(std::process::Command),
}
