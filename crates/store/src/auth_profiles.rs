//! Model-provider auth profiles: API keys, tokens, OAuth grants and AWS credentials that
//! `clawline auth add` stored, per agent or for every agent (`agent_id = "*"`).
//!
//! The credential itself is JSON sealed with the [`MasterKey`] under the name
//! `auth-profile:<agent>:<profile>` before it reaches the database thread, exactly like
//! [`secrets`](crate::secrets); only the metadata (provider, kind, label, expiry) is plain, so
//! `auth list` can show what is stored without the key. This file does not interpret the
//! credential: callers own its shape.

use clawline_core::secret::SecretString;
use rusqlite::{OptionalExtension, params};

use crate::crypto::MasterKey;
use crate::db::Store;
use crate::error::StoreError;
use crate::now_ms;

/// The profile applies to every agent.
pub const ALL_AGENTS: &str = "*";

/// What is known about a stored profile without opening it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthProfileRow {
    /// `*` for every agent.
    pub agent_id: String,
    /// `<provider>:<name>`.
    pub profile_id: String,
    pub provider: String,
    /// `api_key`, `token`, `oauth` or `aws-sdk`.
    pub kind: String,
    /// An e-mail address or a note.
    pub label: Option<String>,
    /// When the credential stops working (ms since the epoch), if it says.
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

fn aad(agent_id: &str, profile_id: &str) -> String {
    format!("auth-profile:{agent_id}:{profile_id}")
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuthProfileRow> {
    Ok(AuthProfileRow {
        agent_id: r.get(0)?,
        profile_id: r.get(1)?,
        provider: r.get(2)?,
        kind: r.get(3)?,
        label: r.get(4)?,
        expires_at: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

const COLUMNS: &str = "agent_id, profile_id, provider, kind, label, expires_at, created_at, updated_at";

impl Store {
    /// Stores or replaces a profile. `credential` is sealed before it leaves this function.
    pub async fn put_auth_profile(
        &self,
        meta: AuthProfileRow,
        credential: &SecretString,
        key: &MasterKey,
    ) -> Result<(), StoreError> {
        let (nonce, ciphertext) = key.seal(&aad(&meta.agent_id, &meta.profile_id), credential.expose().as_bytes())?;
        self.call(move |c| {
            let now = now_ms();
            c.execute(
                "INSERT INTO auth_profiles (agent_id, profile_id, provider, kind, label, expires_at, nonce, ciphertext, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) \
                 ON CONFLICT(agent_id, profile_id) DO UPDATE SET provider = ?3, kind = ?4, label = ?5, expires_at = ?6, \
                 nonce = ?7, ciphertext = ?8, updated_at = ?9",
                params![meta.agent_id, meta.profile_id, meta.provider, meta.kind, meta.label, meta.expires_at, nonce, ciphertext, now],
            )?;
            Ok(())
        })
        .await
    }

    /// Every stored profile's metadata, ordered by agent then profile id.
    pub async fn list_auth_profiles(&self) -> Result<Vec<AuthProfileRow>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM auth_profiles ORDER BY agent_id, profile_id"))?;
            let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Every stored profile with its opened credential.
    pub async fn load_auth_profiles(&self, key: &MasterKey) -> Result<Vec<(AuthProfileRow, SecretString)>, StoreError> {
        let sealed: Vec<(AuthProfileRow, Vec<u8>, Vec<u8>)> = self
            .call(|c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS}, nonce, ciphertext FROM auth_profiles ORDER BY agent_id, profile_id"
                ))?;
                let rows =
                    stmt.query_map([], |r| Ok((row(r)?, r.get(8)?, r.get(9)?)))?.collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        sealed
            .into_iter()
            .map(|(meta, nonce, ciphertext)| {
                let name = aad(&meta.agent_id, &meta.profile_id);
                let plain = key.open(&name, &nonce, &ciphertext)?;
                let text = String::from_utf8(plain).map_err(|_| StoreError::Decrypt(name))?;
                Ok((meta, SecretString::new(text)))
            })
            .collect()
    }

    /// Removes a profile; returns whether it existed.
    pub async fn delete_auth_profile(&self, agent_id: &str, profile_id: &str) -> Result<bool, StoreError> {
        let (agent_id, profile_id) = (agent_id.to_string(), profile_id.to_string());
        self.call(move |c| {
            Ok(c.execute(
                "DELETE FROM auth_profiles WHERE agent_id = ?1 AND profile_id = ?2",
                params![agent_id, profile_id],
            )? > 0)
        })
        .await
    }

    /// A value that changes whenever any profile is added, changed or removed (for reloading).
    pub async fn auth_profiles_stamp(&self) -> Result<(i64, i64), StoreError> {
        self.call(|c| {
            Ok(c.query_row("SELECT count(*), coalesce(max(updated_at), 0) FROM auth_profiles", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?
            .unwrap_or((0, 0)))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random_hex;

    fn meta(agent: &str, id: &str) -> AuthProfileRow {
        AuthProfileRow {
            agent_id: agent.into(),
            profile_id: id.into(),
            provider: id.split(':').next().unwrap_or_default().into(),
            kind: "api_key".into(),
            label: Some("work".into()),
            expires_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[tokio::test]
    async fn profiles_round_trip_sealed_and_bound_to_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path).unwrap();
        let key = MasterKey::from_hex(&random_hex(32)).unwrap();
        let cred = SecretString::new(r#"{"key":"sk-profile-secret-value-42"}"#);
        store.put_auth_profile(meta(ALL_AGENTS, "openai:work"), &cred, &key).await.unwrap();
        store.put_auth_profile(meta("main", "anthropic:me"), &SecretString::new("{}"), &key).await.unwrap();
        let before = store.auth_profiles_stamp().await.unwrap();

        let listed = store.list_auth_profiles().await.unwrap();
        assert_eq!(listed.iter().map(|r| r.profile_id.as_str()).collect::<Vec<_>>(), ["openai:work", "anthropic:me"]);
        assert!(listed[0].created_at > 0);
        let loaded = store.load_auth_profiles(&key).await.unwrap();
        assert_eq!(loaded[0].1, cred);

        let wrong = MasterKey::from_hex(&random_hex(32)).unwrap();
        assert!(matches!(store.load_auth_profiles(&wrong).await, Err(StoreError::Decrypt(_))));

        // A ciphertext moved to another profile's row does not open.
        store
            .call(|c| {
                Ok(c.execute_batch(
                    "UPDATE auth_profiles SET nonce = (SELECT nonce FROM auth_profiles WHERE profile_id = 'openai:work'), \
                     ciphertext = (SELECT ciphertext FROM auth_profiles WHERE profile_id = 'openai:work') \
                     WHERE profile_id = 'anthropic:me'",
                )?)
            })
            .await
            .unwrap();
        assert!(matches!(store.load_auth_profiles(&key).await, Err(StoreError::Decrypt(_))));

        assert!(store.delete_auth_profile("main", "anthropic:me").await.unwrap());
        assert!(!store.delete_auth_profile("main", "anthropic:me").await.unwrap());
        assert_ne!(store.auth_profiles_stamp().await.unwrap(), before);

        store.call(|c| Ok(c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?)).await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(26).any(|w| w == b"sk-profile-secret-value-42"));
    }
}
