//! The store written outside the crate keeps the store contract: the same check, through the
//! same public entry point, as every store of `tower-app-sessions`, in memory and in a file.

use tower_app_sessions::testing::{check_store, RULES};
use tower_app_sessions_sqlite_example::SqliteStore;

#[tokio::test]
async fn an_in_memory_database_keeps_the_contract() {
    let report = check_store(|| async {
        SqliteStore::in_memory()
            .await
            .expect("SQLite opens a database in memory")
    })
    .await;
    report.assert_ok();
    assert_eq!(report.passed(), RULES);
}

#[tokio::test]
async fn a_database_file_keeps_the_contract() {
    let dir = std::env::temp_dir().join(format!("sqlite-store-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sessions.db");
    // One file for every rule, as an application restarts on its database: rules use ids and
    // users of their own.
    check_store(|| async {
        SqliteStore::file(&path)
            .await
            .expect("SQLite opens the file")
    })
    .await
    .assert_ok();
    std::fs::remove_dir_all(&dir).unwrap();
}
