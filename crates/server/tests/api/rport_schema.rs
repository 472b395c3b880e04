//! RPort's published response schemas, quoted in the tests as JSON Schema fragments, and
//! the check that an answer of rportd fits one.
//!
//! A test quotes the part of RPort's schema (`api-doc/openapi/components/schemas/` in
//! openrport/openrport) that its clients read, and calls [`assert_rport_schema`]. Stricter
//! than JSON Schema on purpose: every property the quote lists must be present, because
//! RPort's UI and scripts read them without checking (mark one `"x-optional": true` where
//! RPort itself leaves it out). Extra properties are allowed: rportd's richer fields.
//!
//! Understood keywords: `type` (a name or a list of names, `"null"` among them),
//! `nullable`, `properties`, `items`, `enum`, `x-optional`.

use serde_json::Value;

/// Panics, naming the JSON path, where `value` does not fit `schema`.
#[track_caller]
pub fn assert_rport_schema(value: &Value, schema: &Value) {
    let mut problems = Vec::new();
    check(value, schema, "$", &mut problems);
    assert!(
        problems.is_empty(),
        "answer does not fit RPort's schema:\n  {}\nanswer: {value:#}",
        problems.join("\n  ")
    );
}

fn check(value: &Value, schema: &Value, path: &str, problems: &mut Vec<String>) {
    if value.is_null() && allows_null(schema) {
        return;
    }
    if let Some(types) = types_of(schema)
        && !types.iter().any(|t| fits_type(value, t))
    {
        problems.push(format!(
            "{path}: expected {}, got {value}",
            types.join(" or ")
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        problems.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    if let (Some(properties), Some(object)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for (name, property) in properties {
            let inner = format!("{path}.{name}");
            match object.get(name) {
                Some(field) => check(field, property, &inner, problems),
                None if property.get("x-optional") == Some(&Value::Bool(true)) => {}
                None => problems.push(format!("{inner}: missing")),
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, item) in array.iter().enumerate() {
            check(item, items, &format!("{path}[{index}]"), problems);
        }
    }
}

fn allows_null(schema: &Value) -> bool {
    schema.get("nullable") == Some(&Value::Bool(true))
        || types_of(schema).is_some_and(|types| types.contains(&"null"))
}

fn types_of(schema: &Value) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Value::String(name) => Some(vec![name.as_str()]),
        Value::Array(names) => Some(names.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn fits_type(value: &Value, name: &str) -> bool {
    match name {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_fitting_answer_passes() {
        let schema = json!({"type": "object", "properties": {
            "id": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "updates_status": {"type": "object", "nullable": true},
            "labels": {"type": "object", "x-optional": true},
        }});
        assert_rport_schema(
            &json!({"id": "a", "tags": ["x"], "updates_status": null, "extra": 1}),
            &schema,
        );
    }

    #[test]
    #[should_panic(expected = "$.tags[1]: expected string")]
    fn a_wrong_item_is_named() {
        let schema = json!({"type": "object", "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
        }});
        assert_rport_schema(&json!({"tags": ["x", 2]}), &schema);
    }

    #[test]
    #[should_panic(expected = "$.id: missing")]
    fn a_missing_property_is_named() {
        let schema = json!({"type": "object", "properties": {"id": {"type": "string"}}});
        assert_rport_schema(&json!({}), &schema);
    }
}
