//! The agent's parts (issue 4, in progress): its log files, how they are read, and the
//! supervisor that keeps compute_subnet running.

pub mod log_files;
pub mod rotating_log;
pub mod supervisor;
pub mod tail;
