//! How the audit log reads in RPort's words, and the SQL that filters and sorts it in
//! those words, for both backends.
//!
//! rportd records its own action names (`tunnel.create`, `login`, ...) with a result;
//! RPort's API speaks of an `application` and an `action` (`client.tunnel` / `create`).
//! The mapping is applied when the log is read, never stored, so that entries written
//! before it (and any written by an rportd that knew other names) keep their meaning and
//! read the same way. Filters and sorts on the mapped words run in the database as `CASE`
//! expressions generated from [`RPORT_WORDS`], the one place the mapping lives.

use chrono::{DateTime, Utc};

use crate::list_sql::{ListMatch, ListSort, PageQuery, SqlValue, any_match};

/// One of rportd's action names and what RPort calls it.
pub struct RportWords {
    /// rportd's action name, as stored.
    pub rportd_action: &'static str,
    /// RPort's `application`: the resource acted on.
    pub application: &'static str,
    /// RPort's `action` when the entry's result is `success`; any other result reads
    /// `failed`, as RPort writes for a failed upload.
    pub action: &'static str,
}

const fn words(
    rportd_action: &'static str,
    application: &'static str,
    action: &'static str,
) -> RportWords {
    RportWords {
        rportd_action,
        application,
        action,
    }
}

/// Every action rportd records. RPort records no logins or agent connections; rportd's
/// are shown with RPort's session and client applications.
pub const RPORT_WORDS: &[RportWords] = &[
    words("login", "auth.api.session", "create"),
    words("logout", "auth.api.session", "delete"),
    words("user.create", "auth.user", "create"),
    words("user.update", "auth.user", "update"),
    words("user.delete", "auth.user", "delete"),
    words("user.reload", "auth.user", "update"),
    words("user.password", "auth.user.me", "update"),
    words("token.create", "auth.user.me.token", "create"),
    words("token.delete", "auth.user.me.token", "delete"),
    words("token.update", "auth.user.me.token", "update"),
    words("user.totp.create", "auth.user.totp", "create"),
    words("user.totp.delete", "auth.user.totp", "delete"),
    words("login.2fa", "auth.api.session", "create"),
    words("user.session.delete", "auth.api.sessions", "delete"),
    words("user.sessions.delete", "auth.api.sessions", "delete"),
    words("user_group.update", "auth.user.group", "update"),
    words("user_group.delete", "auth.user.group", "delete"),
    words("agent.login", "client", "success"),
    words("client.delete", "client", "delete"),
    words("client.attributes", "client", "update"),
    words("client.acl", "client.acl", "update"),
    words("clientgroup.create", "client.group", "create"),
    words("clientgroup.update", "client.group", "update"),
    words("clientgroup.delete", "client.group", "delete"),
    words("clientauth.create", "client.auth", "create"),
    words("clientauth.delete", "client.auth", "delete"),
    words("tunnel.create", "client.tunnel", "create"),
    words("tunnel.close", "client.tunnel", "delete"),
    words("tunnel.acl", "client.tunnel", "update"),
    words("tunnel.move", "client.tunnel", "update"),
    words("storedtunnel.create", "client.tunnel.stored", "create"),
    words("storedtunnel.update", "client.tunnel.stored", "update"),
    words("storedtunnel.delete", "client.tunnel.stored", "delete"),
    words("project.create", "project", "create"),
    words("project.delete", "project", "delete"),
];

/// RPort's action for an entry that did not succeed.
const FAILED: &str = "failed";
/// RPort's action for an entry of an action this table does not know.
const UNKNOWN_SUCCESS: &str = "success";

/// RPort's `(application, action)` for one stored entry. An action name not in
/// [`RPORT_WORDS`] is its own application, with `success` or `failed`.
pub fn rport_words<'a>(rportd_action: &'a str, result: &str) -> (&'a str, &'a str) {
    let known = RPORT_WORDS
        .iter()
        .find(|w| w.rportd_action == rportd_action);
    let application = known.map_or(rportd_action, |w| w.application);
    let action = match known {
        _ if result != "success" => FAILED,
        Some(w) => w.action,
        None => UNKNOWN_SUCCESS,
    };
    (application, action)
}

