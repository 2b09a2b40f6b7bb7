//! Row-level security as a database administrator checks it (docs/security.md#tenant-scoping), on PostgreSQL: what the
//! catalog says of every table, and what the app role sees without saying whose it acts for.

use mailroom_core::audit::{Action, AuditEvent};
use mailroom_core::{SessionId, UserId};
use mailroom_testkit::TestDatabase;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Database;
use crate::accounts::{Device, NewSession};
use crate::tokens::NewRefreshToken;
use crate::two_factor::NewTrustedDevice;
use mailroom_core::EmailAddress;
use mailroom_core::accounts::CodePurpose;

/// The platform's own tables: no tenant's or user's data in them.
const SYSTEM_TABLES: [&str; 7] = [
    "_sqlx_migrations",
    "installation",
    "keyring",
    // Hashes of sign-in flows' random states.
    "oauth_spent_states",
    "plans",
    "platform_admins",
    "setup_token",
];

/// The app role's own login (trust authentication on the test cluster).
async fn as_app(test_db: &TestDatabase, db: &Database) -> PgConnection {
    let mut url = url::Url::parse(test_db.url()).unwrap();
    url.set_username(&db.app_role().unwrap().unwrap()).unwrap();
    url.set_password(None).unwrap();
    PgConnection::connect(url.as_str()).await.unwrap()
}

