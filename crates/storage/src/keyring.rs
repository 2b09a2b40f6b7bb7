//! The keyring's storage (docs/security.md#master-key, #what-is-sealed, #data-key-rotation): the master key's check value, the wrapped root key and
//! every scope's wrapped data keys, and the operations that seal and open column values with
//! them. The cryptography itself is `mailroom_crypto`'s; this module decides which key, and
//! keeps unwrapped keys in memory (they never change once written).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::FutureExt;
use mailroom_crypto::envelope::{Binding, DataKey, KeyId};
use mailroom_crypto::master_key::MasterKey;
use mailroom_crypto::root_key::RootKey;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::accounts::{from_ms, ms};
use crate::tx::{Inner, Tenancy, UpkeepSecret};
use crate::{Database, Pool, StorageError, Tx, on_backend};

/// A scope's data keys are read and written acting for the scope: an organization, or the
/// system scope's nil UUID.
fn key_scope(scope: Uuid) -> Tenancy {
    Tenancy::KeyScope(scope)
}

/// A data key older than this is succeeded by a new version (docs/security.md#data-key-rotation).
pub const DATA_KEY_MAX_AGE: time::Duration = time::Duration::days(90);
/// What the root key is wrapped under besides the master key.
const ROOT_CONTEXT: &[u8] = b"mailroom/root-key/v1";
const AUDIT_CHAIN_LABEL: &[u8] = b"mailroom/audit-chain/hmac/v1";
/// Small sealed values re-sealed a page by the background re-encryption.
pub(crate) const RESEAL_PAGE: i64 = 500;

/// Every column that holds sealed values, with the column naming its row: the
/// re-encryption walks these, and account deletion knows what it shreds.
pub(crate) const SEALED_COLUMNS: &[SealedColumn] = &[
    crate::two_factor::TOTP_SECRET,
    crate::mail_accounts::MAIL_ACCOUNT_SECRET,
    crate::emails::EMAIL_CONTENT,
    crate::webhooks::WEBHOOK_SECRET,
];

#[derive(Clone, Copy, Debug)]
pub(crate) struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    pub row_id: &'static str,
    /// Values re-sealed a page: what one page may hold in memory bounds it (a message's
    /// content may weigh megabytes, a TOTP secret a few bytes).
    pub page: i64,
}

/// The unlocked keyring of a running process.
pub(crate) struct Keyring {
    master: MasterKey,
    master_check: [u8; 16],
    upkeep: UpkeepSecret,
    keys: RwLock<HashMap<KeyId, Arc<DataKey>>>,
}

/// One data key, as `mailroom keys status` lists it.
#[derive(Clone, Debug)]
pub struct DataKeyStatus {
    pub scope: Uuid,
    pub version: u32,
    pub created_at: OffsetDateTime,
    /// The newest version of its scope: new values are sealed under it.
    pub current: bool,
}

