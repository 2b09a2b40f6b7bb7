//! API keys (docs/security.md#api-key-format, #api-key-scopes) as stored: found by lookup id, checked by hash, scoped to their
//! organization. A revocation is seen by the next request on every node: PostgreSQL reads the
//! key on every request, and SQLite's cache (`KeyCache`) lasts only until the next write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use mailroom_core::api_keys::{Revocation, Scopes};
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::{ApiKeyId, OrgId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::{from_ms, ms};
use crate::teams::Change;
use crate::tx::{Inner, Tenancy, Tx};
use crate::{Database, StorageError, on_backend};

/// `last_used_at` is written at most this often per key, not on every request.
const TOUCH_INTERVAL_MS: i64 = 60_000;

pub struct NewApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub lookup_id: String,
    pub key_hash: Vec<u8>,
    pub scopes: Scopes,
    pub created_by: UserId,
    pub expires_at: Option<OffsetDateTime>,
    /// Below the plan's per-key limits; `None`: the plan's.
    pub requests_per_minute: Option<u32>,
    pub requests_per_day: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct ApiKeyInfo {
    pub id: ApiKeyId,
    pub name: String,
    pub lookup_id: String,
    pub scopes: Scopes,
    pub created_by: Option<UserId>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<OffsetDateTime>,
    pub revocation: Option<Revocation>,
}

/// The stored key for a presented lookup id, with what deciding on it needs.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub id: ApiKeyId,
    pub org_id: OrgId,
    pub key_hash: Vec<u8>,
    pub scopes: Scopes,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked: bool,
    /// The key's own limits, else its organization's plan's.
    pub requests_per_minute: u32,
    pub requests_per_day: u32,
}

/// On SQLite, the keys read by lookup id, so that a request with a key reads nothing: SQLite
/// is one node, so every write passes through this process, and each write transaction that
/// could change a key's row, its organization's plan or the plans (every one run by
/// [`Database::serializable`]) ends every entry (`writes`). PostgreSQL serves several nodes and
/// reads the key on every request: a revocation holds on the next request on every node.
#[derive(Default)]
pub(crate) struct KeyCache {
    pub(crate) writes: AtomicU64,
    keys: Mutex<HashMap<String, (u64, StoredKey)>>,
}

impl KeyCache {
    /// Entries at most; past it the cache starts again (only existing keys are filed, so a
    /// flood of made-up keys does not fill it).
    const CAPACITY: usize = 10_000;

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, StoredKey)>> {
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, lookup_id: &str, writes: u64) -> Option<StoredKey> {
        self.entries()
            .get(lookup_id)
            .filter(|(filed_at, _)| *filed_at == writes)
            .map(|(_, key)| key.clone())
    }

    fn file(&self, lookup_id: &str, writes: u64, key: StoredKey) {
        let mut entries = self.entries();
        if entries.len() >= Self::CAPACITY {
            entries.clear();
        }
        entries.insert(lookup_id.to_owned(), (writes, key));
    }

    /// A write transaction ended: every entry is stale.
    pub(crate) fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(sqlx::FromRow)]
struct InfoRow {
    id: Uuid,
    name: String,
    lookup_id: String,
    scopes: String,
    created_by: Option<Uuid>,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    last_used_ip: Option<String>,
    revoked_at: Option<i64>,
    revoked_reason: Option<String>,
}

/// An organization's API keys. Reached through [`Database::api_keys`].
#[derive(Clone, Copy)]
pub struct ApiKeys<'a> {
    pub(crate) db: &'a Database,
}

