//! The agent (`polaris --daemon`, started in the background by `polaris start`): the daemon
//! that runs the heartbeat sender, the supervisor of compute_subnet, the SSH tunnel keeper, the
//! control socket and, standalone, the coordinator; PID files that know their process; the
//! rotating log files and how they are read; the rules `polaris start` and `stop` follow
//! (`lifecycle`); where a systemd unit keeps its agent (`systemd`); the coordinator's commands
//! as the agent tracks (`commands`) and carries them out (`orders`); and the block of SSH_USER's
//! authorized_keys that lets validators log in (`ssh_access`, kept by `ssh_keys`).

pub mod commands;
#[cfg(test)]
mod contracts;
pub mod control;
pub mod daemon;
pub mod heartbeat;
pub mod lifecycle;
pub mod log_files;
pub mod orders;
pub mod pidfile;
pub mod process;
pub mod rotating_log;
pub mod ssh_access;
pub mod ssh_keys;
pub mod status_report;
pub mod subnet_update;
pub mod supervisor;
pub mod systemd;
pub mod tail;
pub mod tunnel;
pub mod usage;
