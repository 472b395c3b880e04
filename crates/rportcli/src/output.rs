//! How answers are printed: `-o human` tables and key-value lists fitted to the terminal,
//! `-o json` (with `-j` pretty) and `-o yaml`, the last from a small emitter of JSON values.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    JsonPretty,
    Yaml,
}

impl Format {
    /// rportcli's `-o` values; `-j` makes json pretty.
    pub fn parse(text: &str, pretty: bool) -> Result<Self, String> {
        match text {
            "" | "human" => Ok(Self::Human),
            "json" if pretty => Ok(Self::JsonPretty),
            "json" => Ok(Self::Json),
            "yaml" => Ok(Self::Yaml),
            other => Err(format!(
                "unknown format '{other}', supported formats are json, yaml, human"
            )),
        }
    }
}

/// `value` as JSON or YAML text (with the trailing newline); None for human output.
pub fn machine_text(format: Format, value: &Value) -> Option<String> {
    match format {
        Format::Human => None,
        Format::Json => Some(format!("{value}\n")),
        Format::JsonPretty => Some(format!(
            "{}\n",
            serde_json::to_string_pretty(value).unwrap_or_default()
        )),
        Format::Yaml => Some(to_yaml(value)),
    }
}

/// A JSON value as a table cell or key-value value: text as it is, lists joined.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(map) if map.is_empty() => String::new(),
        other => other.to_string(),
    }
}

const GAP: &str = "  ";
/// The narrowest a column gets before columns are dropped.
const MIN_COLUMN: usize = 6;

/// A table with a header row, fitted to `width`: the widest columns narrow first and
/// their cells wrap; if even that cannot fit, the last columns are left out (as
/// rportcli does on narrow terminals).
pub fn table(headers: &[&str], rows: &[Vec<String>], width: Option<usize>) -> String {
    let mut shown = headers.len();
    let natural: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|row| row.get(i).map_or(0, |c| c.chars().count()))
                .chain(std::iter::once(headers[i].chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut widths = natural.clone();
    if let Some(limit) = width {
        loop {
            let floor: usize = (0..shown)
                .map(|i| headers[i].chars().count().max(MIN_COLUMN).min(natural[i]))
                .sum::<usize>()
                + GAP.len() * shown.saturating_sub(1);
            if floor <= limit || shown <= 1 {
                break;
            }
            shown -= 1;
        }
        widths.truncate(shown);
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP.len() * w.len().saturating_sub(1);
        while total(&widths) > limit {
            let Some((widest, _)) = widths
                .iter()
                .enumerate()
                .filter(|(i, w)| **w > headers[*i].chars().count().max(MIN_COLUMN))
                .max_by_key(|(_, w)| **w)
            else {
                break;
            };
            widths[widest] -= 1;
        }
    }
    let mut out = String::new();
    let header_cells: Vec<String> = headers[..shown].iter().map(|h| h.to_string()).collect();
    write_row(&mut out, &header_cells, &widths);
    for row in rows {
        write_row(&mut out, &row[..shown.min(row.len())], &widths);
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars
        .chunks(width.max(1))
        .map(|chunk| chunk.iter().collect())
        .collect()
}

fn write_row(out: &mut String, cells: &[String], widths: &[usize]) {
    let wrapped: Vec<Vec<String>> = cells
        .iter()
        .zip(widths)
        .map(|(cell, width)| wrap(cell, *width))
        .collect();
    let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
    for line in 0..height {
        let mut text = String::new();
        for (i, (parts, width)) in wrapped.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str(GAP);
            }
            let part = parts.get(line).map_or("", String::as_str);
            text.push_str(part);
            text.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(part.chars().count()),
            ));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
}

/// `KEY: value` lines, as rportcli's key-value tables, values wrapped to `width`.
pub fn key_values(pairs: &[(String, String)], width: Option<usize>) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(key, value)| vec![format!("{key}:"), value.clone()])
        .collect();
    table(&["KEY", "VALUE"], &rows, width)
}

