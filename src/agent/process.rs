//! Signals to our own processes and process groups, and stopping a recorded group for good.

use std::time::{Duration, Instant};

use super::pidfile::{self, PidRecord};

#[cfg(unix)]
fn pid_of(pid: u32) -> Option<rustix::process::Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
}

/// Sends `signal` to every process of the group `pid` leads.
#[cfg(unix)]
pub fn signal_group(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = pid_of(pid) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

#[cfg(unix)]
pub fn signal_process(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = pid_of(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The recorded process has ended (or its PID now names another process).
pub fn gone(record: PidRecord) -> bool {
    pidfile::start_time(record.pid) != Some(record.started)
}

/// Waits up to `limit` for the recorded process to end.
pub fn wait_gone(record: PidRecord, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !gone(record) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Stops the group the recorded process leads: SIGTERM, up to `grace` for the leader, then
/// SIGKILL to the whole group (members that ignored SIGTERM, or outlived their leader).
pub fn stop_group(record: PidRecord, grace: Duration) -> bool {
    if gone(record) {
        return true;
    }
    #[cfg(unix)]
    {
        signal_group(record.pid, rustix::process::Signal::TERM);
        wait_gone(record, grace);
        signal_group(record.pid, rustix::process::Signal::KILL);
        wait_gone(record, Duration::from_secs(5))
    }
    #[cfg(not(unix))]
    {
        let _ = grace;
        false
    }
}
