//! What a registration face does around the engine, without a terminal in it: read the saved
//! record, this machine's facts and its wallets before the first question (`prepare`), say
//! which tool makes a missing wallet or key (`Maker`), and word the SSH warning. `polaris
//! register` prints these results; the dashboard's wizard shows them. Neither copies the rules.

use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::inventory::{self, Inventory};

use super::engine::{Context, Engine, Stop};
use super::record;
use super::wallets::{self, BittensorWallet, CommuneKey};

/// Everything a face needs before asking the first question.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub inventory: Inventory,
    /// The existing record, the system information to send, the wallets and keys.
    pub context: Context,
    /// Things the user should know that do not stop registration (an unreadable wallet
    /// folder, a failed location lookup), one line each, without a "warning:" prefix.
    pub warnings: Vec<String>,
    /// Where `~/.bittensor` and `~/.commune` are looked for (empty when no home is known).
    pub user_home: PathBuf,
}

/// Why registration cannot begin.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(
        "cannot reach the coordinator at {url} ({cause}): start it with `polaris server`, or set SERVER_URL"
    )]
    CoordinatorUnreachable { url: String, cause: String },
    /// This machine's facts could not be read (a hung disk, a stopped probe).
    #[error("{0:#}")]
    Inventory(anyhow::Error),
}

/// Reads the saved record, then this machine's facts (seconds: probes, the coordinator and the
/// location service are asked), then the wallets. A damaged record is a warning: registering
/// replaces it, and [`record::save`] keeps the damaged file beside the new one.
///
/// Call it inside a runtime that is shut down with `shutdown_background` (see
/// [`inventory::collect`]): a probe stuck in the kernel must not hold the process.
pub async fn prepare(settings: &Settings) -> Result<Prepared, PrepareError> {
    let (existing, damaged) = match record::load(&settings.home) {
        Ok(existing) => (existing, None),
        Err(err) => (
            None,
            Some(format!(
                "{err:#}; registering now replaces it and keeps the damaged file as {}",
                record::damaged_copy_path(&settings.home).display()
            )),
        ),
    };
    let found = inventory::collect(settings)
        .await
        .map_err(PrepareError::Inventory)?;
    if !found.coordinator.reachable {
        return Err(PrepareError::CoordinatorUnreachable {
            url: settings.server_url.to_string(),
            cause: found
                .coordinator
                .error
                .clone()
                .unwrap_or_else(|| "no answer".to_owned()),
        });
    }
    let user_home = crate::config::user_home().unwrap_or_default();
    let (bittensor_wallets, commune_keys, mut warnings) = read_wallets(&user_home);
    warnings.splice(0..0, damaged);
    if let Some(warning) = &found.location.warning {
        warnings.push(warning.clone());
    }
    let context = Context {
        existing,
        system_info: inventory::to_system_info(&found),
        bittensor_wallets,
        commune_keys,
        ssh_access: settings.ssh.access_given.then_some(settings.ssh.access),
    };
    Ok(Prepared {
        inventory: found,
        context,
        warnings,
        user_home,
    })
}

/// The wallets and keys under `user_home`. An unreadable folder is a warning, not a failure:
/// it must not stop a Standard registration.
pub fn read_wallets(user_home: &Path) -> (Vec<BittensorWallet>, Vec<CommuneKey>, Vec<String>) {
    let mut warnings = Vec::new();
    let bittensor =
        wallets::bittensor_wallets(&wallets::bittensor_dir(user_home)).unwrap_or_else(|err| {
            warnings.push(format!("{err:#}; no Bittensor wallet can be offered"));
            Vec::new()
        });
    let commune = wallets::commune_keys(&wallets::commune_dir(user_home)).unwrap_or_else(|err| {
        warnings.push(format!("{err:#}; no Commune key can be offered"));
        Vec::new()
    });
    (bittensor, commune, warnings)
}

/// Re-reads the wallets and keys into the engine (after the user made one with a [`Maker`]).
/// Unlike [`read_wallets`], an unreadable folder is an error here: the user just asked for
/// what is in it.
pub fn reload_wallets(engine: &mut Engine, user_home: &Path) -> anyhow::Result<()> {
    engine.refresh_wallets(
        wallets::bittensor_wallets(&wallets::bittensor_dir(user_home))?,
        wallets::commune_keys(&wallets::commune_dir(user_home))?,
    );
    Ok(())
}

