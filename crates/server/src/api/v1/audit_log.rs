//! `GET /api/v1/auditlog`: the audit log in RPort's shape, filtered, sorted and paged in
//! the store with RPort's list options.
//!
//! RPort's grammar (`share/query`, `server/auditlog`), read by `list_options`:
//! `filter[FIELD]=v1,v2` (any value, `*` a wildcard, `and(...)`/`or(...)`; `filter[a|b]`
//! any of two fields, `filter[*]` any), `filter[timestamp][gt|lt|since|until]`,
//! `sort=[-]FIELD` (repeatable), `page[limit]` (default 10, at most 100) and
//! `page[offset]`; `fields[...]` is ignored, as RPort does. rportd's own `filter[since]`,
//! `filter[until]`, `filter[actor]` and `filter[project]` still work. Anything else under
//! `filter`, `sort` or `page` is a 400 naming it.

use axum::extract::State as StateExtractor;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rport_store::{AuditField, AuditFilter, AuditMatch, AuditRecord, rport_words};
use serde_json::{Value, json};

use crate::domain::permissions::Role;

use super::store_list::{self, invalid};
use crate::api::list_options::{Comparison, ListSpec};
use crate::api::{ApiError, Authenticated, Params, State, time_json};

/// Every field sorts: the store's names of them.
const SORTS: [&str; AuditField::ALL.len()] = {
    let mut names = [""; AuditField::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = AuditField::ALL[i].0;
        i += 1;
    }
    names
};

/// RPort's list options of the audit log (`server/auditlog`), with rportd's own
/// `filter[actor]` (= `filter[username]`).
const LIST: ListSpec = ListSpec {
    filters: &[
        "username",
        "remote_ip",
        "application",
        "action",
        "affected_id",
        "client_id",
        "client_hostname",
        "actor",
        "timestamp[gt]",
        "timestamp[lt]",
        "timestamp[since]",
        "timestamp[until]",
    ],
    sorts: &SORTS,
    fields: None,
    page: Some(store_list::TEN_UNLESS_ASKED),
};

/// A request's list options, checked but not yet scoped to the caller.
#[derive(Debug)]
struct ListOptions {
    filter: AuditFilter,
    /// A `filter[username]` (or rportd's `filter[actor]`) was given.
    filters_by_username: bool,
}

/// A time as RPort's filters take it: RFC 3339, or a date, or a date and time in UTC
/// (`2021-10-28`, `2021-10-28 12:00:00`, `2021-10-28T12:00:00`).
fn parse_time(key: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    if let Some(t) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(t.and_utc());
    }
    Err(invalid(
        format!("Invalid {key}"),
        format!(
            "{key}={text:?} is not a time such as 2021-10-28, 2021-10-28 12:00:00 or 2021-10-28T12:00:00Z"
        ),
    ))
}

/// The store field of a column `LIST` names.
fn audit_field(column: &str) -> Option<AuditField> {
    match column {
        "actor" => Some(AuditField::Username),
        name => AuditField::from_rport_name(name),
    }
}

/// Reads the list options of a request; pure. rportd's `filter[since]`, `filter[until]`
/// and `filter[project]` are this list's own parameters, read here; the rest is RPort's
/// grammar, read by `list_options`.
fn parse(params: &Params) -> Result<ListOptions, ApiError> {
    let mut filter = AuditFilter::default();
    let mut rport_params = Vec::new();
    for (key, value) in &params.0 {
        let time = || parse_time(key, value.trim()).map(Some);
        match key.as_str() {
            "filter[since]" => filter.since = time()?,
            "filter[until]" => filter.until = time()?,
            "filter[project]" => filter.project = Some(value.trim().to_owned()),
            _ => rport_params.push((key.clone(), value.clone())),
        }
    }
    let (options, page) = store_list::parse(&Params(rport_params), &LIST)?;
    let (comparisons, plain): (Vec<_>, Vec<_>) = options
        .filters
        .into_iter()
        .partition(|f| f.comparison.is_some());
    for compared in comparisons {
        // `LIST` offers comparisons on `timestamp` only.
        let (key, bound) = match compared.comparison {
            Some(Comparison::Gt) => ("filter[timestamp][gt]", &mut filter.after),
            Some(Comparison::Lt) => ("filter[timestamp][lt]", &mut filter.before),
            Some(Comparison::Since) => ("filter[timestamp][since]", &mut filter.since),
            Some(Comparison::Until) => ("filter[timestamp][until]", &mut filter.until),
            Some(Comparison::Eq) | None => {
                return Err(invalid(
                    "Invalid filter",
                    "unsupported filter field \"filter[timestamp][eq]\"",
                ));
            }
        };
        let [time] = compared.values.as_slice() else {
            return Err(invalid(
                format!("Invalid {key}"),
                format!("{key} takes one time"),
            ));
        };
        *bound = Some(parse_time(key, time)?);
    }
    let matches = store_list::matches(&plain, audit_field)?;
    let filters_by_username = matches
        .iter()
        .any(|m| m.fields.contains(&AuditField::Username));
    Ok(ListOptions {
        filter: AuditFilter {
            matches,
            sort: store_list::sorts(&options.sorts, AuditField::from_rport_name)?,
            limit: page.limit,
            offset: page.offset,
            ..filter
        },
        filters_by_username,
    })
}

