//! The contract of every `Store` method, written once for all backends. Each check is a
//! generic `async fn` given a fresh, empty store; `conformance!` runs every check against
//! one backend as its own test: SQLite, and PostgreSQL (a throwaway server for this test
//! binary, a database per check). Another backend is one more line at the bottom, with a
//! function that opens a fresh store of it.

mod client_groups;
mod clients;
mod cluster;
mod concurrency;
mod fixtures;
mod projects;
mod records;
mod sessions;
mod stored_tunnels;
mod tunnels;
mod user_groups;
mod users;

use std::sync::Arc;

use rport_store::Store;

/// A fresh, empty store, and what must live as long as it (its directory, its database).
pub struct Fresh {
    pub store: Arc<dyn Store>,
    _keep: Box<dyn std::any::Any + Send>,
}

/// Runs every check of this suite against the backend `$open` opens.
macro_rules! conformance {
    ($backend:ident, $open:path) => {
        mod $backend {
            conformance!(@checks $open;
                clients::agents_are_upserted_listed_and_deleted,
                clients::disconnecting_and_purging_agents,
                clients::heartbeats_are_batched_and_never_move_back,
                tunnels::tunnels_round_trip_and_filter,
                tunnels::a_tunnel_id_is_unique,
                tunnels::counter_deltas_add_up_and_change_nothing_else,
                tunnels::options_status_and_end_change_only_themselves,
                tunnels::changes_to_a_missing_tunnel_report_it,
                projects::projects_start_with_default_and_keys_are_unique,
                projects::only_an_empty_project_is_deleted_with_its_roles,
                users::users_round_trip_with_their_roles,
                users::deleting_a_user_takes_its_roles_and_tokens,
                users::the_last_administrator_is_kept,
                users::rport_user_fields_round_trip,
                users::renaming_a_user_takes_its_roles_and_tokens,
                users::an_api_token_changes_name_scope_and_expiry_only,
                user_groups::user_groups_round_trip_and_replace,
                user_groups::memberships_follow_users_and_groups,
                records::agent_credentials_are_inserted_listed_and_deleted,
                records::a_generated_setting_is_inserted_once,
                records::audit_entries_filter_page_and_purge,
                records::api_tokens_belong_to_their_user,
                records::revoked_tokens_are_forgotten_when_expired,
                stored_tunnels::stored_tunnels_are_kept_per_agent_and_go_with_it,
                sessions::sessions_are_listed_touched_deleted_and_purged,
                sessions::a_totp_secret_is_set_once_and_goes_with_its_user,
                concurrency::concurrent_counter_deltas_sum_exactly,
                concurrency::of_concurrent_inserts_of_one_key_exactly_one_wins,
                concurrency::of_two_admins_deleted_at_once_one_stays,
                concurrency::of_two_admins_demoted_at_once_one_stays,
                concurrency::a_project_gaining_an_agent_while_deleted_is_never_left_with_it,
                cluster::nodes_renew_and_expire_by_the_store_clock,
                cluster::an_agent_is_held_by_one_live_node,
                cluster::a_starting_node_releases_only_its_own_agents,
                cluster::of_nodes_claiming_one_agent_at_once_one_wins,
                cluster::a_node_adopts_an_agents_live_tunnels,
                cluster::events_are_numbered_read_after_and_purged,
                client_groups::client_groups_are_put_listed_and_deleted,
                client_groups::agent_overrides_are_set_and_go_with_the_agent,
                client_groups::a_deleted_projects_groups_go_with_it,
            );
        }
    };
    (@checks $open:path; $($module:ident :: $check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let fresh: $crate::Fresh = $open().await;
                $crate::$module::$check(std::sync::Arc::clone(&fresh.store)).await;
            }
        )*
    };
}

async fn sqlite() -> Fresh {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = rport_store::DatabaseSettings::default();
    let store = rport_store::open(&settings, dir.path())
        .await
        .expect("open SQLite");
    Fresh {
        store,
        _keep: Box::new(dir),
    }
}

/// A database of its own on the throwaway server this test binary shares.
async fn postgres() -> Fresh {
    let server = rport_test_postgres::TempPostgres::shared().expect("PostgreSQL for tests");
    let url = server
        .create_unique_database("conformance")
        .expect("a database");
    let url = rport_store::PostgresUrl::parse(&url).expect("the harness's URL");
    let settings = rport_store::DatabaseSettings::Postgres { url };
    let store = rport_store::open(&settings, std::path::Path::new("unused"))
        .await
        .expect("open PostgreSQL");
    Fresh {
        store,
        _keep: Box::new(()),
    }
}

conformance!(sqlite, crate::sqlite);
conformance!(postgres, crate::postgres);
