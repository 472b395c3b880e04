//! RPort's list options (`share/query`), for the lists that take them here (the audit
//! log, stored tunnels): `sort=[-]FIELD` (repeatable or comma-separated), `page[limit]`
//! and `page[offset]`, and `filter[a|b]=v1,v2`. Pure: a handler says which names it
//! knows; a name it does not know is a 400 naming it.

use rport_store::{ListMatch, ListSort};

use crate::api::{ApiError, Params};

/// Values of one filter, and sorts, one request may give: they become SQL terms.
const MAX_TERMS: usize = 100;

pub(super) fn invalid(title: impl Into<String>, detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("ERR_CODE_INVALID_REQUEST", title, detail)
}

/// What a list does with each option of a request.
pub(super) struct ListGrammar<'a, F> {
    /// The field a sort names, if it is one of the list's.
    pub sort_field: &'a dyn Fn(&str) -> Option<F>,
    /// The field a plain `filter[name]` names, if it is one of the list's.
    pub filter_field: &'a dyn Fn(&str) -> Option<F>,
    /// The sort fields, for the 400's detail.
    pub sorts: &'a str,
    /// The filters, for the 400's detail.
    pub filters: &'a str,
    pub default_limit: usize,
    pub max_limit: usize,
}

/// The options of one request, read by a [`ListGrammar`].
pub(super) struct ListOptions<F> {
    pub matches: Vec<ListMatch<F>>,
    pub sort: Vec<ListSort<F>>,
    pub limit: usize,
    pub offset: usize,
}

impl<F> ListGrammar<'_, F> {
    /// Reads `params`. `special(key, value)` sees each `filter...` key first and returns
    /// whether it took it (a list's own filters, such as the audit log's times).
    pub fn parse(
        &self,
        params: &Params,
        mut special: impl FnMut(&str, &str) -> Result<bool, ApiError>,
    ) -> Result<ListOptions<F>, ApiError> {
        let mut options = ListOptions {
            matches: Vec::new(),
            sort: Vec::new(),
            limit: self.default_limit,
            offset: 0,
        };
        for (key, value) in &params.0 {
            let key = key.as_str();
            match key {
                "sort" => self.sorts_of(value, &mut options.sort)?,
                "page[limit]" => options.limit = self.limit(value)?,
                "page[offset]" => {
                    options.offset =
                        usize::try_from(page_number("offset", value)?).map_err(|_| {
                            invalid(
                                "pagination offset must not be negative",
                                format!("page[offset]={value:?}"),
                            )
                        })?;
                }
                _ if key.starts_with("page") => {
                    return Err(invalid(
                        format!("unsupported pagination parameter '{key}'"),
                        "use page[limit] and page[offset]",
                    ));
                }
                _ if key.starts_with("filter") => {
                    if special(key, value)? {
                        continue;
                    }
                    options.matches.push(self.filter(key, value)?);
                }
                // Other parameters are not list options; RPort ignores them too.
                _ => {}
            }
        }
        if options.sort.len() > MAX_TERMS {
            return Err(invalid("Too many sorts", format!("at most {MAX_TERMS}")));
        }
        Ok(options)
    }

    fn sorts_of(&self, value: &str, sort: &mut Vec<ListSort<F>>) -> Result<(), ApiError> {
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, descending) = match part.strip_prefix('-') {
                Some(name) => (name, true),
                None => (part, false),
            };
            let field = (self.sort_field)(name).ok_or_else(|| {
                invalid(
                    format!("unsupported sort field '{name}'"),
                    format!("sort by one of {}", self.sorts),
                )
            })?;
            sort.push(ListSort { field, descending });
        }
        Ok(())
    }

    fn limit(&self, value: &str) -> Result<usize, ApiError> {
        let limit = page_number("limit", value)?;
        if limit <= 0 {
            return Err(invalid(
                "pagination limit must be positive",
                format!("page[limit]={value:?}"),
            ));
        }
        usize::try_from(limit)
            .ok()
            .filter(|l| *l <= self.max_limit)
            .ok_or_else(|| {
                invalid(
                    format!(
                        "pagination limit too big ({limit}) maximum is {}",
                        self.max_limit
                    ),
                    format!("page[limit] is at most {}", self.max_limit),
                )
            })
    }

    /// `filter[a|b]=v1,v2`: any of the fields matches any of the values.
    pub fn filter(&self, key: &str, value: &str) -> Result<ListMatch<F>, ApiError> {
        let unsupported = || {
            invalid(
                format!("unsupported filter field '{key}'"),
                format!("filter by one of {}", self.filters),
            )
        };
        let columns = key
            .strip_prefix("filter[")
            .and_then(|rest| rest.strip_suffix(']'))
            .filter(|c| !c.contains('[') && !c.contains(']'))
            .ok_or_else(unsupported)?;
        let fields = columns
            .split('|')
            .map(|c| (self.filter_field)(c.trim()).ok_or_else(unsupported))
            .collect::<Result<Vec<F>, ApiError>>()?;
        let values: Vec<String> = value.split(',').map(|v| v.trim().to_owned()).collect();
        if values.len() > MAX_TERMS {
            return Err(invalid(
                format!("Too many values for {key}"),
                format!("at most {MAX_TERMS}"),
            ));
        }
        Ok(ListMatch { fields, values })
    }
}

fn page_number(key: &str, text: &str) -> Result<i64, ApiError> {
    text.trim().parse().map_err(|_| {
        invalid(
            format!("Invalid {key}"),
            format!("{key}={text:?}: pagination {key} must be a number"),
        )
    })
}
