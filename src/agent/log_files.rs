//! Where the agent's and compute_subnet's output goes: `POLARIS_HOME/logs/<process>_<stream>.log`
//! (the seed's `polaris_stdout.log`), each rotated at 10 MB with five files kept.

use std::path::{Path, PathBuf};

/// Whose output.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Process {
    Polaris,
    /// `compute-subnet`, or `compute_subnet` as the process is named everywhere else.
    #[value(alias = "compute_subnet")]
    ComputeSubnet,
}

impl Process {
    pub fn file_stem(self) -> &'static str {
        match self {
            Self::Polaris => "polaris",
            Self::ComputeSubnet => "compute_subnet",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn tag(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

pub fn path(logs_dir: &Path, process: Process, stream: Stream) -> PathBuf {
    logs_dir.join(format!("{}_{}.log", process.file_stem(), stream.tag()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_seed() {
        let dir = Path::new("/home/me/.polaris/logs");
        assert_eq!(
            path(dir, Process::Polaris, Stream::Stdout),
            dir.join("polaris_stdout.log")
        );
        assert_eq!(
            path(dir, Process::ComputeSubnet, Stream::Stderr),
            dir.join("compute_subnet_stderr.log")
        );
    }
}
