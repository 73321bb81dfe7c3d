//! Self-test gates before listing, after vast.ai's `self-test machine` (peers.md §E): each
//! gate passes or fails with the numbers that decided it. CPU and memory gates judge what this
//! process may use, so a container is judged by its limits, not by the host's totals.

use serde::Serialize;

use super::Inventory;
use super::units::human;

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
}

pub fn evaluate(inventory: &Inventory) -> Vec<Gate> {
    vec![
        ram_covers_vram(inventory),
        cpus_per_gpu(inventory),
        free_space(inventory),
        ssh_listening(inventory),
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
    }
}

fn ssh_listening(inventory: &Inventory) -> Gate {
    let ssh = &inventory.ssh;
    let detail = match (&ssh.banner, ssh.address) {
        (Some(banner), Some(address)) if ssh.is_ssh() => {
            format!("{address} port {} answers {banner}", ssh.port)
        }
        (_, Some(address)) => format!(
            "{address} port {} accepts connections but does not speak SSH: check SSH_PORT",
            ssh.port
        ),
        (_, None) => format!(
            "nothing listens on port {} (loopback or LAN address): start sshd or set SSH_PORT",
            ssh.port
        ),
    };
    Gate {
        id: "ssh",
        name: "SSH port listening",
        passed: ssh.is_ssh(),
        detail,
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
    }
}
