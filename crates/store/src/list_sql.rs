//! The SQL pieces of RPort's list filters, shared by the lists that take them (the audit
//! log, stored tunnels): a filter's values bound as parameters, never spliced in, with
//! RPort's `*` wildcard.

/// A bound parameter of a generated query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqlValue {
    Text(String),
    Int(i64),
}

/// One `filter[...]`: an entry passes if any of `fields` matches any of `values`. A value
/// with `*` is a case-insensitive pattern (`*` any text), as RPort's; an empty value
/// matches an empty or absent field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMatch<F> {
    pub fields: Vec<F>,
    pub values: Vec<String>,
}

/// One `sort=[-]field`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListSort<F> {
    pub field: F,
    pub descending: bool,
}

/// One page of a filtered list, and what counts the filter's total.
pub(crate) struct PageQuery {
    pub table: &'static str,
    pub columns: &'static str,
    /// `WHERE ...` or empty, binding `params` in order.
    pub where_clause: String,
    pub order_by: String,
    pub params: Vec<SqlValue>,
    pub limit: usize,
    pub offset: usize,
}

impl PageQuery {
    pub(crate) fn count_sql(&self) -> String {
        format!("SELECT COUNT(*) FROM {} {}", self.table, self.where_clause)
    }

    /// The page, its limit and offset bound after `params`.
    pub(crate) fn page_sql(&self, placeholder: fn(usize) -> String) -> String {
        let n = self.params.len();
        format!(
            "SELECT {} FROM {} {} {} LIMIT {} OFFSET {}",
            self.columns,
            self.table,
            self.where_clause,
            self.order_by,
            placeholder(n + 1),
            placeholder(n + 2)
        )
    }

    pub(crate) fn limit_and_offset(&self) -> [i64; 2] {
        [
            i64::try_from(self.limit).unwrap_or(i64::MAX),
            i64::try_from(self.offset).unwrap_or(i64::MAX),
        ]
    }
}

/// `(e1 = ? OR LOWER(e1) LIKE ? ... OR e2 = ? ...)`: any expression matches any value. A
/// value with `*` is a case-insensitive pattern; no values match nothing.
/// `placeholder(n)` spells the n-th (1-based) parameter in the backend's syntax.
pub(crate) fn any_match(
    expressions: &[String],
    values: &[String],
    params: &mut Vec<SqlValue>,
    placeholder: fn(usize) -> String,
) -> String {
    let mut any = Vec::new();
    for expression in expressions {
        for value in values {
            any.push(match like_pattern(value) {
                Some(pattern) => {
                    params.push(SqlValue::Text(pattern));
                    format!(
                        "LOWER({expression}) LIKE {} ESCAPE '\\'",
                        placeholder(params.len())
                    )
                }
                None => {
                    params.push(SqlValue::Text(value.clone()));
                    format!("{expression} = {}", placeholder(params.len()))
                }
            });
        }
    }
    if any.is_empty() {
        any.push("1 = 0".to_owned());
    }
    format!("({})", any.join(" OR "))
}

/// RPort's wildcard: a value with `*` is a case-insensitive LIKE pattern in which only
/// `*` is special (`%`, `_` and `\` are themselves).
fn like_pattern(value: &str) -> Option<String> {
    if !value.contains('*') {
        return None;
    }
    let mut pattern = String::with_capacity(value.len() + 4);
    for c in value.to_lowercase().chars() {
        match c {
            '*' => pattern.push('%'),
            '%' | '_' | '\\' => {
                pattern.push('\\');
                pattern.push(c);
            }
            c => pattern.push(c),
        }
    }
    Some(pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_escaped_like_patterns() {
        assert_eq!(like_pattern("admin"), None);
        assert_eq!(like_pattern("Ad*"), Some("ad%".to_owned()));
        assert_eq!(like_pattern("*50%_x*"), Some("%50\\%\\_x%".to_owned()));
    }

    #[test]
    fn values_are_bound_in_order() {
        let mut params = vec![SqlValue::Int(1)];
        let sql = any_match(
            &["a".to_owned(), "b".to_owned()],
            &["x".to_owned(), "y*".to_owned()],
            &mut params,
            |n| format!("${n}"),
        );
        assert_eq!(
            sql,
            "(a = $2 OR LOWER(a) LIKE $3 ESCAPE '\\' OR b = $4 OR LOWER(b) LIKE $5 ESCAPE '\\')"
        );
        assert_eq!(params.len(), 5);
        assert_eq!(
            any_match(&[], &[], &mut params, |n| n.to_string()),
            "(1 = 0)"
        );
    }
}
