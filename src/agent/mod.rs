//! The agent (`polaris --daemon`, started in the background by `polaris start`): the daemon
//! that runs the heartbeat sender, the supervisor of compute_subnet, the SSH tunnel keeper, the
//! control socket and, standalone, the coordinator; PID files that know their process; the
//! rotating log files and how they are read; the rules `polaris start` and `stop` follow
//! (`lifecycle`); and where a systemd unit keeps its agent (`systemd`).

#[cfg(test)]
mod contracts;
pub mod control;
pub mod daemon;
pub mod heartbeat;
pub mod lifecycle;
pub mod log_files;
pub mod pidfile;
pub mod process;
pub mod rotating_log;
pub mod status_report;
pub mod subnet_update;
pub mod supervisor;
pub mod systemd;
pub mod tail;
pub mod tunnel;
pub mod usage;
