//! `GET /api/v1/client-tags`: every tag of the agents the caller sees (as the API shows
//! them: set through the API, or else the agent's own), with the agents that have it,
//! sorted by tag, as RPort.

use std::collections::BTreeMap;

use axum::extract::State as StateExtractor;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::agent_view::AgentView;
use crate::api::list_options::{ListOptions, ListSpec, RPORT_PAGE};
use crate::api::{ApiError, Authenticated, Params, State};

const FIELDS: &[&str] = &["tag", "client_ids"];

/// RPort takes fields and paging here, no filter and no sort.
const LIST: ListSpec = ListSpec {
    filters: &[],
    sorts: &[],
    fields: Some(("client_tags", FIELDS)),
    page: Some(RPORT_PAGE),
};

pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    params: Params,
) -> Result<Response, ApiError> {
    let options = ListOptions::parse(&params.0, &LIST)?;
    let fields = options.fields.clone().unwrap_or_else(|| FIELDS.to_vec());
    let view = AgentView::load(&state).await?;
    let by_tag: BTreeMap<String, Vec<String>> = state.registry.with_agents(|agents| {
        let mut by_tag: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in agents.values().filter(|e| user.reads(&e.record.project)) {
            for tag in view.tags(entry) {
                by_tag.entry(tag).or_default().push(entry.record.id.clone());
            }
        }
        by_tag
    });
    let count = by_tag.len();
    let rows: Vec<(String, Vec<String>)> = by_tag.into_iter().collect();
    let page: Vec<Value> = options
        .page
        .of(rows)
        .into_iter()
        .map(|(tag, mut ids)| {
            ids.sort();
            ids.dedup();
            let mut object = Map::new();
            for &name in &fields {
                let value = match name {
                    "tag" => json!(tag),
                    _ => json!(ids),
                };
                object.insert(name.to_owned(), value);
            }
            Value::Object(object)
        })
        .collect();
    Ok(crate::api::listing(page, count))
}
