//! Stored tunnels (RPort's tunnel templates): the record, and the SQL of RPort's list
//! options on them, for both backends.

use chrono::{DateTime, Utc};

use crate::list_sql::{ListMatch, ListSort, PageQuery, SqlValue, any_match};

/// A saved tunnel definition of one agent: what `PUT /clients/{id}/tunnels` would be
/// given. Never opened by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTunnelRecord {
    pub id: String,
    pub agent_id: String,
    pub created_at: DateTime<Utc>,
    pub name: String,
    pub scheme: Option<String>,
    pub remote_ip: Option<String>,
    pub remote_port: Option<i64>,
    pub public_port: Option<i64>,
    pub acl: Option<String>,
    /// A JSON object as the caller gave it (RPort's `further_options`).
    pub further_options: Option<String>,
}

/// The columns, in the order both backends read them.
pub(crate) const STORED_TUNNEL_COLUMNS: &str = "id, client_id, created_at, name, scheme, \
     remote_ip, remote_port, public_port, acl, further_options";

/// A field RPort lets stored tunnels be filtered or sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredTunnelField {
    CreatedAt,
    Name,
    Scheme,
    RemoteIp,
    RemotePort,
}

impl StoredTunnelField {
    fn expression(self) -> &'static str {
        match self {
            Self::CreatedAt => "created_at",
            Self::Name => "name",
            Self::Scheme => "COALESCE(scheme, '')",
            Self::RemoteIp => "COALESCE(remote_ip, '')",
            Self::RemotePort => "COALESCE(CAST(remote_port AS TEXT), '')",
        }
    }

    fn sort_expression(self) -> &'static str {
        match self {
            Self::RemotePort => "remote_port",
            other => other.expression(),
        }
    }
}

pub type StoredTunnelMatch = ListMatch<StoredTunnelField>;
pub type StoredTunnelSort = ListSort<StoredTunnelField>;

/// The filters are ANDed; with no sort, oldest first.
#[derive(Debug, Clone, Default)]
pub struct StoredTunnelFilter {
    pub matches: Vec<StoredTunnelMatch>,
    pub sort: Vec<StoredTunnelSort>,
    pub limit: usize,
    pub offset: usize,
}

impl StoredTunnelFilter {
    /// The page of agent `agent_id`'s stored tunnels this filter asks for.
    pub(crate) fn to_sql(&self, agent_id: &str, placeholder: fn(usize) -> String) -> PageQuery {
        let mut params = vec![SqlValue::Text(agent_id.to_owned())];
        let mut conditions = vec![format!("client_id = {}", placeholder(1))];
        for m in &self.matches {
            let expressions: Vec<String> =
                m.fields.iter().map(|f| f.expression().to_owned()).collect();
            conditions.push(any_match(&expressions, &m.values, &mut params, placeholder));
        }
        let mut order: Vec<String> = self
            .sort
            .iter()
            .map(|s| {
                let direction = if s.descending { "DESC" } else { "ASC" };
                format!("{} {direction}", s.field.sort_expression())
            })
            .collect();
        order.extend(["created_at ASC".to_owned(), "id ASC".to_owned()]);
        PageQuery {
            table: "stored_tunnels",
            columns: STORED_TUNNEL_COLUMNS,
            where_clause: format!("WHERE {}", conditions.join(" AND ")),
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
    fn the_agent_comes_first_and_the_order_is_total() {
        let filter = StoredTunnelFilter {
            matches: vec![StoredTunnelMatch {
                fields: vec![StoredTunnelField::RemotePort],
                values: vec!["22".into()],
            }],
            sort: vec![StoredTunnelSort {
                field: StoredTunnelField::Name,
                descending: true,
            }],
            limit: 10,
            offset: 0,
        };
        let query = filter.to_sql("a1", |n| format!("?{n}"));
        assert_eq!(
            query.where_clause,
            "WHERE client_id = ?1 AND (COALESCE(CAST(remote_port AS TEXT), '') = ?2)"
        );
        assert_eq!(query.order_by, "ORDER BY name DESC, created_at ASC, id ASC");
        assert_eq!(query.params.len(), 2);
    }
}
