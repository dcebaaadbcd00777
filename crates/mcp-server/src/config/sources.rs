//! Where values come from (the environment over the file over defaults),
//! how a refused one is reported, and the parsers of plain values.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::settings;

/// One setting: its environment variable and its key in the TOML file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Environment variable name, such as `MCP_BIND`.
    pub env: &'static str,
    /// Key in the TOML file, such as `bind`.
    pub key: &'static str,
    /// A secret: its value never appears in an error or a log.
    pub secret: bool,
}

/// Environment variables that are not settings but are ours all the same.
pub(super) const OTHER_KNOWN_ENV: &[&str] = &["MCP_CONFIG"];

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The environment.
    Env,
    /// The TOML file at this path.
    File(PathBuf),
}

/// Why the configuration cannot be used. Each renders as one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A setting's value is unusable.
    #[error("invalid setting {}: {reason}", describe(.setting, .origin, .value.as_deref()))]
    Invalid {
        /// The setting.
        setting: Setting,
        /// Where the value came from.
        origin: Origin,
        /// The value, unless the setting is secret.
        value: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// The file cannot be read or parsed.
    #[error("config file {}: {message}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, on one line.
        message: String,
    },
    /// The file has a key that is not a setting.
    #[error("config file {}: unknown setting `{key}`", .path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
}

pub(super) fn describe(setting: &Setting, origin: &Origin, value: Option<&str>) -> String {
    let shown = value.map(|v| format!("={v:?}")).unwrap_or_default();
    match origin {
        Origin::Env => format!("{}{shown} (from the environment)", setting.env),
        Origin::File(path) => format!("`{}`{shown} in {}", setting.key, path.display()),
        Origin::Default => format!("{}{shown} (default)", setting.env),
    }
}

/// The raw values, before parsing: environment over file.
pub(super) struct Sources {
    pub(super) file_path: Option<PathBuf>,
    pub(super) file: BTreeMap<String, String>,
    pub(super) env: BTreeMap<String, String>,
}

impl Sources {
    pub(super) fn get(&self, setting: &Setting) -> Option<(&str, Origin)> {
        if let Some(value) = self.env.get(setting.env) {
            return Some((value, Origin::Env));
        }
        let path = self.file_path.clone()?;
        self.file
            .get(setting.key)
            .map(|value| (value.as_str(), Origin::File(path)))
    }

    /// Parses `setting` with `parse`, or returns `default` when it is unset.
    pub(super) fn parse<T>(
        &self,
        setting: Setting,
        default: impl FnOnce() -> T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.get(&setting) {
            None => Ok(default()),
            Some((raw, origin)) => parse(raw.trim()).map_err(|reason| ConfigError::Invalid {
                setting,
                origin,
                value: (!setting.secret).then(|| raw.to_owned()),
                reason,
            }),
        }
    }
}

pub(super) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

pub(super) fn read_env(
    env: impl IntoIterator<Item = (OsString, OsString)>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut known = BTreeMap::new();
    for (name, value) in env {
        let Some(name) = name.to_str() else { continue };
        let setting = settings::ALL.iter().find(|s| s.env == name);
        match (setting, value.into_string()) {
            (Some(_), Ok(value)) => {
                known.insert(name.to_owned(), value);
            }
            (Some(setting), Err(_)) => {
                return Err(ConfigError::Invalid {
                    setting: *setting,
                    origin: Origin::Env,
                    value: None,
                    reason: "not valid UTF-8".to_owned(),
                });
            }
            (None, _) if name.starts_with("MCP_") && !OTHER_KNOWN_ENV.contains(&name) => {
                warnings.push(format!("unknown setting {name} ignored"));
            }
            (None, _) => {}
        }
    }
    Ok(known)
}

/// The values of a file's plain settings, and its `[mcp]` table (the MCP
/// policy), which is not one.
pub(super) type FileValues = (BTreeMap<String, String>, Option<toml::Value>);

pub(super) fn read_file(path: &Path) -> Result<FileValues, ConfigError> {
    let file_error = |message: String| ConfigError::File {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let message = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_owned();
        file_error(match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        })
    })?;
    let mut values = BTreeMap::new();
    let mut mcp = None;
    for (key, value) in table {
        if key == MCP_TABLE {
            mcp = Some(value);
            continue;
        }
        if !settings::ALL.iter().any(|s| s.key == key) {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key,
            });
        }
        let text = toml_scalar(&value).ok_or_else(|| {
            file_error(format!(
                "`{key}` must be a string, number, boolean or list of strings"
            ))
        })?;
        values.insert(key, text);
    }
    Ok((values, mcp))
}

/// The file's table of per-tool and per-method MCP rules.
pub(super) const MCP_TABLE: &str = "mcp";

/// A TOML value as the text an environment variable would hold.
pub(super) fn toml_scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

/// A duration such as `30s`, `500ms`, `15m`; a bare number is seconds.
pub(super) fn parse_duration(value: &str, min: Duration) -> Result<Duration, String> {
    let duration = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(value)
            .map_err(|_| "expected a duration such as 30s, 500ms or 15m".to_owned())?,
    };
    if duration < min {
        return Err(format!(
            "must be at least {}",
            humantime::format_duration(min)
        ));
    }
    Ok(duration)
}

/// A size such as `100KiB`, `1MiB` or `102400` (bytes).
pub(super) fn parse_byte_size(value: &str) -> Result<usize, String> {
    let size = value
        .parse::<bytesize::ByteSize>()
        .map_err(|_| "expected a size such as 100KiB, 1MiB or 102400".to_owned())?;
    match usize::try_from(size.as_u64()) {
        Ok(bytes) if (1..=1 << 30).contains(&bytes) => Ok(bytes),
        _ => Err("must be from 1 byte to 1GiB".to_owned()),
    }
}
