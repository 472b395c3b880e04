//! RPort's list options (`filter[...]`, `sort`, `page[...]`, `fields[...]`) parsed into
//! types once, and the filter matching RPort does on them; pure, without I/O.
//!
//! The grammar, as RPort's `share/query` has it:
//! - `filter[col]=v1,v2`: the row matches when `col` matches any of the values;
//!   `filter[a|b]=v`: any of several columns; `filter[*]=v`: every filterable column;
//!   `filter[col][gt|lt|since|until|eq]=...`: a comparison, where the endpoint offers it;
//!   a value `and(v1,v2)` needs every value matched (by some column), `or(v1,v2)` any;
//!   `*` in a value matches any run of characters; comparison ignores case; an array
//!   column matches when one element does, a map column (labels) as `key: value` strings.
//!   Several `filter[...]` parameters must all match.
//! - `sort=col` or `sort=-col` (descending); several by repeating `sort` or by commas.
//! - `page[limit]` (0 to the endpoint's maximum, 0 an empty page that still counts; empty
//!   is the default) and `page[offset]`.
//! - `fields[resource]=a,b`: which fields each row shows.
//!
//! Any parameter of these families the endpoint does not understand is an error naming
//! it, which the handler answers with 400; other parameters are the handler's own.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// What one list endpoint understands.
#[derive(Debug, Clone, Copy)]
pub struct ListSpec {
    /// Columns `filter[...]` may name; `col[op]` entries allow a comparison on `col`.
    pub filters: &'static [&'static str],
    /// Columns `sort` may name.
    pub sorts: &'static [&'static str],
    /// The resource of `fields[...]` and its fields; `None`: no field selection.
    pub fields: Option<(&'static str, &'static [&'static str])>,
    /// `None`: no paging parameters at all.
    pub page: Option<PageLimits>,
}

impl ListSpec {
    /// An endpoint that takes none of the list options.
    pub const NONE: ListSpec = ListSpec {
        filters: &[],
        sorts: &[],
        fields: None,
        page: None,
    };
}

/// Paging bounds: `default` rows when `page[limit]` is absent (`None`: all of them).
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub default: Option<usize>,
    pub max: usize,
}

/// RPort's paging: 50 rows unless asked, at most 500.
pub const RPORT_PAGE: PageLimits = PageLimits {
    default: Some(50),
    max: 500,
};

/// Paging for lists RPort returns whole: all rows unless `page[limit]` asks for fewer.
pub const WHOLE_UNLESS_ASKED: PageLimits = PageLimits {
    default: None,
    max: usize::MAX,
};

/// How a filter's values combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logic {
    /// One value matching is enough (RPort's default, and `or(...)`).
    Any,
    /// `and(...)`: every value must match.
    All,
}

/// A comparison `filter[col][op]` asks for; without one, values are patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Gt,
    Lt,
    Since,
    Until,
}

impl Comparison {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "eq" => Self::Eq,
            "gt" => Self::Gt,
            "lt" => Self::Lt,
            "since" => Self::Since,
            "until" => Self::Until,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Gt => "gt",
            Self::Lt => "lt",
            Self::Since => "since",
            Self::Until => "until",
        }
    }
}

/// One `filter[...]` parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The columns it looks at (several for `a|b` and `*`).
    pub columns: Vec<&'static str>,
    pub comparison: Option<Comparison>,
    /// Trimmed; never empty as a list (an empty parameter is one empty value).
    pub values: Vec<String>,
    pub logic: Logic,
}

/// `sort` on one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: &'static str,
    pub descending: bool,
}

/// Which rows of the sorted, filtered list to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    /// `None`: all rows from `offset`.
    pub limit: Option<usize>,
}

impl Page {
    /// The rows of `rows` this page shows.
    pub fn of<T>(&self, rows: Vec<T>) -> Vec<T> {
        rows.into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .collect()
    }
}

/// The list options of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListOptions {
    pub filters: Vec<Filter>,
    /// Empty: the endpoint's own order.
    pub sorts: Vec<Sort>,
    pub page: Page,
    /// `None`: the endpoint's default fields.
    pub fields: Option<Vec<&'static str>>,
}

/// A list option the endpoint does not understand, naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    Filter(String),
    Sort(String),
    Page(String),
    Fields(String),
}