impl Database {
    /// Whether this database has been started before: its keyring exists, so a master key
    /// must be supplied, never made up — or it has accounts from before the keyring. Asked
    /// as the owner (the app role may not log in yet), and before migrating: a table that
    /// does not exist yet holds nothing.
    pub async fn started_before(&self) -> Result<bool, StorageError> {
        let owner = self.as_owner().await?;
        let table_exists = match &owner.database.pool {
            Pool::Sqlite(_) => {
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1)"
            }
            Pool::Postgres(_) => "SELECT to_regclass($1) IS NOT NULL",
        };
        let started = async {
            on_backend!(&owner.database.pool, Pool, pool => {
                for table in ["keyring", "users"] {
                    let exists: bool = sqlx::query_scalar(table_exists)
                        .bind(table)
                        .fetch_one(pool)
                        .await?;
                    // `table` is one of the two names above.
                    let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
                    if exists && sqlx::query_scalar::<_, bool>(&sql).fetch_one(pool).await? {
                        return Ok(true);
                    }
                }
                Ok::<bool, sqlx::Error>(false)
            })
        }
        .await;
        owner.close().await;
        Ok(started?)
    }

    /// Opens the keyring with `master` (creating it, with a new root key, on first start)
    /// and returns the root key. The audit chains are keyed from it from then on.
    pub async fn unlock(
        &mut self,
        master: MasterKey,
        now: OffsetDateTime,
    ) -> Result<RootKey, StorageError> {
        let master_check = master.check_value();
        let owner = self.as_owner().await?;
        let opened = async {
            let stored = owner
                .database
                .serializable(|tx| {
                    let fresh = RootKey::generate();
                    let fresh_wrapped = master.wrap(fresh.expose(), ROOT_CONTEXT);
                    async move {
                        on_backend!(&mut tx.0, Inner, tx => {
                            sqlx::query(
                                "INSERT INTO keyring (singleton, master_check, wrapped_root, created_at) \
                                 VALUES (1, $1, $2, $3) ON CONFLICT (singleton) DO NOTHING",
                            )
                            .bind(master_check.as_slice())
                            .bind(&fresh_wrapped)
                            .bind(ms(now))
                            .execute(&mut **tx)
                            .await?;
                            Ok(sqlx::query_as::<_, (Vec<u8>, Vec<u8>)>(
                                "SELECT master_check, wrapped_root FROM keyring WHERE singleton = 1",
                            )
                            .fetch_optional(&mut **tx)
                            .await?)
                        })
                    }
                    .boxed()
                })
                .await?;
            let (stored_check, wrapped_root) = stored.ok_or(StorageError::WrongMasterKey)?;
            if !bool::from(stored_check.ct_eq(master_check.as_slice())) {
                return Err(StorageError::WrongMasterKey);
            }
            let root = RootKey::from_bytes(
                master
                    .unwrap(&wrapped_root, ROOT_CONTEXT)
                    .map_err(|_| StorageError::WrongMasterKey)?,
            );
            let upkeep = UpkeepSecret::derive(&root);
            owner.database.record_upkeep_digest(&upkeep).await?;
            Ok((root, upkeep))
        }
        .await;
        owner.close().await;
        let (root, upkeep) = opened?;
        self.provision_app_role(&root).await?;
        self.audit_key = Some(root.derive(AUDIT_CHAIN_LABEL).as_bytes().into());
        self.keyring = Some(Arc::new(Keyring {
            master,
            master_check,
            upkeep,
            keys: RwLock::new(HashMap::new()),
        }));
        Ok(root)
    }

    fn keyring(&self) -> Result<&Arc<Keyring>, StorageError> {
        self.keyring.as_ref().ok_or(StorageError::Locked)
    }

    /// What opens the upkeep paths over every tenant's rows: only an unlocked node has it.
    pub(crate) fn upkeep(&self) -> Result<UpkeepSecret, StorageError> {
        Ok(self.keyring()?.upkeep.clone())
    }

    /// Keeps the digest of the upkeep secret where the policies of the upkeep paths compare
    /// it (PostgreSQL; the owner's table, which the app role only reads).
    async fn record_upkeep_digest(&self, upkeep: &UpkeepSecret) -> Result<(), StorageError> {
        if let Pool::Postgres(pool) = &self.pool {
            let digest = upkeep.digest();
            sqlx::query(
                "UPDATE installation SET upkeep_digest = $1 \
                 WHERE singleton = 1 AND upkeep_digest IS DISTINCT FROM $1",
            )
            .bind(digest.as_slice())
            .execute(pool)
            .await?;
        }
        Ok(())
    }

    /// Seals `plaintext` for `binding` under the current data key of `scope`, making the key
    /// (or its next version, when the current one is past [`DATA_KEY_MAX_AGE`]) if needed.
    pub(crate) async fn seal(
        &self,
        scope: Uuid,
        binding: &Binding<'_>,
        plaintext: &[u8],
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, StorageError> {
        let (id, key) = self.current_data_key(scope, now).await?;
        Ok(key.seal(id, binding, plaintext))
    }

    /// Opens a value sealed for `binding` in `scope`, under whichever key version sealed
    /// it. A value of another scope (another organization's) is refused before any key is
    /// touched.
    pub(crate) async fn open(
        &self,
        scope: Uuid,
        binding: &Binding<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StorageError> {
        let id = KeyId::of(sealed).map_err(|_| StorageError::Undecryptable)?;
        if id.scope != scope {
            return Err(StorageError::Undecryptable);
        }
        let key = self.data_key(id).await?;
        key.open(binding, sealed)
            .map_err(|_| StorageError::Undecryptable)
    }

    async fn current_data_key(
        &self,
        scope: Uuid,
        now: OffsetDateTime,
    ) -> Result<(KeyId, Arc<DataKey>), StorageError> {
        let keyring = Arc::clone(self.keyring()?);
        let newest = self.newest_data_key(scope).await?;
        let id = match newest {
            Some((version, created_at)) if from_ms(created_at) + DATA_KEY_MAX_AGE > now => {
                KeyId { scope, version }
            }
            newest => {
                let next = KeyId {
                    scope,
                    version: newest.map_or(1, |(version, _)| version + 1),
                };
                self.add_data_key(&keyring, next, now).await?;
                // Another node may have added the same version first: the stored one wins.
                let version = self
                    .newest_data_key(scope)
                    .await?
                    .map_or(next.version, |(v, _)| v);
                KeyId { scope, version }
            }
        };
        Ok((id, self.data_key(id).await?))
    }

    async fn newest_data_key(&self, scope: Uuid) -> Result<Option<(u32, i64)>, StorageError> {
        let row: Option<(i64, i64)> = self
            .transaction_for(&key_scope(scope), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT version, created_at FROM data_keys WHERE scope = $1 \
                             ORDER BY version DESC LIMIT 1",
                        )
                        .bind(scope)
                        .fetch_optional(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(row.map(|(version, created_at)| (version_of(version), created_at)))
    }

    /// Stores a new data key, wrapped, unless that version exists. Refused when the master
    /// key was rotated under this process: a key wrapped by the old one would be lost.
    async fn add_data_key(
        &self,
        keyring: &Keyring,
        id: KeyId,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let check = keyring.master_check;
        self.serializable(|tx| {
            let key = DataKey::generate();
            let wrapped = keyring.master.wrap(key.expose(), &id.wrap_context());
            async move {
                ensure_master(tx, &check).await?;
                tx.act_for(&key_scope(id.scope)).await?;
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "INSERT INTO data_keys (scope, version, wrapped, created_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (scope, version) DO NOTHING",
                    )
                    .bind(id.scope)
                    .bind(i64::from(id.version))
                    .bind(&wrapped)
                    .bind(ms(now))
                    .execute(&mut **tx)
                    .await?;
                });
                Ok(())
            }
            .boxed()
        })
        .await
    }

    /// The data key `id`, unwrapped (from memory after the first time).
    async fn data_key(&self, id: KeyId) -> Result<Arc<DataKey>, StorageError> {
        let keyring = self.keyring()?;
        if let Some(key) = keyring
            .keys
            .read()
            .ok()
            .and_then(|keys| keys.get(&id).cloned())
        {
            return Ok(key);
        }
        let wrapped: Option<Vec<u8>> = self
            .transaction_for(&key_scope(id.scope), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar(
                            "SELECT wrapped FROM data_keys WHERE scope = $1 AND version = $2",
                        )
                        .bind(id.scope)
                        .bind(i64::from(id.version))
                        .fetch_optional(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        let wrapped = wrapped.ok_or(StorageError::Undecryptable)?;
        let key = Arc::new(DataKey::from_bytes(
            keyring
                .master
                .unwrap(&wrapped, &id.wrap_context())
                .map_err(|_| StorageError::MasterKeyRotated)?,
        ));
        if let Ok(mut keys) = keyring.keys.write() {
            keys.insert(id, Arc::clone(&key));
        }
        Ok(key)
    }

    /// Adds a new version for every scope whose newest data key is past
    /// [`DATA_KEY_MAX_AGE`]; returns how many scopes rotated.
    pub async fn rotate_data_keys(&self, now: OffsetDateTime) -> Result<usize, StorageError> {
        let keyring = Arc::clone(self.keyring()?);
        let stale: Vec<(Uuid, i64)> = self
            .transaction_for(&Tenancy::Keyring(keyring.upkeep.clone()), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT scope, MAX(version) FROM data_keys GROUP BY scope \
                             HAVING MAX(created_at) <= $1",
                        )
                        .bind(ms(now - DATA_KEY_MAX_AGE))
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        for (scope, version) in &stale {
            let next = KeyId {
                scope: *scope,
                version: version_of(*version) + 1,
            };
            self.add_data_key(&keyring, next, now).await?;
        }
        Ok(stale.len())
    }

    /// Re-seals every value still under an older key version of its scope, walking each
    /// sealed column in pages; returns how many moved forward.
    pub async fn reseal_old_values(&self, now: OffsetDateTime) -> Result<usize, StorageError> {
        let mut moved = 0;
        for column in SEALED_COLUMNS {
            moved += self.reseal_column(column, now).await?;
        }
        Ok(moved)
    }

    async fn reseal_column(
        &self,
        column: &SealedColumn,
        now: OffsetDateTime,
    ) -> Result<usize, StorageError> {
        let upkeep = self.upkeep()?;
        let newest: HashMap<Uuid, u32> = {
            let rows: Vec<(Uuid, i64)> = self
                .transaction_for(&Tenancy::Keyring(upkeep.clone()), |tx| {
                    async move {
                        Ok(on_backend!(&mut tx.0, Inner, tx => {
                            sqlx::query_as("SELECT scope, MAX(version) FROM data_keys GROUP BY scope")
                                .fetch_all(&mut **tx)
                                .await?
                        }))
                    }
                    .boxed()
                })
                .await?;
            rows.into_iter().map(|(s, v)| (s, version_of(v))).collect()
        };
        let (table, name, row_id, page_size) =
            (column.table, column.column, column.row_id, column.page);
        // Table and column names come from SEALED_COLUMNS, never from input.
        let page = format!(
            "SELECT {row_id}, {name} FROM {table} WHERE {name} IS NOT NULL AND {row_id} > $1 \
             ORDER BY {row_id} LIMIT $2"
        );
        let update = format!("UPDATE {table} SET {name} = $1 WHERE {row_id} = $2 AND {name} = $3");
        let (mut after, mut moved) = (Uuid::nil(), 0);
        loop {
            let page = page.clone();
            let rows: Vec<(Uuid, Vec<u8>)> = self
                .transaction_for(&Tenancy::Reseal(upkeep.clone()), |tx| {
                    async move {
                        Ok(on_backend!(&mut tx.0, Inner, tx => {
                            sqlx::query_as(&page)
                                .bind(after)
                                .bind(page_size)
                                .fetch_all(&mut **tx)
                                .await?
                        }))
                    }
                    .boxed()
                })
                .await?;
            let Some((last, _)) = rows.last() else {
                return Ok(moved);
            };
            after = *last;
            for (row, sealed) in rows {
                let Ok(id) = KeyId::of(&sealed) else { continue };
                if newest
                    .get(&id.scope)
                    .is_none_or(|&newest| id.version >= newest)
                {
                    continue;
                }
                let binding = Binding {
                    table,
                    column: name,
                    row,
                };
                // One value that does not open must not stop the rest from moving forward.
                let resealed = match self.open(id.scope, &binding, &sealed).await {
                    Ok(plaintext) => self.seal(id.scope, &binding, &plaintext, now).await,
                    Err(error) => Err(error),
                };
                let resealed = match resealed {
                    Ok(resealed) => resealed,
                    Err(error) => {
                        tracing::warn!(%error, table, %row, "a sealed value could not be re-sealed");
                        continue;
                    }
                };
                // Only if nobody wrote the value meanwhile.
                let update = update.clone();
                self.transaction_for(&Tenancy::Reseal(upkeep.clone()), |tx| {
                    async move {
                        on_backend!(&mut tx.0, Inner, tx => {
                            sqlx::query(&update)
                                .bind(&resealed)
                                .bind(row)
                                .bind(&sealed)
                                .execute(&mut **tx)
                                .await?;
                        });
                        Ok(())
                    }
                    .boxed()
                })
                .await?;
                moved += 1;
            }
        }
    }

    /// Re-wraps the root key and every data key under `new`, in one transaction: either all
    /// of them move or none does. Processes still running with the old key keep working with
    /// the keys they have unwrapped; they refuse to add keys until restarted with the new one.
    pub async fn rotate_master_key(
        &self,
        new: MasterKey,
        now: OffsetDateTime,
    ) -> Result<usize, StorageError> {
        let keyring = Arc::clone(self.keyring()?);
        let new_check = new.check_value();
        let new = Arc::new(new);
        self.serializable(|tx| {
            let (keyring, new) = (Arc::clone(&keyring), Arc::clone(&new));
            async move {
                ensure_master(tx, &keyring.master_check).await?;
                tx.act_for(&Tenancy::Keyring(keyring.upkeep.clone())).await?;
                on_backend!(&mut tx.0, Inner, tx => {
                    let wrapped_root: Vec<u8> =
                        sqlx::query_scalar("SELECT wrapped_root FROM keyring WHERE singleton = 1")
                            .fetch_one(&mut **tx)
                            .await?;
                    let root = keyring
                        .master
                        .unwrap(&wrapped_root, ROOT_CONTEXT)
                        .map_err(|_| StorageError::WrongMasterKey)?;
                    sqlx::query(
                        "UPDATE keyring SET master_check = $1, wrapped_root = $2, master_rotated_at = $3 \
                         WHERE singleton = 1",
                    )
                    .bind(new_check.as_slice())
                    .bind(new.wrap(&root, ROOT_CONTEXT))
                    .bind(ms(now))
                    .execute(&mut **tx)
                    .await?;
                    let keys: Vec<(Uuid, i64, Vec<u8>)> =
                        sqlx::query_as("SELECT scope, version, wrapped FROM data_keys")
                            .fetch_all(&mut **tx)
                            .await?;
                    for (scope, version, wrapped) in &keys {
                        let id = KeyId { scope: *scope, version: version_of(*version) };
                        let key = keyring
                            .master
                            .unwrap(wrapped, &id.wrap_context())
                            .map_err(|_| StorageError::Undecryptable)?;
                        sqlx::query("UPDATE data_keys SET wrapped = $1 WHERE scope = $2 AND version = $3")
                            .bind(new.wrap(&key, &id.wrap_context()))
                            .bind(scope)
                            .bind(version)
                            .execute(&mut **tx)
                            .await?;
                    }
                    Ok(keys.len())
                })
            }
            .boxed()
        })
        .await
    }

    /// Every data key, oldest scope and version first.
    pub async fn data_key_status(&self) -> Result<Vec<DataKeyStatus>, StorageError> {
        let rows: Vec<(Uuid, i64, i64, i64)> = self
            .transaction_for(&Tenancy::Keyring(self.upkeep()?), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_as(
                        "SELECT k.scope, k.version, k.created_at, \
                         (SELECT MAX(version) FROM data_keys n WHERE n.scope = k.scope) \
                         FROM data_keys k ORDER BY k.scope, k.version",
                    )
                    .fetch_all(&mut **tx)
                    .await?
                            }))
                }
                .boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(scope, version, created_at, newest)| DataKeyStatus {
                scope,
                version: version_of(version),
                created_at: from_ms(created_at),
                current: version == newest,
            })
            .collect())
    }
}

