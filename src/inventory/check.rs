//! Self-test gates before listing, after vast.ai's `self-test machine` (peers.md §E): each
//! gate passes or fails with the numbers that decided it.

use serde::Serialize;

use super::Inventory;
use super::units::human;

/// Free space the data disk needs: room for images, datasets and checkpoints.
pub const MIN_FREE_BYTES: u64 = 100 << 30;
pub const CPUS_PER_GPU: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
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
    let ram = inventory.memory.total_bytes;
    Gate {
        name: "RAM ≥ total VRAM",
        passed: ram >= vram,
        detail: format!("{} of RAM for {} of VRAM", human(ram), human(vram)),
    }
}

fn cpus_per_gpu(inventory: &Inventory) -> Gate {
    let gpus = inventory.gpus.gpus.len();
    let cpus = inventory.cpu.online.len();
    Gate {
        name: "≥ 2 CPU cores per GPU",
        passed: cpus >= CPUS_PER_GPU * gpus,
        detail: format!(
            "{cpus} online CPUs for {gpus} GPU{}",
            if gpus == 1 { "" } else { "s" }
        ),
    }
}

fn free_space(inventory: &Inventory) -> Gate {
    let minimum = human(MIN_FREE_BYTES);
    match &inventory.storage.data_dir {
        Some(data) => Gate {
            name: "≥ 100 GiB free on the data disk",
            passed: data.available_bytes >= MIN_FREE_BYTES,
            detail: format!(
                "{} free where {} is (needs {minimum})",
                human(data.available_bytes),
                data.path.display()
            ),
        },
        None => Gate {
            name: "≥ 100 GiB free on the data disk",
            passed: false,
            detail: "cannot read the free space of POLARIS_HOME's filesystem".to_owned(),
        },
    }
}

fn ssh_listening(inventory: &Inventory) -> Gate {
    let ssh = &inventory.ssh;
    let detail = match (&ssh.banner, ssh.listening) {
        (Some(banner), _) if ssh.is_ssh() => format!("port {} answers {banner}", ssh.port),
        (_, true) => format!(
            "port {} accepts connections but does not speak SSH: check SSH_PORT",
            ssh.port
        ),
        (_, false) => format!(
            "nothing listens on 127.0.0.1:{}: start sshd or set SSH_PORT",
            ssh.port
        ),
    };
    Gate {
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
        (None, None) => format!("{} did not answer", inventory.server_url),
    };
    Gate {
        name: "coordinator reachable",
        passed: probe.reachable,
        detail,
    }
}