impl ListError {
    /// RPort's words for the family, and ours for the code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Filter(_) => "ERR_CODE_UNSUPPORTED_FILTER",
            Self::Sort(_) => "ERR_CODE_INVALID_SORT",
            Self::Page(_) => "ERR_CODE_INVALID_PAGE",
            Self::Fields(_) => "ERR_CODE_INVALID_FIELDS",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Self::Filter(_) => "Invalid filter",
            Self::Sort(_) => "Invalid sort",
            Self::Page(_) => "Invalid page",
            Self::Fields(_) => "Invalid fields",
        }
    }
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Filter(text) | Self::Sort(text) | Self::Page(text) | Self::Fields(text) => {
                f.write_str(text)
            }
        }
    }
}

/// How much of a caller's text goes into an error message.
const SHOWN: usize = 64;

fn shown(text: &str) -> String {
    let cut: String = text.chars().take(SHOWN).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn known(list: &'static [&'static str], name: &str) -> Option<&'static str> {
    list.iter().copied().find(|known| *known == name)
}

impl ListOptions {
    /// Parses the query's list options for an endpoint that understands `spec`;
    /// parameters outside the four families are left to the handler.
    pub fn parse(params: &[(String, String)], spec: &ListSpec) -> Result<Self, ListError> {
        let mut options = ListOptions {
            filters: Vec::new(),
            sorts: Vec::new(),
            page: Page {
                offset: 0,
                limit: spec.page.and_then(|p| p.default),
            },
            fields: None,
        };
        // RPort reads the query as a map: a repeated `filter[x]` is one filter with the
        // values of all of them.
        let mut filter_keys: Vec<(&str, Vec<&str>)> = Vec::new();
        for (key, value) in params {
            if key.starts_with("filter") {
                match filter_keys.iter_mut().find(|(k, _)| *k == key.as_str()) {
                    Some((_, values)) => values.push(value),
                    None => filter_keys.push((key, vec![value])),
                }
            } else if key == "sort" {
                for part in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    options.sorts.push(parse_sort(part, spec)?);
                }
            } else if key.starts_with("page") {
                parse_page(key, value, spec, &mut options.page)?;
            } else if key.starts_with("fields") {
                let fields = parse_fields(key, value, spec)?;
                options.fields.get_or_insert_with(Vec::new).extend(fields);
            }
        }
        for (key, values) in filter_keys {
            options.filters.push(parse_filter(key, &values, spec)?);
        }
        Ok(options)
    }

    /// The options of a request for one item: RPort reads only `fields[...]` there and
    /// ignores the rest, so does this.
    pub fn parse_retrieve(params: &[(String, String)], spec: &ListSpec) -> Result<Self, ListError> {
        let fields: Vec<(String, String)> = params
            .iter()
            .filter(|(key, _)| key.starts_with("fields"))
            .cloned()
            .collect();
        Self::parse(&fields, spec)
    }

    /// Whether a row passes every filter; `column` gives a row's value of a column
    /// (`None` when it has none, which matches only an empty value).
    pub fn matches(&self, column: impl Fn(&str) -> Option<Value>) -> bool {
        self.filters.iter().all(|filter| filter.matches(&column))
    }

    /// Orders rows by the sorts; `column` as for [`ListOptions::matches`]. Stable, so
    /// rows equal in every sort keep the order they came in.
    pub fn sort<T>(&self, rows: &mut [T], column: impl Fn(&T, &str) -> Option<Value>) {
        if self.sorts.is_empty() {
            return;
        }
        rows.sort_by(|a, b| {
            self.sorts
                .iter()
                .map(|sort| {
                    let (x, y) = (
                        column(a, sort.column).unwrap_or(Value::Null),
                        column(b, sort.column).unwrap_or(Value::Null),
                    );
                    let order = compare(&x, &y);
                    if sort.descending {
                        order.reverse()
                    } else {
                        order
                    }
                })
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
    }
}

fn parse_sort(part: &str, spec: &ListSpec) -> Result<Sort, ListError> {
    let (name, descending) = match part.strip_prefix('-') {
        Some(rest) => (rest, true),
        None => (part, false),
    };
    known(spec.sorts, name)
        .map(|column| Sort { column, descending })
        .ok_or_else(|| ListError::Sort(format!("unsupported sort field {}", shown(name))))
}

fn parse_page(key: &str, value: &str, spec: &ListSpec, page: &mut Page) -> Result<(), ListError> {
    let Some(limits) = spec.page else {
        return Err(ListError::Page(format!(
            "this list has no paging; {} is not understood",
            shown(key)
        )));
    };
    let value = value.trim();
    match key {
        "page[limit]" => {
            if value.is_empty() {
                page.limit = limits.default;
                return Ok(());
            }
            let limit: i64 = value.parse().map_err(|_| {
                ListError::Page(format!(
                    "pagination limit must be a number, got {}",
                    shown(value)
                ))
            })?;
            // RPort refuses 0, but its web UI sends it (a page of names for no ids) and
            // expects nothing back; an empty page with the count is what it means.
            if limit < 0 {
                return Err(ListError::Page(
                    "pagination limit must not be negative".to_owned(),
                ));
            }
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            if limit > limits.max {
                return Err(ListError::Page(format!(
                    "pagination limit too big ({limit}) maximum is {}",
                    limits.max
                )));
            }
            page.limit = Some(limit);
        }
        "page[offset]" => {
            let offset: i64 = value.parse().map_err(|_| {
                ListError::Page(format!(
                    "pagination offset must be a number, got {}",
                    shown(value)
                ))
            })?;
            page.offset = usize::try_from(offset).map_err(|_| {
                ListError::Page("pagination offset must not be negative".to_owned())
            })?;
        }
        _ => {
            return Err(ListError::Page(format!(
                "unsupported paging parameter {}; use page[limit] and page[offset]",
                shown(key)
            )));
        }
    }
    Ok(())
}

fn parse_fields(key: &str, value: &str, spec: &ListSpec) -> Result<Vec<&'static str>, ListError> {
    let resource = key
        .strip_prefix("fields[")
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(|| ListError::Fields(format!("{} is not fields[RESOURCE]", shown(key))))?;
    let Some((name, fields)) = spec.fields.filter(|(name, _)| *name == resource) else {
        return Err(ListError::Fields(format!(
            "unsupported resource in fields: {}",
            shown(resource)
        )));
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|field| {
            known(fields, field).ok_or_else(|| {
                ListError::Fields(format!(
                    "unsupported field {} for resource {name:?}",
                    shown(field)
                ))
            })
        })
        .collect()
}

