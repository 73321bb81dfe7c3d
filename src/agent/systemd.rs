//! The agent a systemd unit runs. `assets/polaris.service` gives its agent a POLARIS_HOME of its
//! own (`/var/lib/polaris`), so a plain `polaris status` in `~/.polaris` would say nothing runs;
//! `status` uses this to point at the unit's home instead.

use std::path::{Path, PathBuf};

/// Where an installed `polaris.service` is looked for, the administrator's copy first.
const UNIT_PATHS: [&str; 2] = [
    "/etc/systemd/system/polaris.service",
    "/lib/systemd/system/polaris.service",
];

/// The POLARIS_HOME that an installed unit gives its agent, when it is not `home`.
pub fn unit_home_other_than(home: &Path) -> Option<PathBuf> {
    let text = UNIT_PATHS
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())?;
    home_in_unit(&text).filter(|unit_home| unit_home != home)
}

/// The POLARIS_HOME a unit file's `Environment=` lines set (the last one wins, as in systemd).
/// Quoted assignments (`Environment="POLARIS_HOME=/srv/p" "A=b"`) are read too.
fn home_in_unit(text: &str) -> Option<PathBuf> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("Environment="))
        .flat_map(str::split_whitespace)
        .filter_map(|word| word.trim_matches('"').strip_prefix("POLARIS_HOME="))
        .rfind(|home| !home.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_unit_names_its_home() {
        let unit = include_str!("../../assets/polaris.service");
        assert_eq!(home_in_unit(unit), Some(PathBuf::from("/var/lib/polaris")));
    }

    #[test]
    fn quoted_and_repeated_assignments_are_read_as_systemd_does() {
        let unit = "[Service]\nEnvironment=\"RUST_LOG=info\" \"POLARIS_HOME=/srv/a\"\n\
                    # Environment=POLARIS_HOME=/commented\nEnvironment=POLARIS_HOME=/srv/b\n";
        assert_eq!(home_in_unit(unit), Some(PathBuf::from("/srv/b")));
        assert_eq!(
            home_in_unit("[Service]\nExecStart=/usr/local/bin/polaris --daemon\n"),
            None
        );
        assert_eq!(home_in_unit("Environment=POLARIS_HOME=\n"), None);
    }
}
