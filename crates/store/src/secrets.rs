//! Secrets at rest: sealed with the [`MasterKey`] before they reach the database thread, opened
//! after they leave it. Plaintext never enters SQLite.

use clawline_core::secret::SecretString;
use rusqlite::{OptionalExtension, params};

use crate::crypto::MasterKey;
use crate::db::Store;
use crate::error::StoreError;
use crate::now_ms;

impl Store {
    /// Stores (or replaces) the secret `name`.
    pub async fn put_secret(&self, name: &str, value: &SecretString, key: &MasterKey) -> Result<(), StoreError> {
        let (nonce, ciphertext) = key.seal(name, value.expose().as_bytes())?;
        let name = name.to_string();
        self.call(move |c| {
            c.execute(
                "INSERT INTO secrets (name, nonce, ciphertext, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(name) DO UPDATE SET nonce = ?2, ciphertext = ?3, updated_at = ?4",
                params![name, nonce, ciphertext, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Reads the secret `name`, if stored.
    pub async fn get_secret(&self, name: &str, key: &MasterKey) -> Result<Option<SecretString>, StoreError> {
        let owned = name.to_string();
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .call(move |c| {
                Ok(c.query_row("SELECT nonce, ciphertext FROM secrets WHERE name = ?1", [owned], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?)
            })
            .await?;
        let Some((nonce, ciphertext)) = row else { return Ok(None) };
        let plain = key.open(name, &nonce, &ciphertext)?;
        let text = String::from_utf8(plain).map_err(|_| StoreError::Decrypt(name.to_string()))?;
        Ok(Some(SecretString::new(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random_hex;

    #[tokio::test]
    async fn stores_only_ciphertext() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path).unwrap();
        let key = MasterKey::from_hex(&random_hex(32)).unwrap();
        let value = SecretString::new("plaintext-token-value-123");
        store.put_secret("gateway.token", &value, &key).await.unwrap();
        assert_eq!(store.get_secret("gateway.token", &key).await.unwrap().unwrap(), value);
        assert!(store.get_secret("missing", &key).await.unwrap().is_none());
        let wrong = MasterKey::from_hex(&random_hex(32)).unwrap();
        assert!(matches!(store.get_secret("gateway.token", &wrong).await, Err(StoreError::Decrypt(_))));
        // Checkpoint the WAL so the database file holds everything, then look for the plaintext.
        store.call(|c| Ok(c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?)).await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(25).any(|w| w == b"plaintext-token-value-123"));
    }
}
