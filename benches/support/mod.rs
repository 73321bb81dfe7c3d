//! What the benchmarks share: their knobs, reading the address a started `polaris server`
//! prints, and reading a process's CPU time and memory from /proc.

use std::io::{BufRead, BufReader};
use std::process::Child;

use anyhow::Context;

/// A whole-number setting from the environment, or `default`.
pub(crate) fn knob(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?}: expected a whole number")),
        Err(_) => Ok(default),
    }
}

/// Reads the child's stdout up to `polaris server listening on http://ADDR`, returns
/// `http://ADDR`, and keeps draining stdout so the server never blocks on a full pipe.
#[allow(dead_code, reason = "not every benchmark starts a server")]
pub(crate) fn listening_address(child: &mut Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .context("the server exited before listening")??;
        if let Some(rest) = line.strip_prefix("polaris server listening on ") {
            break rest
                .split_whitespace()
                .next()
                .context("no address")?
                .to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok(base)
}

/// utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
#[allow(dead_code, reason = "not every benchmark measures CPU time")]
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let after_name = stat
        .rsplit_once(')')
        .with_context(|| format!("{path}: no ')' after the name"))?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize, name: &str| -> anyhow::Result<u64> {
        fields
            .get(i)
            .with_context(|| format!("{path}: no {name}"))?
            .parse()
            .with_context(|| format!("{path}: {name} is not a number"))
    };
    Ok(field(11, "utime")? + field(12, "stime")?)
}

/// The length of a clock tick, the unit of [`cpu_ticks`], in seconds.
#[allow(dead_code, reason = "not every benchmark measures CPU time")]
pub(crate) fn tick_seconds() -> f64 {
    // getconf is part of libc-bin; 100 a second is the Linux default.
    let per_second: f64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&n: &f64| n > 0.0)
        .unwrap_or(100.0);
    1.0 / per_second
}

/// A `kB` line of /proc/PID/status (`VmRSS`, `VmHWM` …), in MB.
#[allow(dead_code, reason = "not every benchmark measures memory")]
fn status_mb(pid: u32, field: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in {path}"))?;
    Ok(kb / 1024.0)
}

/// The process's resident memory now (`VmRSS`), in MB.
#[allow(dead_code, reason = "not every benchmark measures memory")]
pub(crate) fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    status_mb(pid, "VmRSS")
}

/// The most resident memory the process has had (`VmHWM`), in MB.
#[allow(dead_code, reason = "not every benchmark measures memory")]
pub(crate) fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    status_mb(pid, "VmHWM")
}
