//! The service over HTTP: the real binary's wiring on port 0, the Clarifai simulator in-process,
//! on SQLite and on PostgreSQL (each case runs on both; PostgreSQL cases need
//! `PROVISIONER_TEST_PG_URL`, and fail rather than skip when `PROVISIONER_TEST_REQUIRE_PG=1`).

mod helpers;

mod auto_keys;
mod budget;
mod cli;
mod errors;
mod faults;
mod isolation;
mod jobs;
mod jwks;
mod key_lifecycle;
mod kill9;
mod observability;
mod operations;
#[cfg(feature = "otlp")]
mod otlp;
mod process;
mod reconcile;
mod replicas;
mod scim;
mod secrets;
mod tenants;
mod users;
mod webhook_receiver;
mod webhooks;

/// Runs each listed `async fn(TestApp)` case on SQLite and on PostgreSQL; with
/// `settings = f;` first, each app is built with `spawn_app_with(db, f)` (`f` is resolved
/// inside the generated `sqlite` / `postgres` modules: write `super::f`).
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        $crate::on_both_backends!(@spawn ($crate::helpers::spawn_app); $($case),*);
    };
    (settings = $tweak:expr; $($case:ident),* $(,)?) => {
        $crate::on_both_backends!(@spawn (|db| $crate::helpers::spawn_app_with(db, $tweak)); $($case),*);
    };
    (@spawn $spawn:tt; $($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let app = $spawn($crate::helpers::Db::Sqlite).await.expect("sqlite app");
                    super::$case(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(app) = $spawn($crate::helpers::Db::Postgres).await else {
                        eprintln!("PostgreSQL unreachable: skipped (set PROVISIONER_TEST_REQUIRE_PG=1 to fail instead)");
                        return;
                    };
                    super::$case(app).await;
                }
            )*
        }
    };
}
