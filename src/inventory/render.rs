//! The readable form of the inventory: labelled lines, plus tables for GPUs and disks.

use std::fmt::Write;

use comfy_table::{Table, presets};

use super::Inventory;
use super::location::LocationSource;
use super::units::human;

const LABEL: usize = 12;

fn line(out: &mut String, label: &str, text: impl AsRef<str>) {
    let text = format!("{label:<LABEL$}{}", text.as_ref());
    let _ = writeln!(out, "{}", text.trim_end());
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| v.to_string())
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.to_vec());
    table.add_rows(rows);
    table
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!(" {}\n", l.trim_end()))
        .collect()
}

pub fn render_table(inventory: &Inventory) -> String {
    let mut out = String::new();
    machine(&mut out, inventory);
    cpu(&mut out, inventory);
    let memory = &inventory.memory;
    let limit = inventory
        .limits
        .cgroup_memory_bytes
        .filter(|&l| l < memory.total_bytes)
        .map_or_else(String::new, |l| {
            format!(" · this container may use {}", human(l))
        });
    line(
        &mut out,
        "Memory",
        format!(
            "{} total · {} available{limit}",
            human(memory.total_bytes),
            human(memory.available_bytes)
        ),
    );
    gpus(&mut out, inventory);
    disks(&mut out, inventory);
    network(&mut out, inventory);
    let ids: Vec<String> = super::resource_ids(inventory)
        .into_iter()
        .map(|(kind, id)| format!("{kind} {id}"))
        .collect();
    line(&mut out, "Resources", ids.join(" · "));
    out
}

fn machine(out: &mut String, inventory: &Inventory) {
    let mut parts = vec![or_dash(inventory.hostname.as_ref())];
    parts.extend(inventory.os.clone());
    parts.extend(inventory.kernel.as_ref().map(|k| format!("kernel {k}")));
    parts.push(format!("id {}", inventory.machine.fingerprint()));
    line(out, "Machine", parts.join(" · "));
    let source = match inventory.location.source {
        LocationSource::Setting => "from POLARIS_LOCATION",
        LocationSource::Lookup => "from a geo-IP lookup",
        LocationSource::Unknown => "lookup failed; set POLARIS_LOCATION",
    };
    line(
        out,
        "Location",
        format!("{} ({source})", inventory.location.name),
    );
}

