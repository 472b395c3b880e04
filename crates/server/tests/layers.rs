//! Keeps the server's architecture as ARCHITECTURE.md draws it: each domain folder uses only
//! the folders below it, and no two modules use each other, whatever their folders.
//!
//! It reads the `crate::` and `super::` paths in the sources (tests excluded), so it needs
//! no build of its own and names the file and the path that break the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: a layer may use the ones before it.
const LAYERS: &[&str] = &[
    "domain", "metrics", "net", "config", "auth", "cluster", "tunnels", "agents", "api", "app",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read the source dir");
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `api/v1/clients.rs` -> `["api", "v1", "clients"]`; `api/mod.rs` -> `["api"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// The paths a file names, outside its `#[cfg(test)]` part.
fn paths(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = Vec::new();
    for start in ["crate::", "super::"] {
        for (at, _) in code.match_indices(start) {
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            found.push(path.trim_end_matches(':').to_owned());
        }
    }
    found
}

/// The module a path leads to, among the known ones.
fn resolve(from: &[String], path: &str, modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut parts: Vec<&str> = path.split("::").collect();
    let mut base: Vec<String> = match parts.first() {
        Some(&"crate") => Vec::new(),
        Some(&"super") => from[..from.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    parts.remove(0);
    while parts.first() == Some(&"super") {
        base.pop();
        parts.remove(0);
    }
    (1..=parts.len()).rev().find_map(|n| {
        let mut candidate = base.clone();
        candidate.extend(parts[..n].iter().map(|p| p.to_string()));
        modules.contains(&candidate).then_some(candidate)
    })
}

#[test]
fn each_layer_uses_only_those_below_it_and_no_modules_use_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let texts: BTreeMap<Vec<String>, (PathBuf, String)> = files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            (module_of(&src, &file), (file, text))
        })
        .collect();
    let modules: BTreeSet<Vec<String>> = texts.keys().cloned().collect();

    let mut problems = Vec::new();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, (file, text)) in &texts {
        for path in paths(text) {
            let Some(target) = resolve(module, &path, &modules) else {
                continue;
            };
            // A module and its own parts belong together.
            if target.starts_with(module) || module.starts_with(&target) {
                continue;
            }
            edges
                .entry(module.clone())
                .or_default()
                .insert(target.clone());
            let rank = |m: &[String]| {
                m.first()
                    .and_then(|top| LAYERS.iter().position(|l| l == top))
            };
            if let (Some(from), Some(to)) = (rank(module), rank(&target))
                && to > from
            {
                problems.push(format!(
                    "{}: `{path}`: {} may not use {}, a layer above it",
                    file.display(),
                    LAYERS[from],
                    LAYERS[to]
                ));
            }
        }
    }
    for (module, targets) in &edges {
        for target in targets {
            // Does `target` lead back to `module`?
            let mut seen = BTreeSet::new();
            let mut stack = vec![target.clone()];
            while let Some(next) = stack.pop() {
                if &next == module {
                    problems.push(format!(
                        "{} and {} use each other",
                        module.join("::"),
                        target.join("::")
                    ));
                    break;
                }
                if seen.insert(next.clone()) {
                    stack.extend(edges.get(&next).into_iter().flatten().cloned());
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the architecture is broken:\n{}",
        problems.join("\n")
    );
}
