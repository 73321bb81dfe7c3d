//! The agent's parts (issue 4, in progress): its log files and how they are read, the
//! supervisor that keeps compute_subnet running, and the heartbeat sender. The daemon that
//! runs them together, the control socket and the process commands are still to come.

pub mod heartbeat;
pub mod log_files;
pub mod rotating_log;
pub mod supervisor;
pub mod tail;