/// Every table but the platform's has row security enabled, forced on its owner too, and a
/// policy — tables added later included.
#[tokio::test]
async fn every_tenant_and_user_table_has_forced_row_security() {
    let Some(test_db) = TestDatabase::postgres().await else {
        return;
    };
    let db = crate::test_support::installed(&test_db).await;
    let mut owner = PgConnection::connect(test_db.url()).await.unwrap();
    let tables: Vec<(String, bool, bool, i64)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity, \
         (SELECT COUNT(*) FROM pg_policies p WHERE p.schemaname = n.nspname \
          AND p.tablename = c.relname) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(tables.len() > SYSTEM_TABLES.len());
    let mut uncovered = Vec::new();
    for (table, enabled, forced, policies) in &tables {
        if SYSTEM_TABLES.contains(&table.as_str()) {
            continue;
        }
        if !(*enabled && *forced && *policies > 0) {
            uncovered.push(table.as_str());
        }
    }
    assert!(
        uncovered.is_empty(),
        "tables without forced row security: {uncovered:?}"
    );
    // A path over every tenant's rows is keyed on a secret or a time, never opened by a flag.
    let flags: Vec<String> = sqlx::query_scalar(
        "SELECT tablename || '.' || policyname FROM pg_policies \
         WHERE coalesce(qual, '') || coalesce(with_check, '') ~ '''on''::text'",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(flags.is_empty(), "policies opened by a flag: {flags:?}");
    drop(db);
}

/// The paths over every tenant's rows that no tenant's setting opens — re-sealing, the
/// keyring's upkeep, the audit's verification, the job claim — open to the upkeep secret of an
/// unlocked node and to nothing a role could guess or read; and what they may change of a row
/// is its sealed value (its wrapped key), nothing else.
#[tokio::test]
async fn upkeep_paths_open_to_the_upkeep_secret_only() {
    let Some(test_db) = TestDatabase::postgres().await else {
        return;
    };
    let db = crate::test_support::installed(&test_db).await;
    let now = OffsetDateTime::now_utc();
    let user = crate::test_support::account(&db, "upkeep@example.test", now).await;
    assert!(
        db.two_factor()
            .start_totp_enrollment(user.id, b"twenty bytes secret!", now)
            .await
            .unwrap()
    );
    db.audit()
        .append_audit(
            &crate::test_support::event(user.org_id, Action::SigninSucceeded),
            now,
        )
        .await
        .unwrap();
    crate::test_support::one_job(&db, user.org_id, now).await;

    let mut owner = PgConnection::connect(test_db.url()).await.unwrap();
    let digest: Vec<u8> =
        sqlx::query_scalar("SELECT upkeep_digest FROM installation WHERE singleton = 1")
            .fetch_one(&mut owner)
            .await
            .unwrap();
    let secret = db.upkeep().unwrap().shown();
    let mut app = as_app(&test_db, &db).await;
    let set = crate::test_support::set_for_the_session;
    let count = async |app: &mut PgConnection, table: &str| -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(app)
            .await
            .unwrap()
    };
    let paths: [(&str, &[&str]); 4] = [
        ("app.reseal", &["mfa_totp"]),
        ("app.keyring", &["data_keys"]),
        ("app.audit_verify", &["audit_log", "audit_heads"]),
        ("app.job_queue", &["jobs"]),
    ];
    let zeros = "0".repeat(64);
    let shown_digest = hex::encode(&digest);
    let guesses = ["on", "true", &zeros, &shown_digest];
    for (setting, tables) in paths {
        for guess in guesses {
            set(&mut app, setting, guess).await;
            for table in tables {
                assert_eq!(count(&mut app, table).await, 0, "{setting} = {guess}");
            }
        }
        set(&mut app, setting, &secret).await;
        for table in tables {
            assert!(count(&mut app, table).await > 0, "{setting}: {table}");
        }
        set(&mut app, setting, "").await;
    }

    let changed = async |app: &mut PgConnection, sql: &str| {
        let mut tx = app.begin().await.unwrap();
        let done = sqlx::query(sql).execute(&mut *tx).await;
        tx.rollback().await.unwrap();
        match done {
            Ok(done) => Ok(done.rows_affected()),
            Err(sqlx::Error::Database(error)) => Err(error.code().unwrap_or_default().into_owned()),
            Err(error) => panic!("{sql}: {error}"),
        }
    };
    let upkeep_changes: [(&str, &str, &str, [&str; 2]); 2] = [
        (
            "app.reseal",
            "mfa_totp",
            "secret",
            ["enabled_at = 1", "last_used_step = 7, secret = secret"],
        ),
        (
            "app.keyring",
            "data_keys",
            "wrapped",
            ["created_at = 0", "version = version + 1"],
        ),
    ];
    for (setting, table, sealed, others) in upkeep_changes {
        set(&mut app, setting, &secret).await;
        let resealed = format!("UPDATE {table} SET {sealed} = {sealed}");
        assert_eq!(changed(&mut app, &resealed).await, Ok(1));
        for assignments in others {
            let sql = format!("UPDATE {table} SET {assignments}");
            let refused = Err("42501".to_owned());
            assert_eq!(changed(&mut app, &sql).await, refused, "{sql}");
        }
        set(&mut app, setting, "").await;
    }
}

