//! The kernel's CPU list format (`0-7,16-23`), kept exactly: squashing it into `0-23` would
//! claim CPUs that are not online.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A sorted set of CPU numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuList(Vec<u32>);

/// Lists longer than this are refused: no machine has a million CPUs.
const MAX_CPUS: u32 = 1 << 20;

impl CpuList {
    /// Parses `0-7,16-23`, `0,2,4` or `5`; whitespace around the text is ignored.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let mut cpus = Vec::new();
        if text.is_empty() {
            return Some(Self(cpus));
        }
        for part in text.split(',') {
            let (lo, hi): (u32, u32) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
                None => {
                    let n = part.trim().parse().ok()?;
                    (n, n)
                }
            };
            if lo > hi || hi >= MAX_CPUS {
                return None;
            }
            cpus.extend(lo..=hi);
        }
        cpus.sort_unstable();
        cpus.dedup();
        Some(Self(cpus))
    }

    pub fn from_cpus(mut cpus: Vec<u32>) -> Self {
        cpus.sort_unstable();
        cpus.dedup();
        Self(cpus)
    }

    pub fn cpus(&self) -> &[u32] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The kernel's compact form: runs of two or more become `a-b`.
impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_ranges_are_not_squashed() {
        let list = CpuList::parse("0-7,16-23\n").expect("valid list");
        assert_eq!(list.len(), 16);
        assert_eq!(list.to_string(), "0-7,16-23");
    }

    #[test]
    fn singles_and_runs_round_trip() {
        for text in ["0-1", "0,2,4", "5", "0-3,5,7-9"] {
            let list = CpuList::parse(text).expect("valid list");
            assert_eq!(list.to_string(), text);
        }
        assert_eq!(CpuList::parse("").map(|l| l.len()), Some(0));
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in ["7-0", "a", "0-", "1,,2", "0-99999999"] {
            assert!(CpuList::parse(bad).is_none(), "{bad}");
        }
    }
}