fn parse_filter(key: &str, values: &[&str], spec: &ListSpec) -> Result<Filter, ListError> {
    let unsupported = || ListError::Filter(format!("unsupported filter field {}", shown(key)));
    let rest = key.strip_prefix("filter[").ok_or_else(unsupported)?;
    let (columns, rest) = rest.split_once(']').ok_or_else(unsupported)?;
    let comparison = match rest {
        "" => None,
        _ => {
            let op = rest
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .ok_or_else(unsupported)?;
            Some(Comparison::parse(op).ok_or_else(unsupported)?)
        }
    };
    let supported = |column: &str| -> Option<&'static str> {
        match comparison {
            None => known(spec.filters, column),
            Some(op) => {
                let wanted = format!("{column}[{}]", op.name());
                // The column's own name, as rows know it, out of the `col[op]` entry.
                known(spec.filters, &wanted).map(|entry| &entry[..column.len()])
            }
        }
    };
    let columns: Vec<&'static str> = if columns == "*" && comparison.is_none() {
        spec.filters
            .iter()
            .copied()
            .filter(|f| !f.contains('['))
            .collect()
    } else {
        columns
            .split('|')
            .map(|c| supported(c.trim()).ok_or_else(unsupported))
            .collect::<Result<_, _>>()?
    };
    if columns.is_empty() {
        return Err(unsupported());
    }
    let mut logic = Logic::Any;
    let mut operands = Vec::new();
    for value in values {
        let value = value.trim();
        let inner = match logical_block(value) {
            Some((found, inner)) => {
                logic = found;
                inner
            }
            None => value,
        };
        operands.extend(inner.split(',').map(|v| v.trim().to_owned()));
    }
    Ok(Filter {
        columns,
        comparison,
        values: operands,
        logic,
    })
}

/// `and(...)` or `or(...)` around a value list.
fn logical_block(value: &str) -> Option<(Logic, &str)> {
    let inner = |prefix: &str| {
        value
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .filter(|inner| !inner.is_empty())
    };
    inner("and(")
        .map(|i| (Logic::All, i))
        .or_else(|| inner("or(").map(|i| (Logic::Any, i)))
}

