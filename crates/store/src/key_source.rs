//! Where the master key lives, decided once per process: `CLAWLINE_MASTER_KEY`, the key file
//! `<state>/credentials/master.key` (0600), or the OS keyring.
//!
//! A new state directory puts its key in the OS keyring when one is reachable
//! ([`KeyringChoice::Auto`], the default) and in the key file otherwise. A key in the keyring
//! leaves a marker, `<state>/credentials/master.key.keyring`, that holds no secret, only the
//! item's attributes: with the marker present, a keyring that cannot be reached is an error that
//! says so, never a reason to make a new key (which would orphan every stored secret). An existing
//! key file is always used as it is.
//!
//! This file must not log the key.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::crypto::{MasterKey, random_hex};
use crate::error::StoreError;
use crate::keyring::SecretService;
use crate::paths::StatePaths;

/// `CLAWLINE_KEYRING`: whether a new key may, must or must not go to the OS keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyringChoice {
    /// The keyring when one is reachable, else the key file.
    #[default]
    Auto,
    /// Always the key file.
    Off,
    /// The keyring, or fail.
    Required,
}

impl KeyringChoice {
    /// Reads the `CLAWLINE_KEYRING` value (unset or empty: `auto`).
    pub fn parse(value: Option<&str>) -> Result<KeyringChoice, StoreError> {
        match value.map(str::trim).unwrap_or_default().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(KeyringChoice::Auto),
            "off" | "0" | "false" | "no" | "file" => Ok(KeyringChoice::Off),
            "on" | "1" | "true" | "yes" | "required" | "secret-service" => Ok(KeyringChoice::Required),
            other => Err(StoreError::Key(format!("CLAWLINE_KEYRING is `{other}`; use auto, off or on"))),
        }
    }
}

/// Where the key in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `CLAWLINE_MASTER_KEY`.
    Environment,
    /// The key file; `created` when this call made it.
    File { path: PathBuf, created: bool },
    /// The OS keyring; `created` when this call stored it.
    Keyring { created: bool },
}

impl KeySource {
    pub fn created(&self) -> bool {
        matches!(self, KeySource::File { created: true, .. } | KeySource::Keyring { created: true })
    }
}

/// The marker beside the key file that says the key is in the keyring.
pub fn keyring_marker(paths: &StatePaths) -> PathBuf {
    let mut p = paths.master_key().into_os_string();
    p.push(".keyring");
    PathBuf::from(p)
}

/// The keyring item's attributes for this state directory.
fn attributes_for(paths: &StatePaths) -> Vec<(String, String)> {
    let root = std::fs::canonicalize(&paths.root).unwrap_or_else(|_| paths.root.clone());
    vec![
        ("application".into(), "clawline".into()),
        ("purpose".into(), "master-key".into()),
        ("state".into(), root.display().to_string()),
    ]
}

fn read_marker(path: &Path) -> Result<Vec<(String, String)>, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| StoreError::io(path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        StoreError::Key(format!(
            "{} is not valid JSON ({e}); it names the keyring item holding the key",
            path.display()
        ))
    })?;
    let attrs: Vec<(String, String)> = v["attributes"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    if attrs.is_empty() {
        return Err(StoreError::Key(format!("{} names no keyring attributes", path.display())));
    }
    Ok(attrs)
}

