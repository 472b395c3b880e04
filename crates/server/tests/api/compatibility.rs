//! `docs/compatibility.md` stays true: its table of RPort's operations says "served" (or
//! "differs") exactly for those rportd's own OpenAPI document lists, and at least
//! [`AT_LEAST_SERVED`] of them are.

use std::collections::BTreeSet;

use axum::http::Method;

use crate::harness::{TestServer, admin};

/// RPort's published document has this many operations.
const RPORT_OPERATIONS: usize = 114;
/// What issue 17 asks to be served of them.
const AT_LEAST_SERVED: usize = 50;

/// One row of the table: method, RPort's path, whether rportd serves it, and where.
struct Row {
    method: String,
    path: String,
    served: bool,
    served_at: String,
}

fn table() -> Vec<Row> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/compatibility.md");
    let text = std::fs::read_to_string(file).expect("docs/compatibility.md is readable");
    let mut rows = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| METHOD | `path` | status | served at | notes |`
        if cells.len() < 6 || !["GET", "POST", "PUT", "DELETE"].contains(&cells[1]) {
            continue;
        }
        let path = cells[2].trim_matches('`').to_owned();
        let status = cells[3];
        assert!(
            ["served", "differs", "not served"].contains(&status),
            "docs/compatibility.md: {} {path}: status {status:?} is not served, differs or not served",
            cells[1]
        );
        let served_at = cells[4].trim_matches('`');
        rows.push(Row {
            method: cells[1].to_owned(),
            served: status != "not served",
            served_at: if served_at.is_empty() {
                path.clone()
            } else {
                served_at.to_owned()
            },
            path,
        });
    }
    rows
}

/// A path with its parameters' names left out: RPort and rportd name some differently.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|part| if part.starts_with('{') { "{}" } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_table_of_rport_operations_says_what_is_served() {
    let rows = table();
    assert_eq!(rows.len(), RPORT_OPERATIONS, "one row per RPort operation");
    let unique: BTreeSet<(String, String)> = rows
        .iter()
        .map(|row| (row.method.clone(), row.path.clone()))
        .collect();
    assert_eq!(unique.len(), rows.len(), "no operation twice");

    let server = TestServer::start().await;
    let reply = server
        .request(Method::GET, "/api/v1/openapi.json", &admin())
        .await;
    let document = &reply.body;
    let mut served = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        let Some(path) = path.strip_prefix("/api/v1") else {
            continue;
        };
        for method in item.as_object().expect("a path item").keys() {
            served.insert((method.to_uppercase(), shape(path)));
        }
    }

    let mut wrong = Vec::new();
    for row in &rows {
        let is_served = served.contains(&(row.method.clone(), shape(&row.served_at)));
        if is_served != row.served {
            wrong.push(format!(
                "{} {}: the table says {}, the router {}",
                row.method,
                row.path,
                if row.served { "served" } else { "not served" },
                if is_served { "serves it" } else { "does not" },
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/compatibility.md:\n{}",
        wrong.join("\n")
    );
    let count = rows.iter().filter(|row| row.served).count();
    assert!(
        count >= AT_LEAST_SERVED,
        "{count} of RPort's operations served, fewer than {AT_LEAST_SERVED}"
    );
}
