//! Self-test gates before listing, after vast.ai's `self-test machine` (peers.md §E): each
//! gate passes or fails with the numbers that decided it. CPU and memory gates judge what this
//! process may use, so a container is judged by its limits, not by the host's totals. The SSH
//! gate probes the address renters and validators are given, not merely any local port, and
//! warns when the SSH server there takes passwords.

use serde::Serialize;

use super::network::{self, SshAnswer};
use super::ssh_login::{self, Logins};
use super::units::human;
use super::{Inventory, SshAddress, advertised_ssh};
use crate::agent::tunnel;
use crate::config::Settings;

/// Free space the data disk needs: room for images, datasets and checkpoints.
pub const MIN_FREE_BYTES: u64 = 100 << 30;
pub const CPUS_PER_GPU: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    /// A stable name for scripts.
    pub id: &'static str,
    /// The gate as people read it.
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
    /// Something to fix that does not fail the gate.
    pub warning: Option<String>,
}

pub fn evaluate(inventory: &Inventory, ssh: &SshCheck) -> Vec<Gate> {
    vec![
        ram_covers_vram(inventory),
        cpus_per_gpu(inventory),
        free_space(inventory),
        ssh_gate(inventory, ssh),
        coordinator_reachable(inventory),
    ]
}

fn ram_covers_vram(inventory: &Inventory) -> Gate {
    let vram: u64 = inventory
        .gpus
        .gpus
        .iter()
        .map(|g| g.memory_total_bytes)
        .sum();
    let total = inventory.memory.total_bytes;
    let usable = inventory.limits.usable_memory(total);
    let limited = if usable < total {
        format!(" (cgroup limit; the host has {})", human(total))
    } else {
        String::new()
    };
    Gate {
        id: "ram_vs_vram",
        name: "RAM ≥ total VRAM",
        passed: usable >= vram,
        detail: format!(
            "{} of RAM{limited} for {} of VRAM",
            human(usable),
            human(vram)
        ),
        warning: None,
    }
}

fn cpus_per_gpu(inventory: &Inventory) -> Gate {
    let gpus = inventory.gpus.gpus.len() as u32;
    let online = inventory.cpu.online.len() as u32;
    let usable = inventory.limits.usable_cpus(online);
    let limited = if usable < online {
        format!(" (of {online} online)")
    } else {
        String::new()
    };
    Gate {
        id: "cpus_per_gpu",
        name: "≥ 2 CPUs (threads) per GPU",
        passed: usable >= CPUS_PER_GPU * gpus,
        detail: format!(
            "{usable} usable CPUs{limited} for {gpus} GPU{}",
            if gpus == 1 { "" } else { "s" }
        ),
        warning: None,
    }
}

fn free_space(inventory: &Inventory) -> Gate {
    let (passed, detail) = match &inventory.storage.data_dir {
        Some(data) => (
            data.available_bytes >= MIN_FREE_BYTES,
            format!(
                "{} free where {} is (needs {})",
                human(data.available_bytes),
                data.path.display(),
                human(MIN_FREE_BYTES)
            ),
        ),
        None => (
            false,
            "cannot read the free space of POLARIS_HOME's filesystem".to_owned(),
        ),
    };
    Gate {
        id: "free_space",
        name: "≥ 100 GiB free on the data disk",
        passed,
        detail,
        warning: None,
    }
}

/// Where the SSH gate looks, and why there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshTarget {
    /// The address registration sends ([`advertised_ssh`]).
    Advertised(SshAddress),
    /// POLARIS_RELAY is set: the agent's tunnel keeper advertises the relay's address instead
    /// (`advertised`, or `None` while the relay picks the port) and renters arrive at the
    /// tunnel's `target` on this machine.
    Relay {
        advertised: Option<String>,
        relay_host: String,
        target: String,
    },
    /// Registration knows no address to send.
    Unknown,
}

/// What the SSH gate found.
#[derive(Debug, Clone)]
pub struct SshCheck {
    pub target: SshTarget,
    /// What answered where the gate looked; `None` when there was nowhere to look.
    pub answer: Option<Result<SshAnswer, String>>,
    /// The account validators log in as (SSH_USER, else the current user).
    pub user: Option<String>,
    /// The logins the SSH server allows `user`; `None` when nothing speaking SSH answered or
    /// no user is known.
    pub logins: Option<Result<Logins, String>>,
}

/// The address the SSH gate probes: the relay's tunnel target when POLARIS_RELAY is set (the
/// relay's own port is up only while the agent runs, and `--check` comes before that), else
/// the address registration advertises.
pub fn ssh_target(inventory: &Inventory, settings: &Settings) -> SshTarget {
    if let Some(tunnel) = tunnel::Config::from_settings(settings) {
        return SshTarget::Relay {
            advertised: (tunnel.remote_port != 0).then(|| tunnel.advertised(tunnel.remote_port)),
            relay_host: tunnel.relay.host.clone(),
            target: tunnel.target,
        };
    }
    advertised_ssh(inventory).map_or(SshTarget::Unknown, SshTarget::Advertised)
}

/// Probes the SSH gate's target ([`ssh_target`]) and, where SSH answers, asks which logins the
/// server allows. Each step has its time limit (about 1 s to connect and read the banner,
/// [`ssh_login::LOGIN_TIMEOUT`] for the login question).
pub async fn probe_ssh(inventory: &Inventory, settings: &Settings) -> SshCheck {
    let target = ssh_target(inventory, settings);
    let answer = match &target {
        SshTarget::Advertised(address) => Some(network::probe_ssh_at(&address.host_port()).await),
        SshTarget::Relay { target, .. } => Some(network::probe_ssh_at(target).await),
        SshTarget::Unknown => None,
    };
    let user = inventory.ssh_user.clone();
    let logins = match (&answer, &user) {
        (Some(Ok(answer)), Some(user)) if answer.is_ssh() => {
            Some(ssh_login::login_methods(answer.address, user).await)
        }
        _ => None,
    };
    SshCheck {
        target,
        answer,
        user,
        logins,
    }
}