/// A field of RPort's audit log entry, for filters and sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditField {
    Timestamp,
    Username,
    RemoteIp,
    Application,
    Action,
    AffectedId,
    ClientId,
    ClientHostname,
}

impl AuditField {
    /// RPort's name of the field, as `filter[...]` and `sort` spell it.
    pub const ALL: [(&'static str, AuditField); 8] = [
        ("timestamp", Self::Timestamp),
        ("username", Self::Username),
        ("remote_ip", Self::RemoteIp),
        ("application", Self::Application),
        ("action", Self::Action),
        ("affected_id", Self::AffectedId),
        ("client_id", Self::ClientId),
        ("client_hostname", Self::ClientHostname),
    ];

    pub fn from_rport_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// The SQL expressions a value of this field is read from; a filter matches if any
    /// does. `action` also matches rportd's own action name, so that `filter[action]=
    /// tunnel.create` keeps working (RPort's and rportd's action names never coincide).
    fn expressions(self) -> Vec<String> {
        match self {
            Self::Timestamp => vec!["CAST(at AS TEXT)".to_owned()],
            Self::Username => vec!["actor".to_owned()],
            Self::RemoteIp => vec!["COALESCE(actor_ip, '')".to_owned()],
            Self::Application => vec![application_sql()],
            Self::Action => vec![action_sql(), "action".to_owned()],
            Self::AffectedId => vec!["resource".to_owned()],
            Self::ClientId => vec!["COALESCE(client_id, '')".to_owned()],
            Self::ClientHostname => vec!["COALESCE(client_hostname, '')".to_owned()],
        }
    }

    fn sort_expression(self) -> String {
        match self {
            Self::Timestamp => "at".to_owned(),
            other => other.expressions().swap_remove(0),
        }
    }
}

/// The literals below come from [`RPORT_WORDS`] only, never from a request.
fn application_sql() -> String {
    let mut sql = String::from("CASE action");
    for w in RPORT_WORDS {
        sql.push_str(&format!(
            " WHEN '{}' THEN '{}'",
            w.rportd_action, w.application
        ));
    }
    sql.push_str(" ELSE action END");
    sql
}

fn action_sql() -> String {
    let mut sql = format!("CASE WHEN result <> 'success' THEN '{FAILED}'");
    for w in RPORT_WORDS {
        sql.push_str(&format!(
            " WHEN action = '{}' THEN '{}'",
            w.rportd_action, w.action
        ));
    }
    sql.push_str(&format!(" ELSE '{UNKNOWN_SUCCESS}' END"));
    sql
}

pub type AuditMatch = ListMatch<AuditField>;
pub type AuditSort = ListSort<AuditField>;

/// What `list_audit` returns: the filters are ANDed.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Entries at or before this time.
    pub until: Option<DateTime<Utc>>,
    /// Entries strictly after this time.
    pub after: Option<DateTime<Utc>>,
    /// Entries strictly before this time.
    pub before: Option<DateTime<Utc>>,
    pub project: Option<String>,
    pub matches: Vec<AuditMatch>,
    /// Empty: newest first.
    pub sort: Vec<AuditSort>,
    pub limit: usize,
    pub offset: usize,
}

