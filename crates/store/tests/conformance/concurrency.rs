//! Writers at once: no lost update, no rule broken between a check and its act. Tasks
//! run on several threads; each check repeats a bounded number of rounds.

use std::sync::Arc;

use rport_store::{AdminGuard, ProjectRemoval, Store, TunnelCounters, UserWrite};
use tokio::task::JoinSet;

use crate::fixtures::{client, credential, now, project, tunnel, user};

const ROUNDS: usize = 10;

async fn all<T: Send + 'static>(tasks: JoinSet<T>) -> Vec<T> {
    tasks.join_all().await
}

pub async fn concurrent_counter_deltas_sum_exactly(store: Arc<dyn Store>) {
    let mut t = tunnel("t1", "a");
    t.counters = TunnelCounters::default();
    store.insert_tunnel(&t).await.expect("insert");
    const TASKS: u64 = 8;
    const ADDS: u64 = 25;
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            for _ in 0..ADDS {
                let delta = TunnelCounters {
                    connections: 1,
                    refused: task,
                    bytes_in: 1000,
                    bytes_out: 7,
                };
                assert!(
                    store
                        .add_tunnel_counters("t1", delta, now())
                        .await
                        .expect("add")
                );
            }
        });
    }
    all(tasks).await;
    let got = store.get_tunnel("t1").await.expect("get").expect("present");
    assert_eq!(
        got.counters,
        TunnelCounters {
            connections: TASKS * ADDS,
            refused: (0..TASKS).sum::<u64>() * ADDS,
            bytes_in: TASKS * ADDS * 1000,
            bytes_out: TASKS * ADDS * 7,
        }
    );
}

pub async fn of_concurrent_inserts_of_one_key_exactly_one_wins(store: Arc<dyn Store>) {
    const TASKS: usize = 6;
    for round in 0..ROUNDS {
        let key = format!("k{round}");
        let mut tasks = JoinSet::new();
        for task in 0..TASKS {
            let (store, key) = (Arc::clone(&store), key.clone());
            tasks.spawn(async move {
                let value = format!("value {task}");
                let setting = store
                    .setting_or_insert(&key, &value)
                    .await
                    .expect("setting");
                let mut admin = user(&key, true);
                admin.password_hash = value.clone();
                let user = store.insert_user(&admin).await.expect("user");
                let mut cred = credential(&key, "default");
                cred.hash = value.clone();
                let cred = store
                    .insert_agent_credential(&cred)
                    .await
                    .expect("credential");
                let project = store.insert_project(&project(&key)).await.expect("project");
                (value, setting, user, cred, project)
            });
        }
        let results = all(tasks).await;
        let settings: Vec<&String> = results.iter().map(|r| &r.1).collect();
        assert!(
            settings.iter().all(|s| *s == settings[0]),
            "every inserter got the one stored value: {settings:?}"
        );
        assert!(results.iter().any(|r| &r.0 == settings[0]), "one of theirs");
        for (what, wins) in [
            ("user", results.iter().filter(|r| r.2).count()),
            ("credential", results.iter().filter(|r| r.3).count()),
            ("project", results.iter().filter(|r| r.4).count()),
        ] {
            assert_eq!(wins, 1, "{what} {key}: exactly one insert wins");
        }
        // The winner's record is the one kept, whole.
        let winner = &results.iter().find(|r| r.2).expect("a winner").0;
        let stored = store.get_user(&key).await.expect("get").expect("stored");
        assert_eq!(&stored.password_hash, winner);
    }
}

pub async fn of_two_admins_deleted_at_once_one_stays(store: Arc<dyn Store>) {
    two_admins_at_once(store, AdminChange::Delete).await;
}

pub async fn of_two_admins_demoted_at_once_one_stays(store: Arc<dyn Store>) {
    two_admins_at_once(store, AdminChange::Demote).await;
}

#[derive(Clone, Copy)]
enum AdminChange {
    Delete,
    Demote,
}

/// The only two administrators lose their right at once: exactly one change goes ahead.
async fn two_admins_at_once(store: Arc<dyn Store>, change: AdminChange) {
    for round in 0..ROUNDS {
        let names = [format!("a{round}"), format!("b{round}")];
        for name in &names {
            assert!(store.insert_user(&user(name, true)).await.expect("insert"));
        }
        let mut tasks = JoinSet::new();
        for name in names.clone() {
            let store = Arc::clone(&store);
            tasks.spawn(async move {
                let guard = AdminGuard::KeepOne;
                match change {
                    AdminChange::Delete => store.delete_user(&name, guard).await,
                    AdminChange::Demote => store.update_user(&user(&name, false), guard).await,
                }
                .expect("change")
            });
        }
        let mut outcomes = all(tasks).await;
        outcomes.sort_by_key(|o| *o == UserWrite::LastAdmin);
        assert_eq!(outcomes, [UserWrite::Done, UserWrite::LastAdmin]);
        let admins = store
            .list_users()
            .await
            .expect("list")
            .into_iter()
            .filter(|u| u.is_admin)
            .count();
        assert_eq!(admins, 1);
        // Nothing left for the next round.
        for name in &names {
            store
                .delete_user(name, AdminGuard::None)
                .await
                .expect("delete");
        }
    }
}

/// Whichever comes first wins: the project is deleted before the client arrives (the
/// client is then in no project the store knows, for the caller to refuse), or the client
/// arrives first and the project stays. Never is a project deleted that had a client.
pub async fn a_project_gaining_an_agent_while_deleted_is_never_left_with_it(store: Arc<dyn Store>) {
    let mut deleted = 0;
    for round in 0..ROUNDS * 2 {
        let key = format!("p{round}");
        assert!(store.insert_project(&project(&key)).await.expect("project"));
        let adding = {
            let (store, key) = (Arc::clone(&store), key.clone());
            tokio::spawn(async move {
                store
                    .upsert_agent(&client(&format!("c{round}"), &key))
                    .await
                    .expect("client")
            })
        };
        let deleting = {
            let (store, key) = (Arc::clone(&store), key.clone());
            tokio::spawn(async move { store.delete_project_if_empty(&key).await.expect("delete") })
        };
        adding.await.expect("adding task");
        let outcome = deleting.await.expect("deleting task");
        let exists = store
            .list_projects()
            .await
            .expect("list")
            .iter()
            .any(|p| p.key == key);
        match outcome {
            ProjectRemoval::HasAgents(1) => assert!(exists, "refused, so kept"),
            ProjectRemoval::Deleted => {
                assert!(!exists);
                deleted += 1;
            }
            other => panic!("round {round}: {other:?}"),
        }
        // Once the client is in, the project can no longer go.
        if exists {
            assert_eq!(
                store.delete_project_if_empty(&key).await.expect("delete"),
                ProjectRemoval::HasAgents(1)
            );
        }
    }
    eprintln!("{deleted} of {} rounds deleted first", ROUNDS * 2);
}
