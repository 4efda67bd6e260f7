//! A data subject's key against real Postgres: every use in a tenant gets the same key, another
//! tenant gets its own, an erasure waits for the transactions sealing with the key to commit,
//! and a use after the erasure gets a new key that opens nothing sealed with the old one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dw_eventstore::personal::{self, Keys};
use dw_ids::TenantId;
use dw_testkit::TestDb;
use sqlx::Connection;

static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate::Migrator::DEFAULT));

const SUBJECT: &str = "phone:+5511987654321";

#[tokio::test]
async fn an_erasure_waits_for_the_sealing_transactions_and_later_uses_get_a_new_key() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let globex = TenantId::parse("globex").unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let first = personal::subject_key(&mut conn, &acme, SUBJECT).await.unwrap();
    let again = personal::subject_key(&mut conn, &acme, SUBJECT).await.unwrap();
    assert_eq!(first.id(), again.id(), "one key per subject and tenant");
    let other = personal::subject_key(&mut conn, &globex, SUBJECT).await.unwrap();
    assert_ne!(other.id(), first.id(), "each tenant its own");
    let sealed = first.seal("Ana Souza");

    // A transaction sealing with the key holds it: the erasure waits for its commit.
    let mut sealing = db.pool.begin().await.unwrap();
    personal::subject_key(&mut sealing, &acme, SUBJECT).await.unwrap();
    let (pool, tenant) = (db.pool.clone(), acme.clone());
    let erasure = tokio::spawn(async move {
        let mut conn = pool.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        let erased = personal::erase_subject(&mut tx, &tenant, SUBJECT).await.unwrap();
        tx.commit().await.unwrap();
        erased
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!erasure.is_finished(), "the erasure waits for the transaction sealing with the key");
    sealing.commit().await.unwrap();
    assert_eq!(erasure.await.unwrap(), Some(first.id()));

    // What the old key sealed reads as erased; a later use makes a new key; globex keeps its own.
    let keys = personal::keys(&mut conn, [first.id(), other.id()]).await.unwrap();
    assert_eq!(keys.open(&acme, &sealed), "");
    assert_eq!(keys.len(), 1, "globex's key is still there");
    let fresh = personal::subject_key(&mut conn, &acme, SUBJECT).await.unwrap();
    assert_ne!(fresh.id(), first.id());
    assert_eq!(Keys::of(&fresh).open(&acme, &sealed), "", "a new key does not open the old fields");
    assert_eq!(personal::subject_key(&mut conn, &globex, SUBJECT).await.unwrap().id(), other.id());
}
