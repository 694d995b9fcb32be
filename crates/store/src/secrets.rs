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

/// Reads the secret `name` from the database at `path` without the store's thread: for the
/// config loader, which runs before (and outside) the async runtime's store. A missing
/// database or table is `None`.
pub fn read_secret_at(path: &std::path::Path, name: &str, key: &MasterKey) -> Result<Option<SecretString>, StoreError> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let row: Option<(Vec<u8>, Vec<u8>)> = match conn
        .query_row("SELECT nonce, ciphertext FROM secrets WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
    {
        Ok(row) => row,
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => None,
        Err(e) => return Err(e.into()),
    };
    let Some((nonce, ciphertext)) = row else { return Ok(None) };
    let plain = key.open(name, &nonce, &ciphertext)?;
    let text = String::from_utf8(plain).map_err(|_| StoreError::Decrypt(name.to_string()))?;
    Ok(Some(SecretString::new(text)))
}

impl Store {
    /// The names of stored secrets starting with `prefix`, with when each was last set (Unix ms).
    pub async fn secret_names(&self, prefix: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let like = format!("{}%", prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        self.call(move |c| {
            let mut stmt =
                c.prepare("SELECT name, updated_at FROM secrets WHERE name LIKE ?1 ESCAPE '\\' ORDER BY name")?;
            let rows = stmt.query_map([like], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Removes the secret `name`; whether there was one.
    pub async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.call(move |c| Ok(c.execute("DELETE FROM secrets WHERE name = ?1", [name])? > 0)).await
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

    #[tokio::test]
    async fn names_are_listed_by_prefix_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let key = MasterKey::from_hex(&random_hex(32)).unwrap();
        for name in ["store/tg", "store/discord_1", "gateway.token", "storex"] {
            store.put_secret(name, &SecretString::new("v"), &key).await.unwrap();
        }
        let names: Vec<String> = store.secret_names("store/").await.unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["store/discord_1", "store/tg"]);
        assert!(store.secret_names("store/discord%").await.unwrap().is_empty(), "wildcards are literal");
        assert!(store.delete_secret("store/tg").await.unwrap());
        assert!(!store.delete_secret("store/tg").await.unwrap());
        assert!(store.get_secret("store/tg", &key).await.unwrap().is_none());
        // The loader's path reads the same sealed rows without the store's thread.
        let path = dir.path().join("db.sqlite");
        assert_eq!(read_secret_at(&path, "store/discord_1", &key).unwrap().unwrap().expose(), "v");
        assert!(read_secret_at(&path, "store/tg", &key).unwrap().is_none());
        assert!(read_secret_at(&dir.path().join("none.sqlite"), "x", &key).unwrap().is_none());
        let wrong = MasterKey::from_hex(&random_hex(32)).unwrap();
        assert!(read_secret_at(&path, "store/discord_1", &wrong).is_err());
    }
}