/// One entry in RPort's shape, with rportd's richer fields after RPort's.
fn entry_json(e: &AuditRecord) -> Value {
    let (application, action) = rport_words(&e.action, &e.result);
    json!({
        "timestamp": time_json(Some(e.at)),
        "username": e.actor,
        "remote_ip": e.actor_ip.as_deref().unwrap_or_default(),
        "application": application,
        "action": action,
        "affected_id": e.resource,
        "client_id": e.client_id.as_deref().unwrap_or_default(),
        "client_hostname": e.client_hostname.as_deref().unwrap_or_default(),
        "request": "",
        "response": "",
        "id": e.id,
        "rportd_action": e.action,
        "actor_type": e.actor_type,
        "project": e.project,
        "result": e.result,
        "detail": e.detail,
    })
}

/// Server admins read everything; a project's admins that project's entries (with
/// `filter[project]`); everyone else, as in RPort, only their own entries.
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    params: Params,
) -> Result<Response, ApiError> {
    let ListOptions {
        mut filter,
        filters_by_username,
    } = parse(&params)?;
    match &filter.project {
        Some(project) => user
            .require(project, Role::Admin, "reading a project's audit log")
            .map_err(ApiError::forbidden)?,
        None if user.require_server_admin("").is_ok() => {}
        None if filters_by_username => {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "ERR_CODE_FORBIDDEN",
                "filter forbidden",
                "only server administrators (or a project's administrators, with \
                 filter[project]) can filter by usernames",
            ));
        }
        None => filter.matches.push(AuditMatch {
            fields: vec![AuditField::Username],
            values: vec![user.username.clone()],
        }),
    }
    let (entries, count) = state
        .store
        .list_audit(&filter)
        .await
        .map_err(ApiError::internal)?;
    let data: Vec<Value> = entries.iter().map(entry_json).collect();
    Ok(crate::api::listing(data, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rport_store::AuditSort;

    fn params(query: &str) -> Params {
        Params(serde_urlencoded::from_str(query).expect("a query"))
    }

    fn error_title(query: &str) -> String {
        let err = parse(&params(query)).expect_err(query);
        format!("{err:?}")
    }

    #[test]
    fn rports_options_read_into_a_filter() {
        let options = parse(&params(
            "filter[application]=client.tunnel,client&filter[username|client_id]=a*\
             &filter[timestamp][gt]=2021-10-28&filter[timestamp][lt]=2021-10-29 12:00:00\
             &sort=-timestamp&sort=username&page[limit]=100&page[offset]=3&fields[x]=y",
        ))
        .expect("valid");
        let f = &options.filter;
        assert!(options.filters_by_username);
        assert_eq!(
            f.matches,
            [
                AuditMatch {
                    fields: vec![AuditField::Application],
                    values: vec!["client.tunnel".into(), "client".into()],
                },
                AuditMatch {
                    fields: vec![AuditField::Username, AuditField::ClientId],
                    values: vec!["a*".into()],
                },
            ]
        );
        assert_eq!(
            f.after.map(|t| t.to_rfc3339()),
            Some("2021-10-28T00:00:00+00:00".into())
        );
        assert_eq!(
            f.before.map(|t| t.to_rfc3339()),
            Some("2021-10-29T12:00:00+00:00".into())
        );
        assert_eq!(
            f.sort,
            [
                AuditSort {
                    field: AuditField::Timestamp,
                    descending: true
                },
                AuditSort {
                    field: AuditField::Username,
                    descending: false
                }
            ]
        );
        assert_eq!((f.limit, f.offset), (100, 3));
        let defaults = parse(&params("")).expect("valid");
        assert_eq!((defaults.filter.limit, defaults.filter.offset), (10, 0));
        let legacy = parse(&params(
            "filter[since]=2026-11-26T12:00:00Z&filter[actor]=bob&filter[project]=lab",
        ))
        .expect("valid");
        assert!(legacy.filters_by_username);
        assert_eq!(legacy.filter.project.as_deref(), Some("lab"));
        assert!(legacy.filter.since.is_some());
    }

    #[test]
    fn unknown_or_bad_options_are_400s_naming_them() {
        let cases = [
            ("filter[colour]=red", "filter[colour]"),
            ("filter[timestamp]=2021-10-28", "filter[timestamp]"),
            ("filter[timestamp][eq]=2021-10-28", "filter[timestamp][eq]"),
            ("filter[username][gt]=a", "filter[username][gt]"),
            ("filter[username|colour]=a", "filter[username|colour]"),
            ("sort=colour", "colour"),
            ("sort=-colour", "colour"),
            ("page[size]=3", "page[size]"),
            ("page[limit]=101", "maximum is 100"),
            ("page[limit]=-1", "must not be negative"),
            ("page[limit]=ten", "must be a number"),
            ("page[offset]=-1", "must not be negative"),
            ("filter[timestamp][gt]=yesterday", "filter[timestamp][gt]"),
        ];
        for (query, named) in cases {
            let err = error_title(query);
            assert!(err.contains(named), "{query}: {err}");
            assert!(err.contains("400"), "{query}: {err}");
        }
    }
}
