//! The product crate's modules import downwards only: no import circles. A circle is where the
//! shape starts to rot (the context needing the process's options, the metrics needing the
//! reconciler); this test names the modules of any circle and the imports that close it.
//! Paths are read from `use` lines and `crate::`/`super::` paths in the code (tests excluded).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/operator/src");

/// Module path (`reconciler::context`) → source without its `#[cfg(test)] mod tests`.
fn modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![Path::new(ROOT).to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let Some(rel) = path
                .strip_prefix(ROOT)
                .ok()
                .and_then(|r| r.to_str())
                .and_then(|r| r.strip_suffix(".rs"))
            else {
                continue;
            };
            let mut parts: Vec<&str> = rel.split('/').collect();
            if parts.last() == Some(&"mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            let name = parts.join("::");
            // Test-only modules may import anything.
            if name.ends_with("_tests") || name.ends_with("_props") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or_default()
                .to_string();
            out.insert(name, code);
        }
    }
    out
}

/// The module a `crate::…`/`super::…` path names (its longest prefix that is a module).
fn target(modules: &BTreeMap<String, String>, from: &str, path: &str) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = match segments.first() {
        Some(&"crate") => vec![],
        Some(&"super") => {
            let mut base: Vec<&str> = from.split("::").collect();
            base.pop();
            base
        }
        _ => return None,
    };
    segments.remove(0);
    while segments.first() == Some(&"super") {
        base.pop();
        segments.remove(0);
    }
    (0..=segments.len()).rev().find_map(|n| {
        let candidate = base
            .iter()
            .chain(&segments[..n])
            .copied()
            .collect::<Vec<_>>()
            .join("::");
        modules.contains_key(&candidate).then_some(candidate)
    })
}

fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges = BTreeMap::new();
    for (name, code) in modules {
        let mut to = BTreeSet::new();
        for start in code
            .match_indices("crate::")
            .chain(code.match_indices("super::"))
        {
            let rest = &code[start.0..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches(':');
            if let Some(t) = target(modules, name, path)
                && t != *name
                && !name.starts_with(&format!("{t}::"))
            {
                to.insert(t);
            }
        }
        edges.insert(name.clone(), to);
    }
    edges
}

/// The modules that reach `start` again through their imports.
fn circle_through(edges: &BTreeMap<String, BTreeSet<String>>, start: &str) -> BTreeSet<String> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let mut circle: BTreeSet<String> = reach(start)
        .into_iter()
        .filter(|m| reach(m).contains(start))
        .collect();
    if !circle.is_empty() {
        circle.insert(start.to_string());
    }
    circle
}

#[test]
fn the_product_crate_has_no_import_circles() {
    let modules = modules();
    assert!(
        modules.contains_key("reconciler::context"),
        "{:?}",
        modules.keys()
    );
    let edges = imports(&modules);
    let mut circles = BTreeSet::new();
    for name in modules.keys() {
        let circle = circle_through(&edges, name);
        if !circle.is_empty() {
            circles.insert(circle.into_iter().collect::<Vec<_>>());
        }
    }
    let described: Vec<String> = circles
        .iter()
        .map(|circle| {
            let closing: Vec<String> = circle
                .iter()
                .flat_map(|m| {
                    edges[m]
                        .iter()
                        .filter(|t| circle.contains(t))
                        .map(move |t| format!("{m} -> {t}"))
                })
                .collect();
            format!("{circle:?}: {}", closing.join(", "))
        })
        .collect();
    assert!(
        described.is_empty(),
        "import circles:\n{}",
        described.join("\n")
    );
}

/// The metrics count words they are given; what a status write or an answer means is the
/// reconciler's (`reconciler/metric_readings.rs`).
#[test]
fn the_metrics_import_nothing_from_the_reconciler() {
    let edges = imports(&modules());
    let up: Vec<_> = edges["metrics"]
        .iter()
        .filter(|m| m.starts_with("reconciler"))
        .collect();
    assert!(up.is_empty(), "metrics.rs imports {up:?}");
}

#[test]
fn a_circle_is_found() {
    let modules: BTreeMap<String, String> = [
        ("a".to_string(), "use crate::b::X;".to_string()),
        ("b".to_string(), "fn f() { super::a::g() }".to_string()),
        ("c".to_string(), "use crate::a;".to_string()),
    ]
    .into();
    let edges = imports(&modules);
    assert_eq!(
        circle_through(&edges, "a"),
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
    assert!(circle_through(&edges, "c").is_empty());
}
