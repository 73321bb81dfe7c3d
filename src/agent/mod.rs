//! The agent's parts (issue 4, in progress): the log files it writes and how they are read.

pub mod log_files;
pub mod rotating_log;
pub mod tail;