fn borrowed(attrs: &[(String, String)]) -> Vec<(&str, &str)> {
    attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Finds (or makes) the master key for `paths`. `env_key` is `CLAWLINE_MASTER_KEY`; `keyring` is
/// the session's Secret Service, if any ([`SecretService::detect`]).
pub fn resolve(
    paths: &StatePaths,
    env_key: Option<&str>,
    choice: KeyringChoice,
    keyring: Option<&SecretService>,
) -> Result<(MasterKey, KeySource), StoreError> {
    if let Some(hex) = env_key.filter(|k| !k.is_empty()) {
        return Ok((MasterKey::from_hex(hex)?, KeySource::Environment));
    }
    let file = paths.master_key();
    let marker = keyring_marker(paths);
    if file.exists() {
        let (key, created) = MasterKey::load_or_create(&file)?;
        return Ok((key, KeySource::File { path: file, created }));
    }
    if marker.exists() {
        return from_keyring(&marker, choice, keyring).map(|k| (k, KeySource::Keyring { created: false }));
    }
    match (choice, keyring) {
        (KeyringChoice::Off, _) | (KeyringChoice::Auto, None) => {
            let (key, created) = MasterKey::load_or_create(&file)?;
            Ok((key, KeySource::File { path: file, created }))
        }
        (KeyringChoice::Required, None) => Err(StoreError::Key(
            "CLAWLINE_KEYRING=on, but no Secret Service is reachable (needs secret-tool and a session bus); unlock a desktop session, or set CLAWLINE_KEYRING=auto".into(),
        )),
        (_, Some(service)) => match create_in_keyring(paths, &marker, service) {
            Ok(key) => Ok((key, KeySource::Keyring { created: true })),
            Err(e) if choice == KeyringChoice::Auto => {
                tracing::warn!(error = %e, "the OS keyring did not take the master key; using a key file instead");
                let (key, created) = MasterKey::load_or_create(&file)?;
                Ok((key, KeySource::File { path: file, created }))
            }
            Err(e) => Err(e),
        },
    }
}

fn from_keyring(
    marker: &Path,
    choice: KeyringChoice,
    keyring: Option<&SecretService>,
) -> Result<MasterKey, StoreError> {
    let where_ = format!("the master key is kept in the OS keyring (see {})", marker.display());
    if choice == KeyringChoice::Off {
        return Err(StoreError::Key(format!("{where_}, but CLAWLINE_KEYRING=off; unset it to read the key")));
    }
    let Some(service) = keyring else {
        return Err(StoreError::Key(format!(
            "{where_}, but no Secret Service is reachable from this session (needs secret-tool and a session bus); run clawline in the desktop session that holds the keyring, or export CLAWLINE_MASTER_KEY"
        )));
    };
    let attrs = read_marker(marker)?;
    match service.lookup(&borrowed(&attrs)) {
        Ok(Some(hex)) => MasterKey::from_hex(hex.trim())
            .map_err(|_| StoreError::Key(format!("{where_}, but the item there is not a 64-character hex key"))),
        Ok(None) => Err(StoreError::Key(format!(
            "{where_}, but the keyring no longer has it; restore the keyring from a backup (secrets stored with the old key cannot be read without it)"
        ))),
        Err(e) => Err(StoreError::Key(format!("{where_}, but {e}"))),
    }
}

fn create_in_keyring(paths: &StatePaths, marker: &Path, service: &SecretService) -> Result<MasterKey, StoreError> {
    let attrs = attributes_for(paths);
    let hex = random_hex(32);
    let label = format!("clawline master key ({})", attrs[2].1);
    service.store(&label, &borrowed(&attrs), &hex).map_err(|e| StoreError::Key(e.to_string()))?;
    // Read it back before relying on it: a keyring that accepts and forgets would lose everything.
    match service.lookup(&borrowed(&attrs)) {
        Ok(Some(back)) if back.trim() == hex => {}
        Ok(_) => return Err(StoreError::Key("the OS keyring did not give the stored key back".into())),
        Err(e) => return Err(StoreError::Key(e.to_string())),
    }
    if let Some(dir) = marker.parent() {
        crate::paths::ensure_private_dir(dir)?;
    }
    let body = json!({
        "keyring": "secret-service",
        "attributes": attrs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
        "note": "The master key is in the OS keyring under these attributes; this file holds no secret.",
    });
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(marker).map_err(|e| StoreError::io(marker, e))?;
    f.write_all(format!("{body:#}\n").as_bytes()).and_then(|_| f.sync_all()).map_err(|e| StoreError::io(marker, e))?;
    MasterKey::from_hex(&hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_bad_values_are_named() {
        assert_eq!(KeyringChoice::parse(None).unwrap(), KeyringChoice::Auto);
        assert_eq!(KeyringChoice::parse(Some("OFF")).unwrap(), KeyringChoice::Off);
        assert_eq!(KeyringChoice::parse(Some("on")).unwrap(), KeyringChoice::Required);
        let e = KeyringChoice::parse(Some("maybe")).unwrap_err();
        assert!(e.to_string().contains("`maybe`"), "{e}");
    }

    #[test]
    fn without_a_keyring_a_key_file_is_made_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(dir.path());
        let (_, source) = resolve(&paths, None, KeyringChoice::Auto, None).unwrap();
        assert_eq!(source, KeySource::File { path: paths.master_key(), created: true });
        let (_, source) = resolve(&paths, None, KeyringChoice::Auto, None).unwrap();
        assert!(!source.created());
        let e = resolve(&StatePaths::new(dir.path().join("other")), None, KeyringChoice::Required, None).unwrap_err();
        assert!(e.to_string().contains("CLAWLINE_KEYRING=on"), "{e}");
    }

    #[test]
    fn a_marker_without_a_keyring_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(dir.path());
        std::fs::create_dir_all(dir.path().join("credentials")).unwrap();
        std::fs::write(keyring_marker(&paths), r#"{"attributes": {"application": "clawline"}}"#).unwrap();
        let e = resolve(&paths, None, KeyringChoice::Auto, None).unwrap_err();
        assert!(e.to_string().contains("no Secret Service is reachable"), "{e}");
        let e = resolve(&paths, None, KeyringChoice::Off, None).unwrap_err();
        assert!(e.to_string().contains("CLAWLINE_KEYRING=off"), "{e}");
        assert!(!paths.master_key().exists(), "no key file was made behind the user's back");
    }
}