fn ssh_gate(inventory: &Inventory, check: &SshCheck) -> Gate {
    let local = &inventory.ssh;
    // Where the local probe (loopback, then the LAN address) found SSH on SSH_PORT: the context
    // of a refusal at the advertised address.
    let local_ssh = local.address.filter(|_| local.is_ssh());
    let (passed, detail) = match (&check.target, &check.answer) {
        (SshTarget::Advertised(address), Some(Ok(answer))) => match &answer.banner {
            Some(banner) if answer.is_ssh() => (
                true,
                format!("the advertised {} answers {banner}", address.host_port()),
            ),
            _ => (
                false,
                format!(
                    "the advertised {} accepts connections but does not speak SSH: check SSH_PORT",
                    address.host_port()
                ),
            ),
        },
        (SshTarget::Advertised(address), Some(Err(why))) => {
            let advertised = address.host_port();
            let hint = if inventory.ssh_host.is_some() {
                "check SSH_HOST and SSH_PORT"
            } else if inventory
                .coordinator
                .public_ip
                .map(|ip| ip.to_string())
                .as_deref()
                == Some(address.host.as_str())
            {
                // Tried from inside: a router may forward the port to us and still not loop
                // our own connection back (no hairpin NAT).
                "forward the port to this machine, or set SSH_HOST; a router without hairpin NAT \
                 refuses this from inside even when it forwards the port"
            } else {
                "make sshd listen there (ListenAddress), or set SSH_HOST"
            };
            let detail = match local_ssh {
                Some(ip) => {
                    format!("{ip} answers but the advertised {advertised} refuses: {why}; {hint}")
                }
                None => format!(
                    "nothing answers SSH at the advertised {advertised} ({why}) nor on loopback: \
                     start sshd or set SSH_PORT"
                ),
            };
            (false, detail)
        }
        (
            SshTarget::Relay {
                advertised,
                relay_host,
                target,
            },
            answer,
        ) => {
            let advertised = match advertised {
                Some(url) => format!("the agent advertises the relay's {url}"),
                None => format!("the agent advertises the relay {relay_host} at the port it picks"),
            };
            // The relay's port is open only while the agent's tunnel is up: not probed here.
            match answer {
                Some(Ok(answer)) if answer.is_ssh() => (
                    true,
                    format!(
                        "{advertised}; the tunnel forwards to {target}, which answers {} \
                         (whether the tunnel is up: `polaris status`)",
                        answer.banner.as_deref().unwrap_or("SSH")
                    ),
                ),
                Some(Ok(_)) => (
                    false,
                    format!(
                        "{advertised}; the tunnel forwards to {target}, which accepts connections \
                         but does not speak SSH: check POLARIS_TUNNEL_TARGET"
                    ),
                ),
                Some(Err(why)) => (
                    false,
                    format!(
                        "{advertised}; the tunnel forwards to {target}, which refuses: {why}; \
                         start sshd or set POLARIS_TUNNEL_TARGET"
                    ),
                ),
                None => (false, format!("{advertised}; nothing was probed")),
            }
        }
        (SshTarget::Advertised(address), None) => {
            (false, format!("{} was not probed", address.host_port()))
        }
        (SshTarget::Unknown, _) => {
            let local = local_ssh.map_or_else(String::new, |ip| {
                format!(" ({ip} port {} answers)", local.port)
            });
            (
                false,
                format!(
                    "registration knows no address to advertise{local}: no SSH_HOST, and neither \
                     a public nor a LAN address was found; set SSH_HOST"
                ),
            )
        }
    };
    Gate {
        id: "ssh",
        name: "SSH port listening",
        passed,
        detail,
        warning: login_warning(check),
    }
}

/// A warning about how the SSH server lets people in; none when it takes keys only.
fn login_warning(check: &SshCheck) -> Option<String> {
    match &check.logins {
        Some(Ok(logins)) if logins.allows_passwords() => Some(
            "sshd allows password logins: set `PasswordAuthentication no` \
             (validators log in with keys)"
                .to_owned(),
        ),
        Some(Ok(Logins::Open)) => Some(format!(
            "sshd lets {} in with no password or key: set `PermitEmptyPasswords no`",
            check.user.as_deref().unwrap_or("the SSH user")
        )),
        Some(Ok(Logins::Methods(_))) => None,
        Some(Err(why)) => Some(format!(
            "cannot tell whether sshd allows password logins: {why}"
        )),
        None => match (&check.answer, &check.user) {
            (Some(Ok(answer)), None) if answer.is_ssh() => Some(
                "cannot tell whether sshd allows password logins: no SSH user is known (set \
                 SSH_USER)"
                    .to_owned(),
            ),
            _ => None,
        },
    }
}

fn coordinator_reachable(inventory: &Inventory) -> Gate {
    let probe = &inventory.coordinator;
    let detail = match (&probe.public_ip, &probe.error) {
        (Some(ip), _) => format!("{} sees this machine as {ip}", inventory.server_url),
        (None, Some(why)) if probe.reachable => format!("answers, but {why}"),
        (None, Some(why)) => format!("{why}: check SERVER_URL"),
        (None, None) => format!("{} answers", inventory.server_url),
    };
    Gate {
        id: "coordinator",
        name: "coordinator reachable",
        passed: probe.reachable,
        detail,
        warning: None,
    }
}
