//! Sets of TCP ports written as RPort does (`"20000-30000"`, `"22"`), kept as sorted,
//! disjoint inclusive ranges so that membership and the n-th port are cheap.

use std::fmt;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct PortRanges {
    /// Sorted, disjoint, non-adjacent inclusive ranges.
    ranges: Vec<(u16, u16)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{entry:?} is not a port or a port range like \"20000-30000\": {reason}")]
pub struct PortRangeError {
    pub entry: String,
    pub reason: &'static str,
}

fn parse_port(text: &str, entry: &str) -> Result<u16, PortRangeError> {
    let error = |reason| PortRangeError {
        entry: entry.to_owned(),
        reason,
    };
    let port: u16 = text
        .trim()
        .parse()
        .map_err(|_| error("ports are numbers from 1 to 65535"))?;
    if port == 0 {
        return Err(error("port 0 cannot be used"));
    }
    Ok(port)
}

impl PortRanges {
    /// Parses entries like `"22"` and `"20000-30000"`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, PortRangeError> {
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.as_ref();
            let range = match entry.split_once('-') {
                Some((low, high)) => (parse_port(low, entry)?, parse_port(high, entry)?),
                None => {
                    let port = parse_port(entry, entry)?;
                    (port, port)
                }
            };
            if range.0 > range.1 {
                return Err(PortRangeError {
                    entry: entry.to_owned(),
                    reason: "the range starts above its end",
                });
            }
            ranges.push(range);
        }
        Ok(Self::normalized(ranges))
    }

    fn normalized(mut ranges: Vec<(u16, u16)>) -> Self {
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (low, high) in ranges {
            match merged.last_mut() {
                Some(last) if u32::from(low) <= u32::from(last.1) + 1 => last.1 = last.1.max(high),
                _ => merged.push((low, high)),
            }
        }
        Self { ranges: merged }
    }

    /// The ports in `self` that are not in `other`.
    pub fn subtract(&self, other: &PortRanges) -> PortRanges {
        let mut result = Vec::new();
        for &(low, high) in &self.ranges {
            let mut next = Some(low);
            for &(cut_low, cut_high) in &other.ranges {
                let Some(start) = next else { break };
                if cut_high < start || cut_low > high {
                    continue;
                }
                if cut_low > start {
                    result.push((start, cut_low - 1));
                }
                next = cut_high.checked_add(1).filter(|&n| n <= high);
            }
            if let Some(start) = next {
                result.push((start, high));
            }
        }
        Self::normalized(result)
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(low, high)| (low..=high).contains(&port))
    }

    pub fn len(&self) -> usize {
        self.ranges
            .iter()
            .map(|&(low, high)| usize::from(high - low) + 1)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The `index`-th port in ascending order.
    pub fn nth(&self, mut index: usize) -> Option<u16> {
        for &(low, high) in &self.ranges {
            let size = usize::from(high - low) + 1;
            if index < size {
                return u16::try_from(usize::from(low) + index).ok();
            }
            index -= size;
        }
        None
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|&(low, high)| low..=high)
    }
}

impl fmt::Debug for PortRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|&(low, high)| {
                if low == high {
                    low.to_string()
                } else {
                    format!("{low}-{high}")
                }
            })
            .collect();
        write!(f, "[{}]", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pool_is_used_minus_excluded() {
        let used = PortRanges::parse(&["20000-30000"]).expect("used");
        let excluded = PortRanges::parse(&["1-1024"]).expect("excluded");
        let allowed = used.subtract(&excluded);
        assert_eq!(allowed.len(), 10001);
        assert_eq!(allowed.nth(0), Some(20000));
        assert_eq!(allowed.nth(10000), Some(30000));
        assert_eq!(allowed.nth(10001), None);
    }

    #[test]
    fn subtract_splits_and_trims() {
        let used = PortRanges::parse(&["100-200", "300", "65530-65535"]).expect("used");
        let excluded = PortRanges::parse(&["150-160", "200-300", "65535"]).expect("excluded");
        let allowed = used.subtract(&excluded);
        assert_eq!(format!("{allowed:?}"), "[100-149, 161-199, 65530-65534]");
        assert!(allowed.contains(161) && !allowed.contains(155) && !allowed.contains(300));
        assert_eq!(allowed.iter().count(), allowed.len());
    }

    #[test]
    fn merges_overlaps_and_rejects_nonsense() {
        let ranges = PortRanges::parse(&["10-20", "15-30", "31"]).expect("parse");
        assert_eq!(format!("{ranges:?}"), "[10-31]");
        assert!(PortRanges::parse(&["0"]).is_err());
        assert!(PortRanges::parse(&["30-20"]).is_err());
        assert!(PortRanges::parse(&["abc"]).is_err());
        assert!(PortRanges::parse(&["70000"]).is_err());
        assert!(PortRanges::parse::<&str>(&[]).expect("empty").is_empty());
    }
}