/// None when an SSH server answers on the configured port; otherwise what to tell the user
/// (registration goes on: the coordinator accepts the miner, validators cannot reach it yet).
pub fn ssh_warning(inventory: &Inventory) -> Option<String> {
    if inventory.ssh.is_ssh() {
        return None;
    }
    Some(format!(
        "no SSH server answers on port {}: validators cannot verify this miner until one does \
         ({}); registering anyway.",
        inventory.ssh.port,
        ssh_howto()
    ))
}

/// How to turn on an SSH server here.
fn ssh_howto() -> &'static str {
    if cfg!(target_os = "macos") {
        "turn on Remote Login: `sudo systemsetup -setremotelogin on`"
    } else if cfg!(windows) {
        "install OpenSSH Server: `Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0; Start-Service sshd`"
    } else {
        "on Debian/Ubuntu: `sudo apt-get install -y openssh-server && sudo systemctl enable --now ssh`"
    }
}

/// A wallet tool that can create what registration needs: what it makes and the arguments
/// that make one (the name comes last).
#[derive(Debug, PartialEq, Eq)]
pub struct Maker {
    pub what: &'static str,
    pub tool: &'static str,
    pub create: &'static [&'static str],
}

pub const BTCLI: Maker = Maker {
    what: "Bittensor wallet",
    tool: "btcli",
    create: &[
        "wallet",
        "create",
        "--wallet.hotkey",
        "default",
        "--wallet.name",
    ],
};

pub const COMX: Maker = Maker {
    what: "Commune key",
    tool: "comx",
    create: &["key", "create"],
};

impl Maker {
    /// Whether the tool is on PATH.
    pub fn installed(&self) -> bool {
        on_path(self.tool)
    }

    /// The command that makes a wallet or key called `name`. The tool talks to the user
    /// itself (mnemonic, password prompts), so a face runs it on a terminal it hands over.
    pub fn command(&self, name: &str) -> std::process::Command {
        let mut command = std::process::Command::new(self.tool);
        command.args(self.create).arg(name.trim());
        command
    }

    /// The command line to show a user who must run it themselves.
    pub fn hint(&self) -> String {
        format!("{} {} NAME", self.tool, self.create.join(" "))
    }
}

/// The tool that fixes a stop, and the folder it writes to; None for stops no tool fixes.
pub fn maker_for(stop: &Stop, user_home: &Path) -> Option<(&'static Maker, PathBuf)> {
    match stop {
        Stop::NoBittensorWallet => Some((&BTCLI, wallets::bittensor_dir(user_home))),
        Stop::NoCommuneKey => Some((&COMX, wallets::commune_dir(user_home))),
        Stop::KeptExisting | Stop::Declined => None,
    }
}

fn on_path(program: &str) -> bool {
    // Windows finds `btcli.exe` when asked for `btcli`.
    let names: &[String] = if cfg!(windows) {
        &[program.to_owned(), format!("{program}.exe")]
    } else {
        &[program.to_owned()]
    };
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| names.iter().any(|name| dir.join(name).is_file()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn prepare_and_its_result_can_move_to_a_task() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let settings = Settings::load(Some(home.path().to_path_buf()), &[])?;
        // Built, never polled: only its type is checked.
        let future = prepare(&settings);
        assert_send(&future);
        fn prepared_is_send<T: Send>() {}
        prepared_is_send::<Prepared>();
        Ok(())
    }

    #[test]
    fn makers_name_their_tool_and_the_folder_they_fill() {
        let home = Path::new("/home/m");
        let (maker, dir) = maker_for(&Stop::NoBittensorWallet, home).expect("btcli");
        assert_eq!(maker, &BTCLI);
        assert_eq!(dir, wallets::bittensor_dir(home));
        assert_eq!(
            maker.hint(),
            "btcli wallet create --wallet.hotkey default --wallet.name NAME"
        );
        let (maker, _) = maker_for(&Stop::NoCommuneKey, home).expect("comx");
        assert_eq!(maker.hint(), "comx key create NAME");
        let command = maker.command(" spare ");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, ["key", "create", "spare"]);
        assert_eq!(maker_for(&Stop::Declined, home), None);
    }

    #[test]
    fn an_unreadable_wallet_folder_is_a_warning() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        // A file where the folder should be cannot be listed, even by root.
        let dir = wallets::bittensor_dir(home.path());
        std::fs::create_dir_all(dir.parent().unwrap_or(home.path()))?;
        std::fs::write(&dir, "not a folder")?;
        let (bittensor, commune, warnings) = read_wallets(home.path());
        assert!(bittensor.is_empty() && commune.is_empty());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("cannot list "), "{warnings:?}");
        assert!(
            warnings[0].ends_with("; no Bittensor wallet can be offered"),
            "{warnings:?}"
        );
        Ok(())
    }
}
