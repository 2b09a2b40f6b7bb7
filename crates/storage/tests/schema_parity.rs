//! The two migration trees describe one schema: after both have run, SQLite and PostgreSQL have
//! the same tables, the same columns with the same nullability, and the same named indexes over
//! the same columns. Types are left out (BLOB and BYTEA, TEXT and TIMESTAMPTZ say the same
//! thing in two dialects); what each backend has alone is listed below, with its reason.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly, by design

use std::collections::BTreeSet;

use mailroom_storage::Database;
use mailroom_testkit::TestDatabase;
use sqlx::{Connection, PgConnection, SqliteConnection};

/// What one backend has and the other need not (the start of a fact), and why.
const ONLY_ON_POSTGRES: &[(&str, &str)] = &[
    (
        "platform_admins ",
        "the super-admins as a table the row policies can read (SQLite has no row policies)",
    ),
    (
        "installation column upkeep_digest ",
        "opens the row policies' upkeep paths to the secret only an unlocked node has",
    ),
    (
        "verifications index verifications_by_org ",
        "SQLite stores the log WITHOUT ROWID, keyed on (org_id, id) itself",
    ),
];
const ONLY_ON_SQLITE: &[(&str, &str)] = &[];

/// One fact about the schema, written the same way for both backends.
type Facts = BTreeSet<String>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_migration_trees_make_the_same_schema() {
    let sqlite = TestDatabase::sqlite().await;
    let Some(postgres) = TestDatabase::postgres().await else {
        return;
    };
    for db in [&sqlite, &postgres] {
        Database::connect(db.url())
            .await
            .unwrap()
            .migrate()
            .await
            .unwrap();
    }
    let on_sqlite = sqlite_facts(sqlite.url()).await;
    let on_postgres = postgres_facts(postgres.url()).await;

    let allowed = |facts: &Facts, only: &[(&str, &str)]| -> Vec<String> {
        facts
            .iter()
            .filter(|fact| !only.iter().any(|(start, _why)| fact.starts_with(start)))
            .cloned()
            .collect()
    };
    let missing_on_postgres: Vec<_> = allowed(&on_sqlite, ONLY_ON_SQLITE)
        .into_iter()
        .filter(|fact| !on_postgres.contains(fact))
        .collect();
    let missing_on_sqlite: Vec<_> = allowed(&on_postgres, ONLY_ON_POSTGRES)
        .into_iter()
        .filter(|fact| !on_sqlite.contains(fact))
        .collect();
    assert!(
        missing_on_postgres.is_empty() && missing_on_sqlite.is_empty(),
        "the migration trees have drifted apart\n\
         only on SQLite:\n  {}\nonly on PostgreSQL:\n  {}",
        missing_on_postgres.join("\n  "),
        missing_on_sqlite.join("\n  "),
    );
    assert!(on_sqlite.iter().any(|fact| fact.starts_with("jobs ")));
}

async fn sqlite_facts(url: &str) -> Facts {
    let mut connection = SqliteConnection::connect(url).await.unwrap();
    let mut facts = Facts::new();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    for table in tables {
        facts.insert(format!("{table} table"));
        let columns: Vec<(String, bool, i64)> =
            sqlx::query_as("SELECT name, \"notnull\", pk FROM pragma_table_info($1)")
                .bind(&table)
                .fetch_all(&mut connection)
                .await
                .unwrap();
        for (column, not_null, primary_key) in columns {
            // A key column is never null on PostgreSQL; SQLite says so only when told.
            facts.insert(column_fact(&table, &column, not_null || primary_key > 0));
        }
        let indexes: Vec<(String, bool)> =
            sqlx::query_as("SELECT name, \"unique\" FROM pragma_index_list($1) WHERE origin = 'c'")
                .bind(&table)
                .fetch_all(&mut connection)
                .await
                .unwrap();
        for (index, unique) in indexes {
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT COALESCE(name, '(expression)') FROM pragma_index_info($1) ORDER BY seqno",
            )
            .bind(&index)
            .fetch_all(&mut connection)
            .await
            .unwrap();
            facts.insert(index_fact(&table, &index, unique, &columns));
        }
    }
    facts
}

async fn postgres_facts(url: &str) -> Facts {
    let mut connection = PgConnection::connect(url).await.unwrap();
    let mut facts = Facts::new();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    for table in tables {
        facts.insert(format!("{table} table"));
    }
    let columns: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.is_nullable = 'NO' \
         FROM information_schema.columns c JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
           AND c.table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    for (table, column, not_null) in columns {
        facts.insert(column_fact(&table, &column, not_null));
    }
    // Indexes made by CREATE INDEX, not those behind a key or UNIQUE constraint (SQLite's
    // `origin = 'c'` draws the same line).
    let indexes: Vec<(String, String, bool, Vec<String>)> = sqlx::query_as(
        "SELECT t.relname::text, i.relname::text, x.indisunique, \
           ARRAY(SELECT COALESCE(a.attname::text, '(expression)') \
                 FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n) \
                 LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
                 ORDER BY k.n) \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_namespace s ON s.oid = t.relnamespace \
         WHERE s.nspname = current_schema() \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    for (table, index, unique, columns) in indexes {
        facts.insert(index_fact(&table, &index, unique, &columns));
    }
    facts
}

fn column_fact(table: &str, column: &str, not_null: bool) -> String {
    let null = if not_null { "not null" } else { "null" };
    format!("{table} column {column} {null}")
}

fn index_fact(table: &str, index: &str, unique: bool, columns: &[String]) -> String {
    let kind = if unique { "unique index" } else { "index" };
    format!("{table} {kind} {index} ({})", columns.join(", "))
}
