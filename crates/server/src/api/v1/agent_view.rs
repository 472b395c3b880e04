//! What the API shows of agents beyond their own report, read from the store for each
//! request (so every node of a cluster answers the same): tags and labels set through
//! the API, which replace the agent's own as RPort's attributes file does; the user
//! groups of RPort's client ACL; and the client groups each agent belongs to.

use std::collections::HashMap;

use rport_store::{AgentAttributes, ClientGroupRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::list_options::wildcard_match;
use crate::api::{ApiError, AppState};
use crate::domain::registry::AgentEntry;

/// RPort's `ClientParams`: which agents of its project a client group holds. Each list
/// names values one of which must match (ignoring case, `*` a wildcard); all given
/// lists must match; `tag` is a list, `{"and": [...]}` or `{"or": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupParams {
    #[serde(default)]
    pub client_id: Option<Vec<String>>,
    #[serde(default)]
    pub name: Option<Vec<String>>,
    #[serde(default)]
    pub os: Option<Vec<String>>,
    #[serde(default)]
    pub os_arch: Option<Vec<String>>,
    #[serde(default)]
    pub os_family: Option<Vec<String>>,
    #[serde(default)]
    pub os_kernel: Option<Vec<String>>,
    #[serde(default)]
    pub hostname: Option<Vec<String>>,
    #[serde(default)]
    pub ipv4: Option<Vec<String>>,
    #[serde(default)]
    pub ipv6: Option<Vec<String>>,
    #[serde(default)]
    pub tag: Option<Value>,
    #[serde(default)]
    pub version: Option<Vec<String>>,
    #[serde(default)]
    pub address: Option<Vec<String>>,
    #[serde(default)]
    pub client_auth_id: Option<Vec<String>>,
    #[serde(default)]
    pub connection_state: Option<Vec<String>>,
}

/// A `tag` parameter: every pattern must match a tag (`and`) or one must (`or`).
#[derive(Debug, Clone, PartialEq)]
pub struct TagRule {
    pub all: bool,
    pub patterns: Vec<String>,
}

/// Reads a `tag` parameter as RPort does: `{"and"|"or": [..]}` with one key, or a list
/// (`or`); anything else, or no patterns, is refused with the reason.
pub fn tag_rule(tag: &Value) -> Result<TagRule, String> {
    let patterns = |list: &Value| -> Option<Vec<String>> {
        let list: Vec<String> = serde_json::from_value(list.clone()).ok()?;
        (!list.is_empty()).then_some(list)
    };
    let bad = || "error parsing tags group definitions".to_owned();
    match tag {
        Value::Object(map) if map.len() == 1 => {
            let (operator, list) = map.iter().next().ok_or_else(bad)?;
            let all = match operator.to_lowercase().as_str() {
                "and" => true,
                "or" => false,
                _ => return Err("error, only and/or is allowed for tags group definitions".into()),
            };
            Ok(TagRule {
                all,
                patterns: patterns(list).ok_or_else(bad)?,
            })
        }
        Value::Array(_) => Ok(TagRule {
            all: false,
            patterns: patterns(tag).ok_or_else(bad)?,
        }),
        _ => Err(bad()),
    }
}

impl GroupParams {
    /// Parses and checks a group's `params` from a request or the store.
    pub fn parse(params: &Value) -> Result<Self, String> {
        if params.is_null() {
            return Ok(Self::default());
        }
        let parsed: Self = serde_json::from_value(params.clone())
            .map_err(|err| format!("invalid params: {err}"))?;
        if let Some(tag) = &parsed.tag {
            tag_rule(tag)?;
        }
        Ok(parsed)
    }

    fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// RPort's `BelongsTo`: a group without params holds no agent.
    pub fn holds(&self, entry: &AgentEntry, tags: &[String]) -> bool {
        if self.is_empty() {
            return false;
        }
        let record = &entry.record;
        let info = &record.info;
        let state = if entry.is_connected() {
            "connected"
        } else {
            "disconnected"
        };
        let one = |value: &str| vec![value.to_owned()];
        let checks: [(&Option<Vec<String>>, Vec<String>); 13] = [
            (&self.client_id, one(&record.id)),
            (&self.name, one(&info.name)),
            (&self.os, one(&info.os)),
            (&self.os_arch, one(&info.os_arch)),
            (&self.os_family, one(&info.os_family)),
            (&self.os_kernel, one(&info.os_kernel)),
            (&self.hostname, one(&info.hostname)),
            (&self.ipv4, info.ipv4.clone()),
            (&self.ipv6, info.ipv6.clone()),
            (&self.version, one(&info.version)),
            (&self.address, one(&record.address)),
            (&self.client_auth_id, one(&record.auth_id)),
            (&self.connection_state, one(state)),
        ];
        checks
            .iter()
            .all(|(patterns, values)| matches_one_of(patterns.as_deref(), values))
            && match &self.tag {
                None => true,
                Some(tag) => tag_rule(tag).is_ok_and(|rule| rule.holds(tags)),
            }
    }
}