impl Filter {
    fn matches(&self, column: &impl Fn(&str) -> Option<Value>) -> bool {
        let mut matched = vec![false; self.values.len()];
        for name in &self.columns {
            let value = column(name).unwrap_or(Value::Null);
            for text in value_texts(&value) {
                for (wanted, done) in self.values.iter().zip(matched.iter_mut()) {
                    if !*done && self.value_matches(wanted, text.as_deref()) {
                        *done = true;
                    }
                }
            }
        }
        match self.logic {
            Logic::Any => matched.iter().any(|m| *m),
            Logic::All => matched.iter().all(|m| *m),
        }
    }

    fn value_matches(&self, wanted: &str, text: Option<&str>) -> bool {
        match self.comparison {
            None => match text {
                Some(text) => wildcard_match(wanted, text),
                None => wanted.is_empty(),
            },
            Some(op) => text.is_some_and(|text| compare_as_time(op, text, wanted)),
        }
    }
}

/// What of a row's value a filter compares: each element of an array, `key: value`
/// for each entry of a map, the text of anything else; `None` for null.
fn value_texts(value: &Value) -> Vec<Option<String>> {
    match value {
        Value::Null => vec![None],
        Value::String(text) => vec![Some(text.clone())],
        Value::Array(items) => items.iter().flat_map(value_texts).collect(),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                Some(format!("{key}: {text}"))
            })
            .collect(),
        other => vec![Some(other.to_string())],
    }
}

/// A time comparison: the row's RFC 3339 time against the filter's RFC 3339 time or
/// date (a date `eq` is the whole day, as RPort). Anything else does not match.
fn compare_as_time(op: Comparison, text: &str, wanted: &str) -> bool {
    use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
    let Ok(value) = DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)) else {
        return false;
    };
    let (start, whole_day) = match DateTime::parse_from_rfc3339(wanted) {
        Ok(time) => (time.with_timezone(&Utc), false),
        Err(_) => match NaiveDate::parse_from_str(wanted, "%Y-%m-%d") {
            Ok(date) => (date.and_time(chrono::NaiveTime::MIN).and_utc(), true),
            Err(_) => return false,
        },
    };
    match op {
        Comparison::Gt => value > start,
        Comparison::Lt => value < start,
        Comparison::Since => value >= start,
        Comparison::Until => value <= start,
        Comparison::Eq if whole_day => value >= start && value < start + TimeDelta::days(1),
        Comparison::Eq => value == start,
    }
}

/// `*` matches any run of characters; comparison ignores case.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let text: Vec<char> = text.to_lowercase().chars().collect();
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] != '*' && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Numbers by value, text ignoring case, null first.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (x, y) => x.to_string().cmp(&y.to_string()),
    }
}

