//! The attributes file (`[client] attributes_file_path`): tags and labels kept beside the
//! config, in RPort's JSON form `{"tags": ["..."], "labels": {"key": "value"}}`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

/// A larger file is refused: it is read again at every facts refresh.
const MAX_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Attributes {
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// Parses the file's text; the reason says what is wrong, never more of the text.
pub fn parse(text: &str) -> Result<Attributes, String> {
    serde_json::from_str(text)
        .map_err(|err| format!("not JSON like {{\"tags\": [...], \"labels\": {{...}}}}: {err}"))
}

/// Reads and parses the file at `path`.
pub fn read(path: &Path) -> Result<Attributes, String> {
    let file = std::fs::File::open(path).map_err(|err| format!("cannot open it: {err}"))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|err| format!("cannot read it: {err}"))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rports_attributes_file_parses() {
        let text =
            r#"{"tags": ["task-vm", "vm"], "labels": {"country": "Germany", "city": "Cologne"}}"#;
        let attributes = parse(text).expect("valid");
        assert_eq!(attributes.tags, vec!["task-vm", "vm"]);
        assert_eq!(
            attributes.labels.get("city").map(String::as_str),
            Some("Cologne")
        );
        assert_eq!(parse("{}").expect("empty is fine"), Attributes::default());
        assert!(parse("tags = [1]").is_err());
        assert!(parse(r#"{"labels": {"n": 1}}"#).is_err());
    }

    #[test]
    fn reads_from_disk_within_a_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("attributes.json");
        std::fs::write(&path, r#"{"tags":["a"]}"#).expect("write");
        assert_eq!(read(&path).expect("reads").tags, vec!["a"]);
        std::fs::write(&path, " ".repeat(MAX_FILE_BYTES as usize + 1)).expect("write");
        assert!(read(&path).expect_err("too big").contains("larger"));
        assert!(read(&dir.path().join("missing")).is_err());
    }
}
