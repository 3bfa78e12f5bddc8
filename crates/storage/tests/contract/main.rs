//! The storage contract: every case is written once, as `async fn(&SqlStore)`, and run against
//! a fresh SQLite database and a fresh PostgreSQL database (skipped with a note when
//! PostgreSQL is unreachable, unless `PROVISIONER_TEST_REQUIRE_PG=1`).

mod accounts;
mod audit;
mod budget;
mod fixtures;
mod idempotency;
mod jobs;
mod key_age;
mod leases;
mod scim;
mod sqlite_only;
mod tenants;
mod users;
mod webhooks;

/// Generates `sqlite::<case>` and `postgres::<case>` tests calling `<module>::<case>`.
macro_rules! contract {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = provisioner_storage::testing::fresh_sqlite().await;
                    crate::$module::$case(&store).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((store, _url, guard)) = provisioner_storage::testing::fresh_postgres().await else {
                        eprintln!("note: PostgreSQL unreachable, skipping postgres::{}", stringify!($case));
                        return;
                    };
                    crate::$module::$case(&store).await;
                    store.close().await;
                    drop(guard);
                }
            )*
        }
    };
}

contract!(
    tenants::tenant_insert_get_update_and_duplicate,
    tenants::a_tenant_update_with_an_old_version_fails_and_changes_nothing,
    tenants::maintenance_tasks_are_recorded_once,
    tenants::periodic_work_is_claimed_by_one_holder_until_its_claim_lapses,
    tenants::tenants_list_in_id_order_with_keyset_pagination,
    tenants::profiles_are_created_replaced_listed_and_deleted,
    tenants::delete_tenant_refuses_live_users_and_cascades,
    users::insert_user_refuses_a_duplicate,
    users::concurrent_inserts_of_one_user_have_exactly_one_winner,
    leases::acquire_lease_takes_free_or_expired_leases_only,
    leases::update_user_requires_the_lease_owner,
    leases::release_leases_frees_only_one_instances_leases,
    users::every_user_field_round_trips,
    users::list_users_paginates_in_byte_order_with_status_filter,
    users::find_by_fingerprint_finds_current_and_retired_keys,
    leases::due_users_returns_pending_and_expired_work_oldest_first,
    leases::acquire_lease_is_conditioned_on_the_version_read,
    leases::renew_lease_is_a_compare_and_swap_on_owner_and_generation,
    leases::defer_user_backs_a_row_off_and_releases_it,
    leases::claim_due_user_never_hands_one_row_to_two_claimers,
    leases::an_app_id_clash_is_not_reported_as_the_row_existing,
    users::count_users_by_status_counts_one_tenant,
    audit::a_failed_audit_insert_rolls_the_change_back,
    audit::list_audit_filters_by_tenant_cursor_and_time,
    audit::an_event_committed_late_is_never_skipped_by_a_cursor,
    audit::ready_and_migrations_are_idempotent,
    idempotency::idempotency_records_round_trip_and_only_expired_ones_are_replaced,
    idempotency::an_idempotency_claim_is_taken_only_when_free_or_expired,
    idempotency::a_bound_user_write_commits_with_its_record_or_not_at_all,
    accounts::auto_key_learning_counts_clean_checks_and_a_sighting_resets_them,
    accounts::concurrent_auto_key_records_lose_nothing,
    jobs::a_job_and_its_items_round_trip,
    jobs::outcomes_count_once_and_the_job_ends_with_its_last_item,
    jobs::concurrent_claimers_never_share_an_item,
    jobs::cancel_stops_items_not_started_and_started_ones_finish,
    jobs::a_deleted_tenant_takes_its_jobs_with_it,
    budget::concurrent_reservations_share_one_window,
    budget::interactive_reservations_burst_until_the_window_is_full,
    budget::a_holder_that_stalls_mid_reservation_does_not_block_the_account,
    jobs::a_started_item_of_a_cancelled_job_is_still_claimed_and_the_job_ends,
    jobs::an_item_that_does_not_read_back_fails_alone,
    scim::scim_config_round_trips_and_is_replaced,
    scim::a_new_scim_token_cuts_the_others_short_and_tokens_are_found_and_deleted,
    scim::every_scim_user_field_round_trips,
    scim::scim_user_names_and_external_ids_are_unique_among_live_users,
    scim::scim_user_updates_are_conditioned_on_the_version_read,
    scim::list_scim_users_applies_every_condition_and_pages,
    scim::the_scim_sync_claim_takes_only_unsynced_due_rows,
    scim::concurrent_scim_sync_claimers_never_share_a_row,
    scim::finishing_a_scim_sync_records_its_outcome,
    scim::a_deleted_tenant_takes_its_scim_records_with_it,
    webhooks::webhook_endpoints_round_trip_and_updates_are_conditioned_on_the_version,
    webhooks::an_audited_write_writes_its_webhook_events_and_one_delivery_per_wanting_endpoint,
    webhooks::a_write_that_fails_writes_none_of_its_webhook_events,
    webhooks::the_webhook_delivery_claim_takes_due_deliveries_of_enabled_endpoints_earliest_first,
    webhooks::concurrent_webhook_delivery_claimers_never_share_a_delivery,
    webhooks::recording_webhook_attempts_updates_the_delivery_and_the_endpoint,
    webhooks::disabling_a_webhook_endpoint_writes_its_event_to_the_other_endpoints,
    webhooks::webhook_deliveries_list_newest_event_first_with_filters_and_pages,
    webhooks::webhook_requeue_resends_one_delivery_or_recovers_failed_ones,
    webhooks::deleting_an_endpoint_or_tenant_takes_its_webhook_records,
    webhooks::a_webhook_endpoint_deleted_during_a_write_gets_no_delivery,
    webhooks::late_attempts_and_stale_failure_clocks_change_nothing,
    webhooks::old_ended_webhook_messages_are_purged,
    key_age::a_profiles_key_age_policy_round_trips,
    key_age::keys_older_than_finds_only_idle_active_users_of_the_profile,
);
