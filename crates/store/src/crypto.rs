//! The master key and secret encryption (AES-256-GCM through aws-lc-rs).
//!
//! The key is 32 random bytes kept in `<state>/credentials/master.key` (mode 0600) or the OS
//! keyring (see `key_source`), or supplied as 64 hex characters in `CLAWLINE_MASTER_KEY` so it
//! can live outside the state directory entirely. Each secret is sealed with a fresh random nonce and its name as associated data,
//! so a ciphertext copied under another name does not decrypt.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::error::StoreError;

/// The key that encrypts secrets at rest.
pub struct MasterKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // The system RNG failing is not recoverable in any useful way; fall back loudly to a UUID mix.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        tracing::error!("system random number generator failed; using UUIDv4 bytes");
        for chunk in bytes.chunks_mut(16) {
            let u = uuid::Uuid::new_v4();
            chunk.copy_from_slice(&u.as_bytes()[..chunk.len()]);
        }
    }
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl MasterKey {
    fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| StoreError::Key("key must be 32 bytes".into()))?;
        Ok(Self { key: LessSafeKey::new(unbound) })
    }

    /// Reads the key from 64 hex characters (the `CLAWLINE_MASTER_KEY` form).
    pub fn from_hex(s: &str) -> Result<Self, StoreError> {
        match unhex(s) {
            Some(bytes) if bytes.len() == 32 => Self::from_bytes(&bytes),
            _ => Err(StoreError::Key("CLAWLINE_MASTER_KEY must be 64 hexadecimal characters (32 bytes)".into())),
        }
    }

    /// Loads the key file, creating it (0600, parent 0700) with a new random key if it is missing.
    /// Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), StoreError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = unhex(&text).filter(|b| b.len() == 32).ok_or_else(|| {
                    StoreError::Key(format!(
                        "{} is not a 64-character hex key; restore it from a backup",
                        path.display()
                    ))
                })?;
                Ok((Self::from_bytes(&bytes)?, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    crate::paths::ensure_private_dir(dir)?;
                }
                let text = random_hex(32);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(path).map_err(|e| StoreError::io(path, e))?;
                f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| StoreError::io(path, e))?;
                Ok((Self::from_hex(&text)?, true))
            }
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Encrypts `plaintext`, binding it to `name`. Returns (nonce, ciphertext+tag).
    pub(crate) fn seal(&self, name: &str, plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| StoreError::Key("random number generator failed".into()))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(name.as_bytes()), &mut buf)
            .map_err(|_| StoreError::Key("encryption failed".into()))?;
        Ok((nonce.to_vec(), buf))
    }

    /// Decrypts what [`MasterKey::seal`] produced for `name`.
    pub(crate) fn open(&self, name: &str, nonce: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| StoreError::Decrypt(name.to_string()))?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut buf)
            .map_err(|_| StoreError::Decrypt(name.to_string()))?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_the_name() {
        let key = MasterKey::from_hex(&random_hex(32)).unwrap();
        let (nonce, ct) = key.seal("gateway.token", b"hunter2").unwrap();
        assert_ne!(&ct[..7], b"hunter2");
        assert_eq!(key.open("gateway.token", &nonce, &ct).unwrap(), b"hunter2");
        assert!(key.open("other.name", &nonce, &ct).is_err());
        let other = MasterKey::from_hex(&random_hex(32)).unwrap();
        assert!(other.open("gateway.token", &nonce, &ct).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials").join("master.key");
        let (k1, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        let (k2, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        let (n, ct) = k1.seal("x", b"v").unwrap();
        assert_eq!(k2.open("x", &n, &ct).unwrap(), b"v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(MasterKey::load_or_create(&path).is_err());
        assert!(MasterKey::from_hex("abcd").is_err());
        assert_eq!(random_hex(16).len(), 32);
    }
}