/// Fails the transaction unless the stored master key is the one this process holds.
async fn ensure_master(tx: &mut Tx, check: &[u8; 16]) -> Result<(), StorageError> {
    let stored: Vec<u8> = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_scalar("SELECT master_check FROM keyring WHERE singleton = 1")
            .fetch_one(&mut **tx)
            .await?
    });
    if bool::from(stored.ct_eq(check.as_slice())) {
        Ok(())
    } else {
        Err(StorageError::MasterKeyRotated)
    }
}

/// Versions are written from `u32`s; anything else in the column is damage, read as 0 so
/// that it can never pass for the newest.
fn version_of(stored: i64) -> u32 {
    u32::try_from(stored).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use mailroom_crypto::envelope::SYSTEM_SCOPE;
    use mailroom_testkit::both_backends;

    use super::*;

    const TABLE: &str = "secrets";

    fn at(row: Uuid) -> Binding<'static> {
        Binding {
            table: TABLE,
            column: "value",
            row,
        }
    }

    async fn unlocked(url: &str, master: MasterKey) -> Result<(Database, RootKey), StorageError> {
        let mut db = Database::connect(url).await?;
        db.migrate().await?;
        let root = db.unlock(master, OffsetDateTime::now_utc()).await?;
        Ok((db, root))
    }

    fn same_key(hex: &str) -> MasterKey {
        MasterKey::from_hex(hex, "test").unwrap()
    }

    const KEY: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const OTHER_KEY: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    both_backends! {
        async fn the_same_master_key_unlocks_the_same_root_and_another_is_refused(test_db) {
            let (db, root) = unlocked(test_db.url(), same_key(KEY)).await.unwrap();
            assert!(db.started_before().await.unwrap());
            let (_, again) = unlocked(test_db.url(), same_key(KEY)).await.unwrap();
            assert_eq!(root.derive(b"x").as_bytes(), again.derive(b"x").as_bytes());
            assert!(matches!(
                unlocked(test_db.url(), same_key(OTHER_KEY)).await,
                Err(StorageError::WrongMasterKey)
            ));
        }

        async fn values_open_only_in_their_row_and_scope(test_db) {
            let (db, _) = unlocked(test_db.url(), same_key(KEY)).await.unwrap();
            let (org_a, org_b) = (Uuid::now_v7(), Uuid::now_v7());
            let (row_a, row_b) = (Uuid::now_v7(), Uuid::now_v7());
            let now = OffsetDateTime::now_utc();
            let sealed = db.seal(org_a, &at(row_a), b"smtp password", now).await.unwrap();
            assert!(!sealed.windows(13).any(|w| w == b"smtp password"));
            assert_eq!(db.open(org_a, &at(row_a), &sealed).await.unwrap().as_slice(), b"smtp password");
            // Copied to another row of the same organization, or to another organization's row.
            assert!(matches!(db.open(org_a, &at(row_b), &sealed).await, Err(StorageError::Undecryptable)));
            assert!(matches!(db.open(org_b, &at(row_a), &sealed).await, Err(StorageError::Undecryptable)));
            // Organizations have keys of their own.
            let other = db.seal(org_b, &at(row_a), b"smtp password", now).await.unwrap();
            assert_ne!(KeyId::of(&other).unwrap().scope, KeyId::of(&sealed).unwrap().scope);
            assert_eq!(db.data_key_status().await.unwrap().len(), 2);
        }

        async fn data_keys_rotate_after_ninety_days_and_old_versions_still_open(test_db) {
            let (db, _) = unlocked(test_db.url(), same_key(KEY)).await.unwrap();
            let (org, row) = (Uuid::now_v7(), Uuid::now_v7());
            let now = OffsetDateTime::now_utc();
            let old = db.seal(org, &at(row), b"v1", now).await.unwrap();
            assert_eq!(db.rotate_data_keys(now + time::Duration::days(89)).await.unwrap(), 0);
            let later = now + DATA_KEY_MAX_AGE + time::Duration::days(1);
            assert_eq!(db.rotate_data_keys(later).await.unwrap(), 1);
            let new = db.seal(org, &at(row), b"v2", later).await.unwrap();
            assert_eq!(KeyId::of(&old).unwrap().version, 1);
            assert_eq!(KeyId::of(&new).unwrap().version, 2);
            assert_eq!(db.open(org, &at(row), &old).await.unwrap().as_slice(), b"v1");
            let status = db.data_key_status().await.unwrap();
            assert_eq!(status.iter().filter(|k| k.current).map(|k| k.version).collect::<Vec<_>>(), vec![2]);
            // Sealing past the age rotates too, without waiting for the background job.
            let much_later = later + DATA_KEY_MAX_AGE + time::Duration::days(1);
            let newest = db.seal(org, &at(row), b"v3", much_later).await.unwrap();
            assert_eq!(KeyId::of(&newest).unwrap().version, 3);
        }

        async fn a_master_key_rotation_rewraps_everything_at_once(test_db) {
            let (db, root) = unlocked(test_db.url(), same_key(KEY)).await.unwrap();
            let (org, row) = (Uuid::now_v7(), Uuid::now_v7());
            let now = OffsetDateTime::now_utc();
            let sealed = db.seal(org, &at(row), b"secret", now).await.unwrap();
            db.seal(SYSTEM_SCOPE, &at(row), b"totp", now).await.unwrap();
            assert_eq!(db.rotate_master_key(same_key(OTHER_KEY), now).await.unwrap(), 2);

            // The old key no longer unlocks; the new one reads everything, and the root key
            // (and so every derived key) is unchanged.
            assert!(matches!(unlocked(test_db.url(), same_key(KEY)).await, Err(StorageError::WrongMasterKey)));
            let (fresh, fresh_root) = unlocked(test_db.url(), same_key(OTHER_KEY)).await.unwrap();
            assert_eq!(fresh.open(org, &at(row), &sealed).await.unwrap().as_slice(), b"secret");
            assert_eq!(root.derive(b"x").as_bytes(), fresh_root.derive(b"x").as_bytes());

            // A process still running with the old key reads what it had unwrapped, and
            // refuses to add keys that nobody else could unwrap.
            assert_eq!(db.open(org, &at(row), &sealed).await.unwrap().as_slice(), b"secret");
            assert!(matches!(
                db.seal(Uuid::now_v7(), &at(row), b"x", now).await,
                Err(StorageError::MasterKeyRotated)
            ));
        }
    }
}
