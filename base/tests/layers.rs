//! The workspace's layering, checked over the source text: within each
//! crate the top-level modules reference each other without a circle
//! (`crate::a` in module `b` is an edge b -> a), and each crate depends
//! only on crates in lower layers. `docs/design.md` draws the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Crates by layer, lowest first; a crate may depend on lower layers only.
const LAYERS: &[&[&str]] = &[
    // testnet depends on no Hydra crate; replica's tests use it.
    &["base", "ops", "testnet"],
    &["stack", "ackchannel"],
    &["redirector", "replica"],
    &["hydra-tokio", "sim"],
    &["examples/kv", "examples/axum", "scenarios"],
    &["bench"],
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("base/ is inside the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`None` for the crate root
/// and binaries' entry points).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    match name {
        "lib" | "main" | "bin" => None,
        _ => Some(name.to_string()),
    }
}

/// Every `crate::name` a file mentions outside comments.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `hydra_crate::`
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        // `use crate::{a, b::c}` names several modules at once.
        if let Some(at) = code.find("use crate::{") {
            let list = &code[at + "use crate::{".len()..];
            for part in list.split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

/// A cycle in `edges`, if there is one (depth-first search).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn crate_dirs() -> Vec<&'static str> {
    LAYERS.iter().flat_map(|l| l.iter().copied()).collect()
}

#[test]
fn no_crate_has_a_circle_among_its_top_level_modules() {
    let root = workspace();
    let mut checked = 0;
    for dir in crate_dirs() {
        let src = root.join(dir).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let Some(from) = top_module(&src, file) else {
                continue;
            };
            let text = fs::read_to_string(file).expect("readable source");
            let refs = crate_references(&text);
            let entry = edges.entry(from.clone()).or_default();
            entry.extend(refs.into_iter().filter(|to| *to != from));
        }
        checked += files.len();
        if let Some(cycle) = find_cycle(&edges) {
            panic!("{dir}: module circle {}", cycle.join(" -> "));
        }
    }
    assert!(
        checked > 50,
        "only {checked} source files found: wrong root?"
    );
}

#[test]
fn the_circle_check_finds_a_circle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges
        .entry("tcp".into())
        .or_default()
        .insert("iface".into());
    edges
        .entry("iface".into())
        .or_default()
        .insert("wire".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("wire".into()).or_default().insert("tcp".into());
    assert!(find_cycle(&edges).is_some());
    let refs = crate_references("use crate::{iface::Stack, wire};\nlet x = crate::tcp::State;");
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["iface", "tcp", "wire"]
    );
}

/// The workspace-local crates a manifest depends on (any section), by the
/// directory their `path` names.
fn path_dependencies(manifest: &str, dir: &Path) -> Vec<PathBuf> {
    manifest
        .lines()
        .filter_map(|l| {
            let at = l.find("path = \"")?;
            let rest = &l[at + 8..];
            let end = rest.find('"')?;
            let target = dir.join(&rest[..end]);
            Some(target.canonicalize().unwrap_or(target))
        })
        .collect()
}

#[test]
fn every_crate_depends_only_on_lower_layers() {
    let root = workspace().canonicalize().expect("workspace root");
    let layer_of: BTreeMap<PathBuf, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |d| (i, *d)))
        .filter_map(|(i, d)| Some((root.join(d).canonicalize().ok()?, i)))
        .collect();
    assert!(
        layer_of.len() >= 10,
        "crates missing from LAYERS: {layer_of:?}"
    );
    for (dir, &layer) in &layer_of {
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
        for dep in path_dependencies(&manifest, dir) {
            let Some(&dep_layer) = layer_of.get(&dep) else {
                // A path that is not a crate of the workspace (e.g. a [[bin]]'s source).
                continue;
            };
            assert!(
                dep_layer < layer,
                "{} (layer {layer}) depends on {} (layer {dep_layer}): only lower layers",
                dir.display(),
                dep.display()
            );
        }
    }
}
