//! The service over HTTP: the real binary's wiring on port 0, the Clarifai simulator in-process,
//! on SQLite and on PostgreSQL (each case runs on both; PostgreSQL cases need
//! `PROVISIONER_TEST_PG_URL`, and fail rather than skip when `PROVISIONER_TEST_REQUIRE_PG=1`).

mod helpers;

mod errors;
mod isolation;
mod reconcile;
mod secrets;
mod tenants;
mod users;

/// Runs each listed `async fn(TestApp)` case on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let app = $crate::helpers::spawn_app($crate::helpers::Db::Sqlite).await.expect("sqlite app");
                    super::$case(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(app) = $crate::helpers::spawn_app($crate::helpers::Db::Postgres).await else {
                        eprintln!("PostgreSQL unreachable: skipped (set PROVISIONER_TEST_REQUIRE_PG=1 to fail instead)");
                        return;
                    };
                    super::$case(app).await;
                }
            )*
        }
    };
}