/// Every field of an object as key-value pairs, in the object's order.
pub fn object_pairs(value: &Value) -> Vec<(String, String)> {
    value
        .as_object()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), cell(v))).collect())
        .unwrap_or_default()
}

/// A JSON value as a YAML document (block style, two-space indent).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_sequence(&mut out, items, 0),
        scalar => {
            out.push_str(&scalar_yaml(scalar));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, by: usize) {
    out.extend(std::iter::repeat_n(' ', by));
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, at: usize) {
    for (key, value) in map {
        indent(out, at);
        write_entry(out, key, value, at);
    }
}

/// `key: value` from the current column; nested collections on the lines below.
fn write_entry(out: &mut String, key: &str, value: &Value, at: usize) {
    out.push_str(&string_yaml(key));
    out.push(':');
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, at + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_sequence(out, items, at + 2);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_yaml(scalar));
            out.push('\n');
        }
    }
}

fn write_sequence(out: &mut String, items: &[Value], at: usize) {
    for item in items {
        indent(out, at);
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                for (i, (key, value)) in map.iter().enumerate() {
                    if i == 0 {
                        out.push(' ');
                    } else {
                        indent(out, at + 2);
                    }
                    write_entry(out, key, value, at + 2);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_sequence(out, inner, at + 2);
            }
            scalar => {
                out.push(' ');
                out.push_str(&scalar_yaml(scalar));
                out.push('\n');
            }
        }
    }
}

fn scalar_yaml(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_yaml(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string plain when YAML reads it back as the same string, else double-quoted (a
/// JSON string is a valid YAML double-quoted scalar).
fn string_yaml(text: &str) -> String {
    if plain_is_safe(text) {
        text.to_owned()
    } else {
        serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
    }
}

fn plain_is_safe(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    let reserved = [
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
    ];
    if reserved.contains(&text.to_ascii_lowercase().as_str()) {
        return false;
    }
    if text.parse::<f64>().is_ok()
        || text.starts_with("0x")
        || text.starts_with("0o")
        || text.starts_with('.')
        || first.is_ascii_digit()
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || "_:.+-eE".contains(c))
    {
        return false;
    }
    !("-?:,[]{}#&*!|>'\"%@` ".contains(first)
        || text.ends_with(' ')
        || text.ends_with(':')
        || text.contains(": ")
        || text.contains(" #")
        || text.chars().any(|c| c.is_control()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_of_nested_values() {
        let value = json!({
            "id": "a1",
            "port": 22,
            "empty": "",
            "flag": "true",
            "num": "0042",
            "tags": ["x", "y: z"],
            "tunnels": [{"id": "1", "acl": null}],
            "none": [],
            "nested": {"k": {"deep": 1}},
        });
        let text = to_yaml(&value);
        // serde_json's maps keep their keys sorted.
        let expected = "empty: \"\"\nflag: \"true\"\nid: a1\nnested:\n  k:\n    deep: 1\nnone: []\nnum: \"0042\"\nport: 22\ntags:\n  - x\n  - \"y: z\"\ntunnels:\n  - acl: null\n    id: \"1\"\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn tables_fit_the_width() {
        let rows = vec![vec![
            "3f2a9e0c-1111-2222-3333-444455556666".to_string(),
            "a-rather-long-device-name".to_string(),
            "Linux 6.1.0-18-amd64 x86_64".to_string(),
        ]];
        let text = table(&["ID", "NAME", "OS_KERNEL"], &rows, Some(40));
        for line in text.lines() {
            assert!(line.chars().count() <= 40, "{line:?} in\n{text}");
        }
        assert!(text.contains("3f2a9e0c"), "{text}");
        let wide = table(&["ID", "NAME", "OS_KERNEL"], &rows, None);
        assert_eq!(wide.lines().count(), 2, "{wide}");
        let narrow = table(&["ID", "NAME", "OS_KERNEL"], &rows, Some(12));
        assert!(!narrow.contains("NAME"), "{narrow}");
    }
}
