//! RPort's list options, read by the one parser (`api::list_options`), turned into the
//! terms the store runs as SQL (`ListMatch`, `ListSort`, limit, offset) for the lists
//! filtered and paged in the database: the audit log and stored tunnels. Pure.

use rport_store::{ListMatch, ListSort};

use crate::api::list_options::{Filter, ListError, ListOptions, ListSpec, Logic, PageLimits, Sort};
use crate::api::{ApiError, Params};

/// RPort's paging of the audit log and stored tunnels: 10 rows unless asked, at most 100.
pub(super) const TEN_UNLESS_ASKED: PageLimits = PageLimits {
    default: Some(10),
    max: 100,
};

/// Values of one filter, and sorts, one request may give: they become SQL terms.
const MAX_TERMS: usize = 100;

/// These lists answer every refused option with RPort's generic code, as they always have.
pub(super) fn invalid(title: impl Into<String>, detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("ERR_CODE_INVALID_REQUEST", title, detail)
}

fn refused(err: ListError) -> ApiError {
    invalid(err.title(), err.to_string())
}

/// The limit and offset of a page the store reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StorePage {
    pub limit: usize,
    pub offset: usize,
}

/// Parses `params` for a list the store pages; `spec.page` must give a default limit.
/// `fields[...]` is dropped first: RPort's lists without a field selection ignore it.
pub(super) fn parse(
    params: &Params,
    spec: &ListSpec,
) -> Result<(ListOptions, StorePage), ApiError> {
    let list_params: Vec<(String, String)> = params
        .0
        .iter()
        .filter(|(key, _)| !key.starts_with("fields"))
        .cloned()
        .collect();
    let options = ListOptions::parse(&list_params, spec).map_err(refused)?;
    // `page[limit]=0` is an empty page with its count, as on every list (list_options).
    let limit = match options.page.limit {
        Some(limit) => limit,
        None => usize::MAX,
    };
    if options.sorts.len() > MAX_TERMS {
        return Err(invalid("Too many sorts", format!("at most {MAX_TERMS}")));
    }
    let page = StorePage {
        limit,
        offset: options.page.offset,
    };
    Ok((options, page))
}

/// Plain `filter[...]`s as the store's matches: `field` names each column's store field.
/// `and(...)` becomes one match per value (every value matched by some column); a
/// comparison is not a plain filter and is refused naming it.
pub(super) fn matches<F: Copy + PartialEq>(
    filters: &[Filter],
    field: impl Fn(&str) -> Option<F>,
) -> Result<Vec<ListMatch<F>>, ApiError> {
    let mut matches = Vec::new();
    for filter in filters {
        let key = format!("filter[{}]", filter.columns.join("|"));
        if filter.comparison.is_some() {
            return Err(invalid(
                "Invalid filter",
                format!("{key} takes no comparison in this list"),
            ));
        }
        if filter.values.len() > MAX_TERMS {
            return Err(invalid(
                format!("Too many values for {key}"),
                format!("at most {MAX_TERMS}"),
            ));
        }
        let mut fields = Vec::new();
        for column in &filter.columns {
            let found = field(column).ok_or_else(|| {
                invalid(
                    "Invalid filter",
                    format!("unsupported filter field {column:?}"),
                )
            })?;
            // `actor` and `username`, or `*`, can name one store field twice.
            if !fields.contains(&found) {
                fields.push(found);
            }
        }
        match filter.logic {
            Logic::Any => matches.push(ListMatch {
                fields,
                values: filter.values.clone(),
            }),
            Logic::All => matches.extend(filter.values.iter().map(|value| ListMatch {
                fields: fields.clone(),
                values: vec![value.clone()],
            })),
        }
    }
    Ok(matches)
}

/// The sorts as the store's; `field` names each column's store field.
pub(super) fn sorts<F>(
    sorts: &[Sort],
    field: impl Fn(&str) -> Option<F>,
) -> Result<Vec<ListSort<F>>, ApiError> {
    sorts
        .iter()
        .map(|sort| {
            field(sort.column)
                .map(|field| ListSort {
                    field,
                    descending: sort.descending,
                })
                .ok_or_else(|| {
                    invalid(
                        "Invalid sort",
                        format!("unsupported sort field {:?}", sort.column),
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: ListSpec = ListSpec {
        filters: &["a", "b"],
        sorts: &["a"],
        fields: None,
        page: Some(TEN_UNLESS_ASKED),
    };

    fn read(query: &str) -> Result<(ListOptions, StorePage), ApiError> {
        let params = Params(serde_urlencoded::from_str(query).expect("test query parses"));
        parse(&params, &SPEC)
    }

    fn column(name: &str) -> Option<char> {
        name.chars().next()
    }

    #[test]
    fn and_is_one_match_per_value_or_and_plain_one_match() {
        let (options, page) = read("filter[a|b]=and(x,y*)&filter[*]=or(z)&fields[q]=r")
            .expect("valid, fields ignored");
        assert_eq!(
            page,
            StorePage {
                limit: 10,
                offset: 0
            }
        );
        let found = matches(&options.filters, column).expect("plain filters");
        assert_eq!(
            found,
            [
                ListMatch {
                    fields: vec!['a', 'b'],
                    values: vec!["x".into()]
                },
                ListMatch {
                    fields: vec!['a', 'b'],
                    values: vec!["y*".into()]
                },
                ListMatch {
                    fields: vec!['a', 'b'],
                    values: vec!["z".into()]
                },
            ]
        );
    }

    #[test]
    fn an_empty_page_is_allowed_and_too_many_values_and_unknown_columns_are_refused() {
        assert_eq!(read("page[limit]=0").expect("an empty page").1.limit, 0);
        let many = format!("filter[a]={}", vec!["v"; MAX_TERMS + 1].join(","));
        let (options, _) = read(&many).expect("parses");
        assert!(matches(&options.filters, column).is_err());
        let (options, _) = read("filter[a]=1&sort=-a").expect("parses");
        assert!(matches(&options.filters, |_| None::<char>).is_err());
        assert_eq!(
            sorts(&options.sorts, column).expect("known"),
            [ListSort {
                field: 'a',
                descending: true
            }]
        );
    }
}
