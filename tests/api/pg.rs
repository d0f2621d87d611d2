//! PostgreSQL for the cluster tests: `OXCELIZE_TEST_POSTGRES_URL` (set by `.ci/services.sh`), each test in a
//! fresh schema of its own (the URL's `options` put it first on the search path), dropped afterwards.
#![allow(dead_code)]

use tokio_postgres::NoTls;

pub const URL_VAR: &str = "OXCELIZE_TEST_POSTGRES_URL";

/// A schema that exists while this value lives; `url` connects with it as the search path.
pub struct TestSchema {
    pub url: String,
    base: String,
    name: String,
}

/// Runs `sql` on the server of `url` from a thread of its own (callable from sync and async tests).
fn admin(url: &str, sql: String) -> Result<(), String> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let (client, connection) =
                tokio_postgres::connect(&url, NoTls).await.map_err(|e| e.to_string())?;
            let driver = tokio::spawn(connection);
            let out = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            drop(client);
            let _ = driver.await;
            out
        })
    })
    .join()
    .map_err(|_| "admin thread panicked".to_string())?
}

/// A fresh schema, or `None` (saying so) when no PostgreSQL is configured for the tests.
pub fn fresh_schema(test: &str) -> Option<TestSchema> {
    let Ok(base) = std::env::var(URL_VAR) else {
        eprintln!(
            "skipped {test}: {URL_VAR} is not set (`eval \"$(.ci/services.sh start DIR)\"` provides it)"
        );
        return None;
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    admin(&base, format!("CREATE SCHEMA {name}")).expect("create a test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{name}");
    Some(TestSchema { url, base, name })
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let _ = admin(&self.base, format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}
