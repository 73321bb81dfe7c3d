//! What the benchmarks share: their knobs and reading the address a started `polaris server`
//! prints.

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
