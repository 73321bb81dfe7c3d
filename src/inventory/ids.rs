//! Stable identities: the same machine and device get the same resource id on every run (the
//! original made a new UUID per start, so one machine looked like many).
//!
//! The machine id comes from the OS (/etc/machine-id) where there is one, else from a random
//! id created once in POLARIS_HOME. It is never sent as is: every id is a hash of it.

use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};

const OS_MACHINE_IDS: &[&str] = &["/etc/machine-id", "/var/lib/dbus/machine-id"];

/// This machine's identity; every resource id is derived from it, and it is never shown.
#[derive(Debug, Clone)]
pub struct MachineId {
    secret: String,
}

impl MachineId {
    /// Reads the OS machine id, else the one in `home`, else creates that one.
    pub fn load(home: &Path) -> anyhow::Result<Self> {
        Self::load_from(OS_MACHINE_IDS, home)
    }

    fn load_from(os_ids: &[&str], home: &Path) -> anyhow::Result<Self> {
        for path in os_ids {
            if let Some(id) = read_id(Path::new(path)) {
                return Ok(Self { secret: id });
            }
        }
        let own = home.join("machine-id");
        match std::fs::read_to_string(&own) {
            Ok(text) => {
                // Replacing a damaged id would silently change every resource id.
                let id = parse_id(&text).with_context(|| {
                    format!(
                        "{} does not hold a machine id (16 or more hex digits): restore it, or \
                         delete it to get a new one (this machine's resource ids will change)",
                        own.display()
                    )
                })?;
                return Ok(Self { secret: id });
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", own.display())),
        }
        let id = format!("{:032x}", rand::random::<u128>());
        crate::files::write_atomically(&own, format!("{id}\n").as_bytes())
            .with_context(|| format!("cannot write {}", own.display()))?;
        Ok(Self { secret: id })
    }

    #[cfg(test)]
    fn from_text(id: &str) -> Self {
        Self {
            secret: id.to_owned(),
        }
    }

    /// A short public fingerprint that groups a machine's resources.
    pub fn fingerprint(&self) -> String {
        let digest = self.digest("machine");
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The resource id of `device` (e.g. `cpu` or `gpu:GPU-…`), formatted as a UUID.
    pub fn resource_id(&self, device: &str) -> String {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.digest(&format!("resource\0{device}"))[..16]);
        // Mark it as an RFC 9562 version 8 (custom) UUID.
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }

    fn digest(&self, purpose: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"polaris\0");
        hasher.update(purpose.as_bytes());
        hasher.update(b"\0");
        hasher.update(self.secret.as_bytes());
        hasher.finalize().into()
    }
}

fn read_id(path: &Path) -> Option<String> {
    parse_id(&std::fs::read_to_string(path).ok()?)
}

fn parse_id(text: &str) -> Option<String> {
    let id = text.trim();
    (id.len() >= 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_device_and_differ_between_devices() {
        let machine = MachineId::from_text("0123456789abcdef0123456789abcdef");
        let cpu = machine.resource_id("cpu");
        assert_eq!(cpu, machine.resource_id("cpu"));
        assert_ne!(cpu, machine.resource_id("gpu:GPU-1"));
        assert_eq!(cpu.len(), 36);
        assert_eq!(&cpu[14..15], "8", "version 8 UUID: {cpu}");
        let other = MachineId::from_text("fedcba9876543210fedcba9876543210");
        assert_ne!(cpu, other.resource_id("cpu"));
        assert!(
            !cpu.contains("0123456789abcdef"),
            "the machine id is not exposed"
        );
    }

    #[test]
    fn without_an_os_id_one_is_made_once_and_a_damaged_one_is_refused() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let none = ["/nonexistent/machine-id"];
        let first = MachineId::load_from(&none, home.path())?;
        let second = MachineId::load_from(&none, home.path())?;
        assert_eq!(first.resource_id("cpu"), second.resource_id("cpu"));

        let path = home.path().join("machine-id");
        std::fs::write(&path, "garbage")?;
        let err = MachineId::load_from(&none, home.path()).expect_err("damaged id refused");
        assert!(
            format!("{err:#}").contains("does not hold a machine id"),
            "{err:#}"
        );
        assert_eq!(std::fs::read_to_string(&path)?, "garbage", "left as it was");
        Ok(())
    }

    #[test]
    fn machine_ids_must_be_long_hex() {
        assert_eq!(
            parse_id("00112233445566778899aabbccddeeff\n").as_deref(),
            Some("00112233445566778899aabbccddeeff")
        );
        for bad in [
            "not hex at all",
            "0011",
            "",
            "0011223344556677889 9aabbccddeeff",
        ] {
            assert!(parse_id(bad).is_none(), "{bad:?}");
        }
    }
}