impl ApiKeys<'_> {
    pub async fn create_api_key(
        &self,
        org_id: OrgId,
        key: &NewApiKey,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let (id, name, lookup_id, key_hash, scopes, created_by, expires_at) = (
            key.id,
            key.name.clone(),
            key.lookup_id.clone(),
            key.key_hash.clone(),
            key.scopes.to_stored(),
            key.created_by,
            key.expires_at.map(ms),
        );
        let column = |limit: u32| i32::try_from(limit).unwrap_or(i32::MAX);
        let limits = (
            key.requests_per_minute.map(column),
            key.requests_per_day.map(column),
        );
        self.db.teams().audited_change(event, now, move |tx| {
            let (name, lookup_id, key_hash, scopes) =
                (name.clone(), lookup_id.clone(), key_hash.clone(), scopes.clone());
            async move {
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "INSERT INTO api_keys (id, org_id, created_by, name, lookup_id, key_hash, scopes, created_at, expires_at, \
                         requests_per_minute, requests_per_day) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .bind(id.as_uuid())
                    .bind(org_id.as_uuid())
                    .bind(created_by.as_uuid())
                    .bind(&name)
                    .bind(&lookup_id)
                    .bind(&key_hash)
                    .bind(&scopes)
                    .bind(ms(now))
                    .bind(expires_at)
                    .bind(limits.0)
                    .bind(limits.1)
                    .execute(&mut **tx)
                    .await?;
                });
                Ok(Change::Done)
            }
            .boxed()
        })
        .await
        .map(drop)
    }

    /// The organization's keys that have not expired, revoked ones with why, newest first;
    /// no secrets.
    pub async fn api_keys(
        &self,
        org_id: OrgId,
        now: OffsetDateTime,
    ) -> Result<Vec<ApiKeyInfo>, StorageError> {
        let rows: Vec<InfoRow> = self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT id, name, lookup_id, scopes, created_by, created_at, expires_at, last_used_at, last_used_ip, \
                             revoked_at, revoked_reason FROM api_keys WHERE org_id = $1 \
                             AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC",
                        )
                        .bind(org_id.as_uuid())
                        .bind(ms(now))
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| ApiKeyInfo {
                id: row.id.into(),
                name: row.name,
                lookup_id: row.lookup_id,
                scopes: Scopes::from_stored(&row.scopes),
                created_by: row.created_by.map(UserId::from_uuid),
                created_at: from_ms(row.created_at),
                expires_at: row.expires_at.map(from_ms),
                last_used_at: row.last_used_at.map(from_ms),
                last_used_ip: row.last_used_ip,
                revoked_at: row.revoked_at.map(from_ms),
                revocation: row.revoked_at.map(|_| {
                    row.revoked_reason
                        .as_deref()
                        .and_then(Revocation::parse)
                        .unwrap_or(Revocation::Revoked)
                }),
            })
            .collect())
    }

    /// Revokes one of the organization's keys; effective on the next request everywhere.
    pub async fn revoke_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Change, StorageError> {
        self.db
            .teams()
            .audited_change(event, now, move |tx| {
                async move {
                    let revoked = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE api_keys SET revoked_at = $1, revoked_reason = 'revoked' \
                             WHERE id = $2 AND org_id = $3 AND revoked_at IS NULL",
                        )
                        .bind(ms(now))
                        .bind(id.as_uuid())
                        .bind(org_id.as_uuid())
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    });
                    Ok(Change::done_if(revoked == 1))
                }
                .boxed()
            })
            .await
    }

    /// The key stored under `lookup_id`, revoked or not (a revoked key's use is audited).
    pub async fn api_key_by_lookup_id(
        &self,
        lookup_id: &str,
    ) -> Result<Option<StoredKey>, StorageError> {
        let Some(cache) = &self.db.key_cache else {
            return self.read_api_key(lookup_id).await;
        };
        // Taken before the read: a write ending between the read and the filing leaves the
        // entry already stale, never one that outlives the write.
        let writes = cache.writes.load(Ordering::Acquire);
        if let Some(key) = cache.get(lookup_id, writes) {
            return Ok(Some(key));
        }
        let key = self.read_api_key(lookup_id).await?;
        if let Some(key) = &key {
            cache.file(lookup_id, writes, key.clone());
        }
        Ok(key)
    }

    async fn read_api_key(&self, lookup_id: &str) -> Result<Option<StoredKey>, StorageError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: Uuid,
            org_id: Uuid,
            key_hash: Vec<u8>,
            scopes: String,
            expires_at: Option<i64>,
            revoked_at: Option<i64>,
            per_minute: i32,
            per_day: i32,
        }
        let lookup_id = lookup_id.to_owned();
        let tenancy = Tenancy::ApiKeyLookup(lookup_id.clone());
        let row: Option<Row> = self.db
            .transaction_for(&tenancy, |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT k.id, k.org_id, k.key_hash, k.scopes, k.expires_at, k.revoked_at, \
                             COALESCE(k.requests_per_minute, p.key_requests_per_minute) AS per_minute, \
                             COALESCE(k.requests_per_day, p.key_requests_per_day) AS per_day \
                             FROM api_keys k JOIN orgs o ON o.id = k.org_id JOIN plans p ON p.id = o.plan_id \
                             WHERE k.lookup_id = $1",
                        )
                        .bind(&lookup_id)
                        .fetch_optional(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(row.map(|row| StoredKey {
            id: row.id.into(),
            org_id: OrgId::from_uuid(row.org_id),
            key_hash: row.key_hash,
            scopes: Scopes::from_stored(&row.scopes),
            expires_at: row.expires_at.map(from_ms),
            revoked: row.revoked_at.is_some(),
            requests_per_minute: u32::try_from(row.per_minute).unwrap_or(0),
            requests_per_day: u32::try_from(row.per_day).unwrap_or(0),
        }))
    }

    /// Notes a key's use (last used time and address), at most once a minute.
    pub async fn touch_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        ip: &str,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let ip = ip.to_owned();
        self.db.transaction_for(&Tenancy::Org(org_id), |tx| {
            async move {
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "UPDATE api_keys SET last_used_at = $1, last_used_ip = $2 \
                         WHERE id = $3 AND (last_used_at IS NULL OR last_used_at < $4 OR last_used_ip <> $2)",
                    )
                    .bind(ms(now))
                    .bind(&ip)
                    .bind(id.as_uuid())
                    .bind(ms(now) - TOUCH_INTERVAL_MS)
                    .execute(&mut **tx)
                    .await?;
                });
                Ok(())
            }
            .boxed()
        })
        .await
    }
}