/// RPort's `MatchesOneOf`: no list matches all; an empty list only an agent without
/// values.
fn matches_one_of(patterns: Option<&[String]>, values: &[String]) -> bool {
    match patterns {
        None => true,
        Some([]) if values.is_empty() => true,
        Some(patterns) => patterns
            .iter()
            .any(|p| values.iter().any(|v| wildcard_match(p, v))),
    }
}

impl TagRule {
    fn holds(&self, tags: &[String]) -> bool {
        let matched = |p: &String| tags.iter().any(|t| wildcard_match(p, t));
        if self.all {
            self.patterns.iter().all(matched)
        } else {
            self.patterns.iter().any(matched)
        }
    }
}

/// A client group with its params parsed.
pub struct Group {
    pub record: ClientGroupRecord,
    pub params: GroupParams,
}

/// The store's view of agents for one request.
pub struct AgentView {
    attributes: HashMap<String, AgentAttributes>,
    allowed_user_groups: HashMap<String, Vec<String>>,
    pub groups: Vec<Group>,
}

impl AgentView {
    pub async fn load(state: &AppState) -> Result<Self, ApiError> {
        let overrides = state
            .store
            .list_agent_overrides()
            .await
            .map_err(ApiError::internal)?;
        let groups = state
            .store
            .list_client_groups()
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|record| {
                // Params were checked when written; damage holds no agent.
                let params = GroupParams::parse(&record.params).unwrap_or_default();
                Group { record, params }
            })
            .collect();
        let mut view = AgentView {
            attributes: HashMap::new(),
            allowed_user_groups: HashMap::new(),
            groups,
        };
        for o in overrides {
            if let Some(attributes) = o.attributes {
                view.attributes.insert(o.agent_id.clone(), attributes);
            }
            if let Some(groups) = o.allowed_user_groups {
                view.allowed_user_groups.insert(o.agent_id, groups);
            }
        }
        Ok(view)
    }

    /// The tags set through the API, or else the agent's own.
    pub fn tags(&self, entry: &AgentEntry) -> Vec<String> {
        match self.attributes.get(&entry.record.id) {
            Some(set) => set.tags.clone(),
            None => entry.record.info.tags.clone(),
        }
    }

    /// The labels set through the API, or else `reported` (the agent's own, if any).
    pub fn labels(&self, entry: &AgentEntry, reported: Option<Value>) -> Value {
        match self.attributes.get(&entry.record.id) {
            Some(set) => json!(set.labels),
            None => reported
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({})),
        }
    }

    pub fn allowed_user_groups(&self, entry: &AgentEntry) -> Vec<String> {
        self.allowed_user_groups
            .get(&entry.record.id)
            .cloned()
            .unwrap_or_default()
    }

    /// The ids of the groups of the agent's project that hold it.
    pub fn groups_of(&self, entry: &AgentEntry) -> Vec<String> {
        let tags = self.tags(entry);
        self.groups
            .iter()
            .filter(|g| g.record.project == entry.record.project)
            .filter(|g| g.params.holds(entry, &tags))
            .map(|g| g.record.id.clone())
            .collect()
    }

    /// The columns this view owns, for a client's JSON and its filters; `None` for the
    /// rest. `reported` gives the agent's own value of a column.
    pub fn column(
        &self,
        entry: &AgentEntry,
        name: &str,
        reported: impl Fn(&str) -> Option<Value>,
    ) -> Option<Value> {
        Some(match name {
            "tags" => json!(self.tags(entry)),
            "labels" => self.labels(entry, reported("labels")),
            "allowed_user_groups" => json!(self.allowed_user_groups(entry)),
            "groups" => json!(self.groups_of(entry)),
            _ => return reported(name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_rules_as_rport_reads_them() {
        let rule = tag_rule(&json!({"and": ["linux", "office*"]})).expect("and");
        assert!(rule.all);
        assert!(rule.holds(&["Linux".into(), "Office Berlin".into()]));
        assert!(!rule.holds(&["Linux".into()]));
        let rule = tag_rule(&json!(["windows", "linux"])).expect("list");
        assert!(!rule.all && rule.holds(&["Linux".into()]));
        assert!(tag_rule(&json!({"xor": ["a"]})).is_err());
        assert!(tag_rule(&json!([])).is_err());
        assert!(tag_rule(&json!({"and": []})).is_err());
        assert!(tag_rule(&json!("linux")).is_err());
    }

    #[test]
    fn one_of_as_rport() {
        assert!(matches_one_of(None, &["x".into()]));
        assert!(matches_one_of(Some(&[]), &[]));
        assert!(!matches_one_of(Some(&[]), &["x".into()]));
        assert!(matches_one_of(Some(&["X*".into()]), &["xy".into()]));
    }
}
