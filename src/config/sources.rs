//! Where a setting's raw text comes from, in order of precedence:
//! flag > process environment > `.env` (working directory, then `POLARIS_HOME`) > `polaris.toml`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::ConfigError;
use super::keys::{KEYS, Key};

/// Where a raw value was found; named in error messages so the user knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    DotEnv(PathBuf),
    Toml(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("command-line flag"),
            Origin::Env => f.write_str("environment"),
            Origin::DotEnv(path) | Origin::Toml(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A raw setting value and where it came from.
#[derive(Debug, Clone)]
pub struct Raw {
    pub value: String,
    pub origin: Origin,
}

/// Every layer that can supply a setting, already read from disk.
#[derive(Debug, Default)]
pub struct Layers {
    flags: HashMap<&'static str, String>,
    env: HashMap<String, String>,
    dotenv: Vec<(PathBuf, HashMap<String, String>)>,
    toml: Option<(PathBuf, HashMap<String, String>)>,
}

impl Layers {
    /// A layer stack with the given process environment and no files.
    pub fn from_env(env: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            env: env.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Sets a value given on the command line for the setting named by its environment name.
    pub fn set_flag(&mut self, env_name: &'static str, value: impl Into<String>) {
        self.flags.insert(env_name, value.into());
    }

    /// Reads a `.env` file if it exists; later calls have lower precedence than earlier ones.
    pub fn add_dotenv(&mut self, path: &Path) -> Result<(), ConfigError> {
        if !path.is_file() {
            return Ok(());
        }
        let dotenv_error = |source: dotenvy::Error| ConfigError::DotEnv {
            path: path.to_owned(),
            detail: dotenv_detail(path, &source),
        };
        let iter = dotenvy::from_path_iter(path).map_err(dotenv_error)?;
        let mut values = HashMap::new();
        for item in iter {
            let (key, value) = item.map_err(dotenv_error)?;
            values.insert(key, value);
        }
        self.dotenv.push((path.to_owned(), values));
        Ok(())
    }

    /// Reads `polaris.toml` if it exists. Unknown keys are an error, so a typo never goes unnoticed.
    pub fn set_toml(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let table: toml::Table =
            text.parse()
                .map_err(|source: toml::de::Error| ConfigError::Toml {
                    path: path.to_owned(),
                    detail: match source.span() {
                        Some(span) => format!(
                            "{} (line {})",
                            source.message().trim_end(),
                            line_of(&text, span.start)
                        ),
                        None => source.message().trim_end().to_owned(),
                    },
                })?;
        let mut values = HashMap::new();
        flatten(&table, "", &mut values, path)?;
        self.toml = Some((path.to_owned(), values));
        Ok(())
    }

    /// A flag given with an empty value (`--listen ''`), refused rather than taken for "not
    /// given": the user asked for something, and the default is not it.
    pub fn empty_flag(&self) -> Option<&'static str> {
        let mut empty: Vec<&'static str> = self
            .flags
            .iter()
            .filter(|(_, v)| v.trim().is_empty())
            .map(|(k, _)| *k)
            .collect();
        empty.sort_unstable();
        empty.first().copied()
    }

    /// True when the process environment sets `name` to nothing (`POLARIS_HOME=`).
    pub fn empty_in_env(&self, name: &str) -> bool {
        self.env.get(name).is_some_and(|v| v.trim().is_empty())
    }

    /// The winning raw value of a setting, if any layer has a non-empty one.
    pub fn get(&self, key: &Key) -> Option<Raw> {
        let non_empty = |v: &String| !v.trim().is_empty();
        if let Some(value) = self.flags.get(key.env).filter(|v| non_empty(v)) {
            return Some(Raw {
                value: value.clone(),
                origin: Origin::Flag,
            });
        }
        if let Some(value) = self.env.get(key.env).filter(|v| non_empty(v)) {
            return Some(Raw {
                value: value.clone(),
                origin: Origin::Env,
            });
        }
        for (path, values) in &self.dotenv {
            if let Some(value) = values.get(key.env).filter(|v| non_empty(v)) {
                return Some(Raw {
                    value: value.clone(),
                    origin: Origin::DotEnv(path.clone()),
                });
            }
        }
        let (path, values) = self.toml.as_ref()?;
        let value = values.get(key.toml).filter(|v| non_empty(v))?;
        Some(Raw {
            value: value.clone(),
            origin: Origin::Toml(path.clone()),
        })
    }
}

/// Turns `[server] listen = "..."` into `server.listen = "..."`, rejecting keys we do not know.
fn flatten(
    table: &toml::Table,
    prefix: &str,
    out: &mut HashMap<String, String>,
    path: &Path,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let text = match value {
            toml::Value::Table(inner) => {
                flatten(inner, &full, out, path)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                let value = match KEYS.iter().find(|key| key.toml == full) {
                    Some(key) => key.shown(&other.to_string()),
                    None => format!("{:?}", other.to_string()),
                };
                return Err(ConfigError::Invalid {
                    name: full,
                    value,
                    origin: Origin::Toml(path.to_owned()),
                    expected: "a string, number or boolean".into(),
                });
            }
        };
        if !KEYS.iter().any(|key| key.toml == full) {
            return Err(ConfigError::UnknownKey {
                key: full,
                path: path.to_owned(),
            });
        }
        out.insert(full, text);
    }
    Ok(())
}

/// The 1-based line number of byte `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(at)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// What went wrong in a `.env`, by line number: dotenvy's own message quotes the whole line,
/// which may be `SSH_PASSWORD=…`.
fn dotenv_detail(path: &Path, error: &dotenvy::Error) -> String {
    match error {
        dotenvy::Error::LineParse(line, index) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let number = text
                .find(line.as_str())
                .map(|at| format!("line {}", line_of(&text, at)))
                .unwrap_or_else(|| "a line".to_owned());
            format!(
                "{number} is malformed at character {} (the line is not shown: it may hold a secret)",
                index + 1
            )
        }
        dotenvy::Error::Io(err) => err.to_string(),
        dotenvy::Error::EnvVar(err) => err.to_string(),
        _ => "not a valid .env file".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys;

    #[test]
    fn flag_beats_env_beats_dotenv_beats_toml() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let dotenv = dir.path().join(".env");
        std::fs::write(&dotenv, "POLARIS_LISTEN=127.0.0.1:3\n")?;
        let toml = dir.path().join("polaris.toml");
        std::fs::write(&toml, "[server]\nlisten = \"127.0.0.1:4\"\n")?;

        let mut layers = Layers::from_env([("POLARIS_LISTEN".into(), "127.0.0.1:2".into())]);
        layers.add_dotenv(&dotenv)?;
        layers.set_toml(&toml)?;
        layers.set_flag("POLARIS_LISTEN", "127.0.0.1:1");
        let get = |l: &Layers| l.get(&keys::LISTEN).map(|raw| raw.value);
        assert_eq!(get(&layers).as_deref(), Some("127.0.0.1:1"));

        layers.flags.clear();
        assert_eq!(get(&layers).as_deref(), Some("127.0.0.1:2"));
        layers.env.clear();
        assert_eq!(get(&layers).as_deref(), Some("127.0.0.1:3"));
        layers.dotenv.clear();
        assert_eq!(get(&layers).as_deref(), Some("127.0.0.1:4"));
        Ok(())
    }

    #[test]
    fn unknown_toml_key_is_rejected_with_its_name() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let toml = dir.path().join("polaris.toml");
        std::fs::write(&toml, "[server]\nlisen = \"x\"\n")?;
        let err = Layers::default()
            .set_toml(&toml)
            .expect_err("a misspelt key must fail");
        assert!(err.to_string().contains("server.lisen"), "{err}");
        Ok(())
    }

    #[test]
    fn empty_values_count_as_unset() {
        let layers = Layers::from_env([("POLARIS_LISTEN".into(), "  ".into())]);
        assert!(layers.get(&keys::LISTEN).is_none());
    }
}