/// Revokes every live key `creator` made in `org_id`, inside the transaction that removes or
/// disables them, with an `api_key.revoked` entry for each after the pattern of `event`.
pub(crate) async fn revoke_keys_of_creator(
    tx: &mut Tx,
    audit_key: &[u8],
    org_id: OrgId,
    creator: UserId,
    reason: Revocation,
    event: &AuditEvent,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    let revoked: Vec<Uuid> = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_scalar(
            "UPDATE api_keys SET revoked_at = $1, revoked_reason = $2 \
             WHERE org_id = $3 AND created_by = $4 AND revoked_at IS NULL RETURNING id",
        )
        .bind(ms(now))
        .bind(reason.as_str())
        .bind(org_id.as_uuid())
        .bind(creator.as_uuid())
        .fetch_all(&mut **tx)
        .await?
    });
    for id in revoked {
        let entry = AuditEvent {
            org_id: Some(org_id),
            action: Action::ApiKeyRevoked,
            outcome: Outcome::Success,
            target: Some(format!("api key {id} ({})", reason.as_str())),
            subject: None,
            ..event.clone()
        };
        crate::audit::append(tx, audit_key, &entry, now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mailroom_core::audit::Action;
    use mailroom_core::org::OrgRole;
    use mailroom_core::usage::Metric;
    use mailroom_testkit::TestDatabase;
    use sqlx::{Connection, PgConnection};

    use super::*;
    use crate::Pool;
    use crate::accounts::{NewAccount, PlatformRole};
    use crate::teams::NewInvitation;
    use crate::usage::Charge;

    fn event(org_id: OrgId) -> AuditEvent {
        crate::test_support::event(org_id, Action::ApiKeyCreated)
    }

    /// An organization with a key, an invitation, a charge and a verification.
    async fn tenant(db: &Database, name: &str) -> (OrgId, UserId) {
        let now = OffsetDateTime::now_utc();
        let account = NewAccount {
            email: format!("{name}@example.test"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            platform_role: PlatformRole::User,
        };
        let user = db.accounts().create_account(&account, now).await.unwrap();
        let key = NewApiKey {
            id: ApiKeyId::generate(),
            name: name.into(),
            lookup_id: format!("{name:0>12}"),
            key_hash: vec![1; 32],
            scopes: Scopes::parse(["verify"]).unwrap(),
            created_by: user.id,
            expires_at: None,
            requests_per_minute: None,
            requests_per_day: None,
        };
        db.api_keys()
            .create_api_key(user.org_id, &key, &event(user.org_id), now)
            .await
            .unwrap();
        let invitation = NewInvitation {
            id: mailroom_core::InvitationId::generate(),
            email: format!("guest-of-{name}@example.test"),
            role: OrgRole::Member,
            token_hash: name.as_bytes().to_vec(),
            invited_by: user.id,
            expires_at: now + time::Duration::days(1),
        };
        db.teams()
            .create_invitation(user.org_id, &invitation, None, &event(user.org_id), now)
            .await
            .unwrap();
        let charge = Charge {
            org_id: user.org_id,
            metric: Metric::Verifications,
            amount: 1,
            idempotency_keys: &[name.to_owned()],
            quota: 10,
            period_start: now,
        };
        db.usage().charge(&charge, now).await.unwrap();
        let verification = crate::verifications::NewVerification {
            id: mailroom_core::VerificationId::generate(),
            user_id: Some(user.id),
            api_key_id: Some(key.id),
            address: format!("someone@{name}.example"),
            verdict: "deliverable".into(),
            cached: false,
            result: "{}".into(),
        };
        db.record_verifications(user.org_id, vec![verification], now)
            .await
            .unwrap();
        (user.org_id, user.id)
    }

    /// A PostgreSQL database, as the app's pool sees it, with tenants alpha and bravo.
    async fn two_tenants() -> Option<(TestDatabase, Database, OrgId, OrgId)> {
        let test_db = TestDatabase::postgres().await?;
        let db = crate::test_support::unlocked(&test_db).await;
        let (a, _) = tenant(&db, "alpha").await;
        let (b, _) = tenant(&db, "bravo").await;
        Some((test_db, db, a, b))
    }

    async fn count(connection: &mut PgConnection, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(connection)
            .await
            .unwrap()
    }

    const TENANT_TABLES: [&str; 5] = [
        "api_keys",
        "invitations",
        "usage_periods",
        "usage_charges",
        "verifications",
    ];

    /// On SQLite, where keys are cached: a revocation, or a move to another plan, holds
    /// on the very next lookup.
    #[tokio::test]
    async fn a_cached_key_is_read_again_after_any_write() {
        let test_db = TestDatabase::sqlite().await;
        let db = crate::test_support::connect(&test_db)
            .await
            .with_audit_key(b"test key");
        db.migrate().await.unwrap();
        let (org_id, _) = tenant(&db, "cached").await;
        let lookup_id = "000000cached";
        let key = db
            .api_keys()
            .api_key_by_lookup_id(lookup_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((key.revoked, key.requests_per_minute), (false, 60));

        let Pool::Sqlite(pool) = &db.pool else {
            panic!("SQLite");
        };
        sqlx::query("INSERT INTO plans (id, name, team, member_limit, verifications_per_month, key_requests_per_minute, key_requests_per_day) VALUES ('big', 'Big', TRUE, 50, 100000, 600, 100000)")
            .execute(pool)
            .await
            .unwrap();
        let key = db
            .api_keys()
            .api_key_by_lookup_id(lookup_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            key.requests_per_minute, 60,
            "served from the cache until a write"
        );
        let now = OffsetDateTime::now_utc();
        assert!(
            db.teams()
                .set_org_plan(
                    org_id,
                    &mailroom_core::org::PlanId::new("big"),
                    &event(org_id),
                    now
                )
                .await
                .unwrap()
        );
        let key = db
            .api_keys()
            .api_key_by_lookup_id(lookup_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(key.requests_per_minute, 600);

        db.api_keys()
            .revoke_api_key(org_id, key.id, &event(org_id), now)
            .await
            .unwrap();
        assert!(
            db.api_keys()
                .api_key_by_lookup_id(lookup_id)
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
    }

    /// On PostgreSQL (docs/security.md#row-level-security): as the app role, without saying whose, a transaction sees no
    /// tenant row; saying one organization, it sees that one's; it cannot write another's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_app_role_sees_no_tenant_rows_without_a_tenant() {
        let Some((test_db, db, a, b)) = two_tenants().await else {
            return;
        };

        // The test's own connection is the database's superuser: it sees everything.
        let mut raw = PgConnection::connect(test_db.url()).await.unwrap();
        for table in TENANT_TABLES {
            assert_eq!(count(&mut raw, table).await, 2, "{table}");
        }
        // As the app's role.
        let mut raw = PgConnection::connect(test_db.app_url().unwrap())
            .await
            .unwrap();
        for table in TENANT_TABLES {
            assert_eq!(count(&mut raw, table).await, 0, "{table} without a tenant");
        }
        sqlx::query("SELECT set_config('app.org_id', $1, false)")
            .bind(a.as_uuid().to_string())
            .execute(&mut raw)
            .await
            .unwrap();
        for table in TENANT_TABLES {
            assert_eq!(count(&mut raw, table).await, 1, "{table} as alpha");
        }
        let foreign = sqlx::query(
            "INSERT INTO api_keys (id, org_id, name, lookup_id, key_hash, scopes, created_at) \
             VALUES ($1, $2, 'x', 'foreignforei', '\\x00', 'verify', 0)",
        )
        .bind(Uuid::now_v7())
        .bind(b.as_uuid())
        .execute(&mut raw)
        .await;
        assert!(
            foreign.is_err(),
            "a row of another tenant's cannot be written"
        );
        let moved = sqlx::query("UPDATE api_keys SET name = 'stolen' WHERE org_id = $1")
            .bind(b.as_uuid())
            .execute(&mut raw)
            .await
            .unwrap();
        assert_eq!(moved.rows_affected(), 0);

        // The app's own paths still work through the policies.
        assert_eq!(
            db.api_keys()
                .api_keys(b, OffsetDateTime::now_utc())
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            db.api_keys()
                .api_key_by_lookup_id("0000000alpha")
                .await
                .unwrap()
                .is_some()
        );
    }

    /// A named cross-tenant path opens the command and the rows its use needs, no more: a
    /// key lookup only reads; the work queue's runner cannot move a job to another
    /// organization, nor read a bulk job's rows; a purge setting far in the future shows nothing fresh;
    /// an erased address's invitations cannot be changed, only deleted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cross_tenant_paths_open_only_what_they_need() {
        let Some((test_db, db, a, b)) = two_tenants().await else {
            return;
        };
        let now = OffsetDateTime::now_utc();
        crate::test_support::one_job(&db, a, now).await;

        let mut app = PgConnection::connect(test_db.app_url().unwrap())
            .await
            .unwrap();
        let setting = crate::test_support::set_for_the_session;
        let affected = async |app: &mut PgConnection, sql: &str| {
            sqlx::query(sql)
                .execute(app)
                .await
                .map(|done| done.rows_affected())
        };

        setting(&mut app, "app.api_key_lookup_id", "0000000alpha").await;
        assert_eq!(
            count(&mut app, "api_keys").await,
            1,
            "the lookup reads its key"
        );
        assert_eq!(
            affected(&mut app, "UPDATE api_keys SET name = 'stolen'")
                .await
                .unwrap(),
            0
        );
        assert_eq!(affected(&mut app, "DELETE FROM api_keys").await.unwrap(), 0);
        setting(&mut app, "app.api_key_lookup_id", "").await;

        setting(&mut app, "app.job_queue", "on").await;
        assert_eq!(
            count(&mut app, "jobs").await,
            0,
            "the queue opens to the upkeep secret, not to a flag"
        );
        setting(&mut app, "app.job_queue", &db.upkeep().unwrap().shown()).await;
        assert_eq!(count(&mut app, "jobs").await, 1);
        assert_eq!(
            count(&mut app, "verify_jobs").await,
            0,
            "the queue's runner sees a bulk job's rows only as its organization"
        );
        let moved = format!("UPDATE jobs SET org_id = '{}'", b.as_uuid());
        assert!(
            affected(&mut app, &moved).await.is_err(),
            "a queued job stays its organization's"
        );
        setting(&mut app, "app.job_queue", "").await;

        setting(&mut app, "app.purge_before", &i64::MAX.to_string()).await;
        for table in ["verifications", "verify_jobs"] {
            assert_eq!(
                count(&mut app, table).await,
                0,
                "{table}: nothing fresh to read"
            );
        }
        setting(&mut app, "app.purge_before", "").await;
        setting(&mut app, "app.purge_ended_before", &i64::MAX.to_string()).await;
        let mut owner = PgConnection::connect(test_db.url()).await.unwrap();
        sqlx::query("UPDATE verify_jobs SET status = 'cancelled', finished_at = $1")
            .bind(crate::accounts::ms(now))
            .execute(&mut owner)
            .await
            .unwrap();
        assert_eq!(
            count(&mut app, "verify_jobs").await,
            0,
            "a job cancelled just now is no one's to read"
        );
        setting(&mut app, "app.purge_ended_before", "").await;

        // Rows past their time are the purges' to read, and nobody else's: not a transaction
        // that says nothing, nor another tenant's.
        let long_ago = crate::accounts::ms(now - time::Duration::days(100));
        for sql in [
            "UPDATE verifications SET created_at = $1",
            "UPDATE verify_jobs SET created_at = $1, finished_at = $1",
        ] {
            sqlx::query(sql)
                .bind(long_ago)
                .execute(&mut owner)
                .await
                .unwrap();
        }
        for table in ["verifications", "verify_jobs"] {
            assert_eq!(count(&mut app, table).await, 0, "{table} without a setting");
        }
        setting(&mut app, "app.org_id", &b.as_uuid().to_string()).await;
        assert_eq!(
            count(&mut app, "verifications").await,
            1,
            "bravo's own, not alpha's"
        );
        assert_eq!(
            count(&mut app, "verify_jobs").await,
            0,
            "alpha's job is not bravo's"
        );
        setting(&mut app, "app.org_id", "").await;
        setting(
            &mut app,
            "app.purge_before",
            &crate::accounts::ms(now).to_string(),
        )
        .await;
        assert_eq!(count(&mut app, "verifications").await, 2);
        assert_eq!(count(&mut app, "verify_jobs").await, 1);
        setting(&mut app, "app.purge_before", "").await;
        setting(
            &mut app,
            "app.purge_ended_before",
            &crate::accounts::ms(now).to_string(),
        )
        .await;
        assert_eq!(
            count(&mut app, "verify_jobs").await,
            1,
            "ended long ago: the rows' purge reads it"
        );
        setting(&mut app, "app.purge_ended_before", "").await;

        setting(&mut app, "app.erase_email", "guest-of-alpha@example.test").await;
        assert_eq!(
            affected(&mut app, "UPDATE invitations SET role = 'admin'")
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            affected(&mut app, "DELETE FROM invitations").await.unwrap(),
            1
        );
        setting(&mut app, "app.erase_email", "").await;

        // Under its own organization, no row leaves it either.
        setting(&mut app, "app.org_id", &a.as_uuid().to_string()).await;
        let moved = format!("UPDATE api_keys SET org_id = '{}'", b.as_uuid());
        assert!(affected(&mut app, &moved).await.is_err());
    }
}