impl AuditFilter {
    /// The page this filter asks for; `placeholder(n)` spells the n-th (1-based)
    /// parameter in the backend's syntax (`?n` or `$n`).
    pub(crate) fn to_sql(&self, placeholder: fn(usize) -> String) -> PageQuery {
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        let bind = |value: SqlValue, params: &mut Vec<SqlValue>| {
            params.push(value);
            placeholder(params.len())
        };
        let bounds = [
            (self.since, ">="),
            (self.until, "<="),
            (self.after, ">"),
            (self.before, "<"),
        ];
        for (time, operator) in bounds {
            if let Some(time) = time {
                let p = bind(SqlValue::Int(time.timestamp_millis()), &mut params);
                conditions.push(format!("at {operator} {p}"));
            }
        }
        if let Some(project) = &self.project {
            let p = bind(SqlValue::Text(project.clone()), &mut params);
            conditions.push(format!("project = {p}"));
        }
        for m in &self.matches {
            let expressions: Vec<String> = m.fields.iter().flat_map(|f| f.expressions()).collect();
            conditions.push(any_match(&expressions, &m.values, &mut params, placeholder));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let mut order: Vec<String> = self
            .sort
            .iter()
            .map(|s| {
                let direction = if s.descending { "DESC" } else { "ASC" };
                format!("{} {direction}", s.field.sort_expression())
            })
            .collect();
        // Newest first by default, and the id last so that pages never overlap; entries
        // of one millisecond keep the order they were written in along with the time's.
        if self.sort.is_empty() {
            order.push("at DESC".to_owned());
        }
        let oldest_first = self
            .sort
            .iter()
            .find(|s| s.field == AuditField::Timestamp)
            .is_some_and(|s| !s.descending);
        order.push(if oldest_first { "id ASC" } else { "id DESC" }.to_owned());
        PageQuery {
            table: "audit_log",
            columns: "id, at, actor, actor_type, actor_ip, action, resource, project, result, \
                      detail, client_id, client_hostname",
            where_clause,
            order_by: format!("ORDER BY {}", order.join(", ")),
            params,
            limit: self.limit,
            offset: self.offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rportd_actions_read_as_rports_words() {
        let cases = [
            (("tunnel.create", "success"), ("client.tunnel", "create")),
            (("tunnel.create", "failure"), ("client.tunnel", "failed")),
            (("tunnel.close", "success"), ("client.tunnel", "delete")),
            (("tunnel.acl", "success"), ("client.tunnel", "update")),
            (("client.delete", "success"), ("client", "delete")),
            (("clientauth.create", "success"), ("client.auth", "create")),
            (("user.create", "success"), ("auth.user", "create")),
            (("login", "failure"), ("auth.api.session", "failed")),
            (("something.new", "success"), ("something.new", "success")),
            (("something.new", "failure"), ("something.new", "failed")),
        ];
        for ((action, result), expected) in cases {
            assert_eq!(rport_words(action, result), expected, "{action} {result}");
        }
    }

    #[test]
    fn every_rportd_action_is_listed_once_with_rports_vocabulary() {
        let rport_actions = ["create", "delete", "update", "success"];
        for (i, w) in RPORT_WORDS.iter().enumerate() {
            assert!(rport_actions.contains(&w.action), "{}", w.rportd_action);
            assert!(
                RPORT_WORDS[i + 1..]
                    .iter()
                    .all(|o| o.rportd_action != w.rportd_action),
                "{} twice",
                w.rportd_action
            );
            // The generated SQL quotes these; a quote would break out of the literal.
            for text in [w.rportd_action, w.application, w.action] {
                assert!(!text.contains('\''), "{text}");
            }
        }
    }

    #[test]
    fn filters_bind_values_and_never_splice_them() {
        let filter = AuditFilter {
            after: Some(DateTime::<Utc>::UNIX_EPOCH),
            matches: vec![AuditMatch {
                fields: vec![AuditField::Username],
                values: vec!["x' OR 1=1 --".into(), "a*".into()],
            }],
            sort: vec![AuditSort {
                field: AuditField::Username,
                descending: false,
            }],
            ..AuditFilter::default()
        };
        let sql = filter.to_sql(|n| format!("${n}"));
        assert_eq!(
            sql.where_clause,
            "WHERE at > $1 AND (actor = $2 OR LOWER(actor) LIKE $3 ESCAPE '\\')"
        );
        assert_eq!(sql.order_by, "ORDER BY actor ASC, id DESC");
        assert_eq!(sql.params.len(), 3);
        let newest_first = AuditFilter::default().to_sql(|n| format!("?{n}"));
        assert_eq!(newest_first.where_clause, "");
        assert_eq!(newest_first.order_by, "ORDER BY at DESC, id DESC");
    }
}