/// The app role, saying nothing of whose it acts for, sees no row of any table under row
/// security; saying one user, it sees that user's rows and no other's.
#[tokio::test]
async fn the_app_role_sees_nothing_without_a_setting_and_one_user_as_that_user() {
    let Some(test_db) = TestDatabase::postgres().await else {
        return;
    };
    let db = crate::test_support::installed(&test_db).await;
    let now = OffsetDateTime::now_utc();
    let mut users = Vec::new();
    for name in ["alpha", "bravo"] {
        let email = format!("{name}@example.test");
        let user = crate::test_support::account(&db, &email, now).await;
        assert!(
            db.two_factor()
                .start_totp_enrollment(user.id, b"twenty bytes secret!", now)
                .await
                .unwrap()
        );
        let sealed = db.two_factor().totp(user.id).await.unwrap().unwrap().sealed;
        assert!(
            db.two_factor()
                .enable_totp(user.id, &sealed, 1, &[name.as_bytes().to_vec()], now)
                .await
                .unwrap()
        );
        db.two_factor()
            .create_mfa_challenge(user.id, name.as_bytes(), now + time::Duration::minutes(5))
            .await
            .unwrap();
        let device = NewTrustedDevice {
            id: mailroom_core::TrustedDeviceId::generate(),
            token_hash: format!("{name} device").into_bytes(),
            ip: "192.0.2.1".into(),
            user_agent: None,
            expires_at: now + time::Duration::days(30),
        };
        db.two_factor()
            .add_trusted_device(user.id, &device, now)
            .await
            .unwrap();
        let session = NewSession {
            id: SessionId::generate(),
            token_hash: format!("{name} session").into_bytes(),
            ip: "192.0.2.1".into(),
            user_agent: None,
            expires_at: now + time::Duration::days(30),
        };
        let signed_in = AuditEvent {
            actor: Some(user.id),
            ..crate::test_support::event(user.org_id, Action::SigninSucceeded)
        };
        db.accounts()
            .create_session(user.id, &session, &signed_in, None, now)
            .await
            .unwrap();
        let first = NewRefreshToken {
            id: Uuid::now_v7(),
            token_hash: format!("{name} refresh").into_bytes(),
            access_jti: Uuid::now_v7(),
            access_iat: now,
        };
        let device = Device {
            ip: "192.0.2.1",
            user_agent: None,
        };
        db.tokens()
            .start_token_family(
                user.id,
                &first,
                now + time::Duration::days(30),
                crate::accounts::SignInRecord {
                    device,
                    event: &signed_in,
                    new_device_mail: None,
                },
                now,
            )
            .await
            .unwrap();
        let address = EmailAddress::parse(&email).unwrap();
        db.lockout()
            .open_login_attempt(&address, now)
            .await
            .unwrap();
        db.accounts()
            .save_code(
                CodePurpose::PasswordReset,
                &address,
                name.as_bytes(),
                now + time::Duration::minutes(5),
                None,
                now,
            )
            .await
            .unwrap();
        let identity = crate::identities::ProviderIdentity {
            provider: "corp".into(),
            issuer: "https://idp.example".into(),
            subject: name.to_owned(),
            email: email.clone(),
            display_name: None,
            picture_url: None,
        };
        db.identities()
            .link(user.id, &identity, &signed_in, now)
            .await
            .unwrap();
        users.push(user.id);
    }

    let mut owner = PgConnection::connect(test_db.url()).await.unwrap();
    let protected: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, EXISTS (SELECT 1 FROM pg_policies p \
         WHERE p.schemaname = n.nspname AND p.tablename = c.relname \
         AND p.qual LIKE '%app.user_id%'), EXISTS (SELECT 1 FROM pg_policies p \
         WHERE p.schemaname = n.nspname AND p.tablename = c.relname \
         AND p.qual LIKE '%app.email%') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relrowsecurity",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    let mut app = as_app(&test_db, &db).await;
    let count = async |connection: &mut PgConnection, sql: &str, user: Option<UserId>| -> i64 {
        let query = sqlx::query_scalar(sql);
        let query = match user {
            Some(user) => query.bind(user.as_uuid()),
            None => query,
        };
        query.fetch_one(connection).await.unwrap()
    };
    // Nothing to read, change or delete — with every setting the policies name never set,
    // and set to '' (what a pooled connection reads after a transaction-local setting ends).
    let settings: Vec<String> = sqlx::query_scalar(
        r"SELECT DISTINCT (regexp_matches(coalesce(qual, '') || coalesce(with_check, ''),
          'current_setting\(''(app\.[a-z_]+)''', 'g'))[1] FROM pg_policies",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(settings.len() > 10, "{settings:?}");
    for pass in ["never set", "set to ''"] {
        for (table, _, _) in &protected {
            let all = format!("SELECT COUNT(*) FROM {table}");
            assert_eq!(
                count(&mut app, &all, None).await,
                0,
                "{table}, settings {pass}"
            );
            let column: String = sqlx::query_scalar(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass \
                 AND attnum = 1",
            )
            .bind(table)
            .fetch_one(&mut owner)
            .await
            .unwrap();
            for sql in [
                format!("UPDATE {table} SET {column} = {column}"),
                format!("DELETE FROM {table}"),
            ] {
                // Refused outright (a column the app may not change) is as good as no row.
                let mut tx = app.begin().await.unwrap();
                match sqlx::query(&sql).execute(&mut *tx).await {
                    Ok(done) => assert_eq!(done.rows_affected(), 0, "{sql}, settings {pass}"),
                    Err(sqlx::Error::Database(error))
                        if error.code().as_deref() == Some("42501") => {}
                    Err(error) => panic!("{sql}: {error}"),
                }
                tx.rollback().await.unwrap();
            }
        }
        for setting in &settings {
            sqlx::query("SELECT set_config($1, '', false)")
                .bind(setting)
                .execute(&mut app)
                .await
                .unwrap();
        }
    }

    let [alpha, _] = <[UserId; 2]>::try_from(users).unwrap();
    sqlx::query("SELECT set_config('app.user_id', $1, false)")
        .bind(alpha.as_uuid().to_string())
        .execute(&mut app)
        .await
        .unwrap();
    // The erasure path blanks personal fields, and cannot rewrite what an entry records.
    let mut tx = app.begin().await.unwrap();
    sqlx::raw_sql(&format!(
        "SELECT set_config('app.erase_user', '{}', true), set_config('app.erased_at', '1', true)",
        alpha.as_uuid()
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    let rewritten = sqlx::query(
        "UPDATE audit_log SET outcome = 'failure', erased_at = 1, actor_user_id = NULL, \
         target = NULL, ip = NULL, user_agent = NULL, subject = NULL WHERE actor_user_id = $1",
    )
    .bind(alpha.as_uuid())
    .execute(&mut *tx)
    .await;
    assert!(rewritten.is_err(), "{rewritten:?}");
    tx.rollback().await.unwrap();
    // Acting for a user is no way to make them an administrator of the platform.
    for sql in [
        "UPDATE users SET platform_role = 'super_admin' WHERE id = $1",
        "INSERT INTO platform_admins (user_id) VALUES ($1)",
    ] {
        let refused = sqlx::query(sql)
            .bind(alpha.as_uuid())
            .execute(&mut app)
            .await;
        assert!(refused.is_err(), "{sql}");
    }
    for (table, keyed_by_user, _) in &protected {
        let all = format!("SELECT COUNT(*) FROM {table}");
        if !keyed_by_user {
            assert_eq!(count(&mut app, &all, None).await, 0, "{table} as a user");
            continue;
        }
        // The log names its people as actors, `users` is keyed by them; every other table
        // names them as users.
        let column = match table.as_str() {
            "audit_log" => "actor_user_id",
            "users" => "id",
            _ => "user_id",
        };
        let theirs = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
        let stored = count(&mut owner, &theirs, Some(alpha)).await;
        assert!(stored > 0, "{table}: the test stores a row of alpha's");
        assert_eq!(
            count(&mut app, &all, None).await,
            stored,
            "{table}: alpha's, and only alpha's"
        );
    }
    // Saying one address instead, the rows kept about that address.
    sqlx::raw_sql("SELECT set_config('app.user_id', '', false), set_config('app.email', 'alpha@example.test', false)")
        .execute(&mut app)
        .await
        .unwrap();
    for (table, _, keyed_by_address) in &protected {
        if !keyed_by_address {
            continue;
        }
        let theirs = format!("SELECT COUNT(*) FROM {table} WHERE email = 'alpha@example.test'");
        let stored = count(&mut owner, &theirs, None).await;
        let all = format!("SELECT COUNT(*) FROM {table}");
        assert!(
            stored > 0 || *table == "pending_signups" || *table == "invitations",
            "{table}"
        );
        assert_eq!(
            count(&mut app, &all, None).await,
            stored,
            "{table}: alpha's address only"
        );
    }
}