impl From<ListError> for super::ApiError {
    fn from(err: ListError) -> Self {
        super::ApiError::bad_request(err.code(), err.title(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPEC: ListSpec = ListSpec {
        filters: &[
            "id",
            "name",
            "tags",
            "labels",
            "created_at",
            "created_at[gt]",
        ],
        sorts: &["id", "name"],
        fields: Some(("clients", &["id", "name", "tags"])),
        page: Some(RPORT_PAGE),
    };

    fn parse(query: &str) -> Result<ListOptions, ListError> {
        let params: Vec<(String, String)> =
            serde_urlencoded::from_str(query).expect("test query parses");
        ListOptions::parse(&params, &SPEC)
    }

    fn row(name: &str, tags: &[&str]) -> Value {
        json!({"id": format!("id-{name}"), "name": name, "tags": tags,
               "labels": {"city": "Berlin"}, "created_at": "2024-05-02T10:00:00Z"})
    }

    fn keeps(options: &ListOptions, row: &Value) -> bool {
        options.matches(|c| row.get(c).cloned())
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*berlin*", "Office Berlin"));
        assert!(wildcard_match("linux", "Linux"));
        assert!(!wildcard_match("linux", "Linux2"));
        assert!(wildcard_match("my-*-1", "my-client-1"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a*b", "ac"));
    }

    #[test]
    fn and_or_blocks_on_tags() {
        let both = row("a", &["Linux", "Office Berlin"]);
        let one = row("b", &["Linux"]);
        let and = parse("filter[tags]=and(Linux,Office Berlin)").expect("parses");
        assert_eq!(and.filters[0].logic, Logic::All);
        assert_eq!(and.filters[0].values, ["Linux", "Office Berlin"]);
        assert!(keeps(&and, &both));
        assert!(!keeps(&and, &one));
        let or = parse("filter[tags]=or(Windows,Linux)").expect("parses");
        assert!(keeps(&or, &both) && keeps(&or, &one));
        let plain = parse("filter[tags]=Windows,linux").expect("parses");
        assert!(keeps(&plain, &one));
    }

    #[test]
    fn several_columns_and_every_column() {
        let r = row("web-1", &["prod"]);
        assert!(keeps(&parse("filter[name|tags]=prod").expect("parses"), &r));
        assert!(keeps(&parse("filter[*]=web*").expect("parses"), &r));
        assert!(keeps(&parse("filter[*]=city: Berlin").expect("parses"), &r));
        assert!(!keeps(&parse("filter[*]=nothing").expect("parses"), &r));
        assert!(keeps(
            &parse("filter[labels]=city: b*").expect("parses"),
            &r
        ));
        // Filters combine with AND.
        assert!(!keeps(
            &parse("filter[name]=web-1&filter[tags]=dev").expect("parses"),
            &r
        ));
    }

    #[test]
    fn comparisons_where_offered() {
        let r = row("a", &[]);
        assert!(keeps(
            &parse("filter[created_at][gt]=2024-05-01").expect("parses"),
            &r
        ));
        assert!(!keeps(
            &parse("filter[created_at][gt]=2024-05-03").expect("parses"),
            &r
        ));
        assert!(matches!(
            parse("filter[created_at][lt]=2024-05-01"),
            Err(ListError::Filter(_))
        ));
    }

    #[test]
    fn what_is_not_understood_is_named() {
        for (query, family) in [
            ("filter[nope]=1", "filter"),
            ("filter[name|nope]=1", "filter"),
            ("filter=1", "filter"),
            ("filter[name][between]=1", "filter"),
            ("sort=-nope", "sort"),
            ("page[number]=2", "page"),
            ("page[limit]=-1", "page"),
            ("page[limit]=501", "page"),
            ("page[limit]=x", "page"),
            ("page[offset]=-1", "page"),
            ("fields[users]=id", "fields"),
            ("fields[clients]=nope", "fields"),
        ] {
            let err = parse(query).expect_err(query);
            let ok = match family {
                "filter" => matches!(err, ListError::Filter(_)),
                "sort" => matches!(err, ListError::Sort(_)),
                "page" => matches!(err, ListError::Page(_)),
                _ => matches!(err, ListError::Fields(_)),
            };
            assert!(ok, "{query}: {err:?}");
        }
        assert!(
            parse("force=true&client_id=x").is_ok(),
            "others are the handler's"
        );
        let one = [
            ("filter[nope]".to_owned(), "x".to_owned()),
            ("fields[clients]".to_owned(), "id".to_owned()),
        ];
        let options = ListOptions::parse_retrieve(&one, &SPEC).expect("fields only");
        assert_eq!(options.fields, Some(vec!["id"]));
        assert!(
            ListOptions::parse(&[("page[limit]".into(), "5".into())], &ListSpec::NONE).is_err()
        );
    }

    #[test]
    fn paging_and_sorting() {
        let options = parse("page[limit]=2&page[offset]=1&sort=-name").expect("parses");
        let mut rows = vec![row("a", &[]), row("c", &[]), row("b", &[])];
        options.sort(&mut rows, |r, c| r.get(c).cloned());
        let names: Vec<_> = options
            .page
            .of(rows)
            .iter()
            .map(|r| r["name"].clone())
            .collect();
        assert_eq!(names, [json!("b"), json!("a")]);
        assert_eq!(parse("page[limit]=").expect("parses").page.limit, Some(50));
        assert_eq!(parse("").expect("parses").page.limit, Some(50));
    }

    /// Fuzz-style: whatever the query, parsing answers (options or a named error) and
    /// matching never panics.
    #[test]
    fn any_query_parses_or_is_refused() {
        let alphabet: Vec<char> = "filter[]*|,()andor-_ sortpage0123456789limitoffsetfields:"
            .chars()
            .collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let keys = ["filter[", "sort", "page[", "fields[", "x"];
        for _ in 0..5_000 {
            let mut key = keys[next(keys.len())].to_owned();
            let mut value = String::new();
            for _ in 0..next(12) {
                key.push(alphabet[next(alphabet.len())]);
            }
            for _ in 0..next(16) {
                value.push(alphabet[next(alphabet.len())]);
            }
            if let Ok(options) = ListOptions::parse(&[(key, value)], &SPEC) {
                let r = row("fuzz", &["t"]);
                let _ = keeps(&options, &r);
                assert!(options.page.limit.is_some_and(|l| l <= 500));
            }
        }
    }
}
