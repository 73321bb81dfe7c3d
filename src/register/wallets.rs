//! The Bittensor wallets and Commune keys on this machine, read from the files their tools
//! write (`~/.bittensor/wallets`, `~/.commune/key`). Only public facts are read: names and ss58
//! addresses. Private key files are never opened when a public one exists, and no secret is kept.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// A wallet's hotkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hotkey {
    pub name: String,
    /// None when the hotkey file is encrypted and has no public twin.
    pub ss58: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BittensorWallet {
    pub name: String,
    pub coldkey_ss58: Option<String>,
    pub hotkeys: Vec<Hotkey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommuneKey {
    pub name: String,
    /// None when the key file is encrypted.
    pub ss58: Option<String>,
}

/// Where btcli keeps wallets.
pub fn bittensor_dir(home: &Path) -> PathBuf {
    home.join(".bittensor").join("wallets")
}

/// Where comx keeps keys.
pub fn commune_dir(home: &Path) -> PathBuf {
    home.join(".commune").join("key")
}

/// An SS58 address: base58 text of the length a 32-byte account id takes.
pub fn is_ss58(text: &str) -> bool {
    const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    (46..=48).contains(&text.len()) && text.chars().all(|c| BASE58.contains(c))
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "ss58Address")]
    ss58_address: Option<String>,
}

/// The ss58 address in a bittensor key file: JSON with `ss58Address`, or (old wallets) the bare
/// address. Encrypted files yield none.
fn ss58_in(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let address = match serde_json::from_str::<KeyFile>(&text) {
        Ok(file) => file.ss58_address?,
        Err(_) => text.trim().to_owned(),
    };
    is_ss58(&address).then_some(address)
}

fn sorted_entries(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut entries: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.file_name().into_string().ok()?, e.path()))
        })
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    entries.sort();
    Ok(entries)
}

/// Every wallet under `dir` with its hotkeys; none when the directory does not exist.
pub fn bittensor_wallets(dir: &Path) -> anyhow::Result<Vec<BittensorWallet>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut wallets = Vec::new();
    for (name, path) in sorted_entries(dir)? {
        if !path.is_dir() {
            continue;
        }
        let hotkey_dir = path.join("hotkeys");
        let mut hotkeys = Vec::new();
        if hotkey_dir.is_dir() {
            for (file, hotkey_path) in sorted_entries(&hotkey_dir)? {
                if file.ends_with("pub.txt") || !hotkey_path.is_file() {
                    continue;
                }
                // The public twin first; the key file only when there is none (old wallets).
                let public = hotkey_dir.join(format!("{file}pub.txt"));
                let ss58 = ss58_in(&public).or_else(|| ss58_in(&hotkey_path));
                hotkeys.push(Hotkey { name: file, ss58 });
            }
        }
        let coldkey_ss58 = ss58_in(&path.join("coldkeypub.txt"));
        if coldkey_ss58.is_some() || !hotkeys.is_empty() {
            wallets.push(BittensorWallet {
                name,
                coldkey_ss58,
                hotkeys,
            });
        }
    }
    Ok(wallets)
}

#[derive(Deserialize)]
struct CommuneFile {
    data: String,
    #[serde(default)]
    encrypted: bool,
}

#[derive(Deserialize)]
struct CommuneData {
    ss58_address: String,
}

/// Every key under `dir` (comx's `NAME.json`); none when the directory does not exist.
pub fn commune_keys(dir: &Path) -> anyhow::Result<Vec<CommuneKey>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    for (file, path) in sorted_entries(dir)? {
        let Some(name) = file.strip_suffix(".json") else {
            continue;
        };
        let Some(outer) = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CommuneFile>(&bytes).ok())
        else {
            continue;
        };
        let ss58 = if outer.encrypted {
            None
        } else {
            serde_json::from_str::<CommuneData>(&outer.data)
                .ok()
                .map(|d| d.ss58_address)
                .filter(|a| is_ss58(a))
        };
        keys.push(CommuneKey {
            name: name.to_owned(),
            ss58,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    /// The fixtures were made by bittensor-wallet (tests/fixtures/make-wallets.sh); the
    /// addresses here are what that tool printed into the public files.
    #[test]
    fn wallets_made_by_bittensor_wallet_are_read() -> anyhow::Result<()> {
        let wallets = bittensor_wallets(&fixtures().join("bittensor/wallets"))?;
        let names: Vec<&str> = wallets.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["backup", "miner"]);
        let miner = &wallets[1];
        let hotkeys: Vec<&str> = miner.hotkeys.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hotkeys, ["default", "second"]);
        let public: serde_json::Value = serde_json::from_slice(&std::fs::read(
            fixtures().join("bittensor/wallets/miner/coldkeypub.txt"),
        )?)?;
        assert_eq!(
            miner.coldkey_ss58.as_deref(),
            public["ss58Address"].as_str()
        );
        assert!(
            miner
                .hotkeys
                .iter()
                .all(|h| h.ss58.as_deref().is_some_and(is_ss58))
        );
        assert_ne!(miner.hotkeys[0].ss58, miner.hotkeys[1].ss58);
        Ok(())
    }

    #[test]
    fn keys_made_by_comx_are_read() -> anyhow::Result<()> {
        let keys = commune_keys(&fixtures().join("commune/key"))?;
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["miner", "spare"]);
        assert!(keys.iter().all(|k| k.ss58.as_deref().is_some_and(is_ss58)));
        Ok(())
    }

    #[test]
    fn missing_directories_mean_no_wallets_and_junk_is_skipped() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(bittensor_wallets(&dir.path().join("nope"))?.is_empty());
        assert!(commune_keys(&dir.path().join("nope"))?.is_empty());
        std::fs::write(dir.path().join("broken.json"), "{not json")?;
        std::fs::write(dir.path().join("notes.txt"), "hello")?;
        assert!(commune_keys(dir.path())?.is_empty());
        std::fs::create_dir_all(dir.path().join("empty-wallet"))?;
        assert!(bittensor_wallets(dir.path())?.is_empty());
        Ok(())
    }

    #[test]
    fn unreadable_key_files_list_the_name_without_an_address() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let hotkeys = dir.path().join("cold/hotkeys");
        std::fs::create_dir_all(&hotkeys)?;
        // An encrypted key file is not JSON with an address, and there is no public twin.
        std::fs::write(hotkeys.join("default"), b"$NACL\x00\x01 not json")?;
        let wallets = bittensor_wallets(dir.path())?;
        assert_eq!(wallets.len(), 1);
        assert_eq!(wallets[0].coldkey_ss58, None);
        assert_eq!(
            wallets[0].hotkeys,
            [Hotkey {
                name: "default".into(),
                ss58: None
            }]
        );
        let keys = dir.path().join("commune");
        std::fs::create_dir_all(&keys)?;
        std::fs::write(
            keys.join("locked.json"),
            br#"{"data": "gAAAAABl-ciphertext", "encrypted": true, "timestamp": 1}"#,
        )?;
        let keys = commune_keys(&keys)?;
        assert_eq!(
            keys,
            [CommuneKey {
                name: "locked".into(),
                ss58: None
            }]
        );
        Ok(())
    }

    #[test]
    fn ss58_shape() {
        assert!(is_ss58("5DxvopyTBNpoBdAQ7nKNqKNkkL7Map7LptJYuD4JCCXfyjbu"));
        assert!(!is_ss58("5DxvopyTBNpoBdAQ7nKNqKNkkL7Map7LptJYuD4JCCXfyj0u")); // 0 is not base58
        assert!(!is_ss58("default"));
    }
}