fn cpu(out: &mut String, inventory: &Inventory) {
    let cpu = &inventory.cpu;
    let identity = [
        cpu.vendor_id.clone(),
        cpu.family.map(|f| format!("family {f}")),
        cpu.model.map(|m| format!("model {m}")),
        cpu.stepping.map(|s| format!("stepping {s}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    line(
        out,
        "CPU",
        format!(
            "{} ({identity}) · {}",
            or_dash(cpu.model_name.as_ref()),
            cpu.architecture
        ),
    );
    let plural = |n: u32, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let topology = match (cpu.sockets, cpu.cores_per_socket, cpu.threads_per_core) {
        (Some(s), Some(c), Some(t)) => format!(
            "{} × {} × {} · ",
            plural(s, "socket"),
            plural(c, "core"),
            plural(t, "thread")
        ),
        _ => String::new(),
    };
    let mhz = match (cpu.min_mhz, cpu.max_mhz) {
        (Some(min), Some(max)) => format!(" · {min:.0}–{max:.0} MHz"),
        (None, Some(max)) => format!(" · up to {max:.0} MHz"),
        _ => String::new(),
    };
    let online = cpu.online.len() as u32;
    let usable = inventory.limits.usable_cpus(online);
    let usable = if usable < online {
        format!(", {usable} usable here")
    } else {
        String::new()
    };
    line(
        out,
        "",
        format!(
            "{topology}{} CPUs, online {}{usable}{mhz}",
            cpu.total_cpus, cpu.online
        ),
    );
    if !cpu.flags.is_empty() {
        line(out, "", cpu.flags.join(" "));
    }
}

fn gpus(out: &mut String, inventory: &Inventory) {
    let report = &inventory.gpus;
    if report.gpus.is_empty() {
        line(
            out,
            "GPUs",
            format!("none — {}", or_dash(report.reason.as_ref())),
        );
        return;
    }
    line(
        out,
        "GPUs",
        format!(
            "{} NVIDIA · driver {} · CUDA {}",
            report.gpus.len(),
            or_dash(report.driver_version.as_ref()),
            or_dash(report.cuda_version.as_ref())
        ),
    );
    let rows = report
        .gpus
        .iter()
        .map(|g| {
            vec![
                g.index.to_string(),
                g.name.clone(),
                human(g.memory_total_bytes),
                or_dash(g.compute_capability.as_ref()),
                match (g.pcie_generation_max, g.pcie_width_max) {
                    (Some(gen_), Some(width)) => format!("Gen{gen_} x{width}"),
                    _ => "—".to_owned(),
                },
                or_dash(g.power_limit_watts.map(|w| format!("{w:.0} W"))),
                or_dash(g.temperature_celsius.map(|t| format!("{t} °C"))),
                or_dash(g.utilization_gpu_percent.map(|u| format!("{u} %"))),
                g.uuid.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "#", "NAME", "VRAM", "CC", "PCIE", "POWER", "TEMP", "UTIL", "UUID",
        ],
        rows,
    ));
    if let Some(reason) = &report.reason {
        line(out, "", format!("note: {reason}"));
    }
}

fn disks(out: &mut String, inventory: &Inventory) {
    let storage = &inventory.storage;
    if storage.disks.is_empty() {
        line(out, "Disks", "no physical disk visible (a container?)");
    } else {
        line(out, "Disks", "");
        let rows = storage
            .disks
            .iter()
            .map(|d| {
                let filesystems = d
                    .filesystems
                    .iter()
                    .map(|f| {
                        format!(
                            "{} {} {} free",
                            f.mount_point.display(),
                            f.fs_type,
                            human(f.available_bytes)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                vec![
                    d.name.clone(),
                    d.kind.as_str().to_owned(),
                    or_dash(d.size_bytes.map(human)),
                    or_dash(d.transport.as_ref()),
                    or_dash(d.model.as_ref()),
                    if filesystems.is_empty() {
                        "—".to_owned()
                    } else {
                        filesystems
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &["NAME", "TYPE", "SIZE", "BUS", "MODEL", "FILESYSTEMS"],
            rows,
        ));
    }
    if let Some(data) = &storage.data_dir {
        let on = data
            .disk
            .as_ref()
            .map_or_else(String::new, |d| format!(" on {d}"));
        line(
            out,
            "Data dir",
            format!(
                "{}{on} · {} free of {}",
                data.path.display(),
                human(data.available_bytes),
                human(data.total_bytes)
            ),
        );
    }
    let speed = match &inventory.disk_bench {
        Some(b) => {
            let read = match (b.read_mb_per_s, b.read_bypass) {
                (Some(read), Some(bypass)) => {
                    format!("read {read:.0} MB/s ({})", bypass.describe())
                }
                _ => "read not measured on this system".to_owned(),
            };
            format!(
                "write {:.0} MB/s · {read}, measured {}",
                b.write_mb_per_s,
                b.measured_at.format("%Y-%m-%d %H:%M UTC")
            )
        }
        None => "not measured: run `polaris inventory --bench`".to_owned(),
    };
    line(out, "Disk speed", speed);
}

fn network(out: &mut String, inventory: &Inventory) {
    let net = &inventory.network;
    let internal = match (&net.internal_ip, &net.default_interface) {
        (Some(ip), Some(name)) => format!("internal {ip} on {name}"),
        _ => "no default route".to_owned(),
    };
    let public = match (
        &inventory.coordinator.public_ip,
        &inventory.coordinator.error,
    ) {
        (Some(ip), _) => format!("public {ip} (as the coordinator sees it)"),
        (None, Some(why)) => format!("public address unknown: {why}"),
        (None, None) => "public address unknown".to_owned(),
    };
    line(out, "Network", format!("{internal} · {public}"));
    let ssh = &inventory.ssh;
    let ssh_text = match (&ssh.banner, ssh.address) {
        (Some(banner), Some(address)) if ssh.is_ssh() => {
            format!("{address} port {} answers {banner}", ssh.port)
        }
        (_, Some(address)) => format!("{address} port {} is open but does not speak SSH", ssh.port),
        _ => format!("nothing listens on port {}", ssh.port),
    };
    line(out, "SSH", ssh_text);
    for (i, interface) in net.interfaces.iter().enumerate() {
        line(
            out,
            if i == 0 { "Interfaces" } else { "" },
            format!("{:<10} {}", interface.name, interface.addresses.join(" ")),
        );
    }
}
