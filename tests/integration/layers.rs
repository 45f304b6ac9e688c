//! `src/lib.rs` says each layer depends only on those above it. This reads the sources and
//! holds the code to that: a `use crate::…` of a lower layer fails here, with the file named.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What each top-level module may use of the crate. Anything not listed is refused.
const ALLOWED: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("domain", &["error"]),
    ("config", &["domain", "error"]),
    ("telemetry", &["config"]),
    ("store", &["domain", "error"]),
    ("verify", &["domain", "error", "store"]),
    ("limits", &["domain", "error"]),
    ("usage", &["domain", "error", "store"]),
    ("webhooks", &["domain", "store"]),
    ("mail", &["domain"]),
    (
        "http",
        &[
            "domain",
            "error",
            "config",
            "telemetry",
            "store",
            "verify",
            "limits",
            "usage",
            "webhooks",
            "mail",
        ],
    ),
    (
        "cli",
        &[
            "domain",
            "error",
            "config",
            "telemetry",
            "store",
            "verify",
            "http",
            "mail",
        ],
    ),
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The crate modules a file names as `crate::x`, outside comments.
fn crate_uses(source: &str) -> BTreeSet<String> {
    let mut uses = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            uses.insert(name);
        }
    }
    uses
}

#[test]
fn every_module_uses_only_the_layers_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut refused = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|name| name.trim_end_matches(".rs"))
            .expect("a module name");
        if top == "lib" || top == "main" {
            continue;
        }
        let Some((_, allowed)) = ALLOWED.iter().find(|(module, _)| *module == top) else {
            refused.push(format!(
                "{}: `{top}` is not in this test's table",
                relative.display()
            ));
            continue;
        };
        let source = std::fs::read_to_string(file).expect("read a source file");
        for used in crate_uses(&source) {
            if used != top && !allowed.contains(&used.as_str()) {
                refused.push(format!("{} uses crate::{used}", relative.display()));
            }
        }
    }
    assert!(
        refused.is_empty(),
        "layering broken:\n{}",
        refused.join("\n")
    );
}

#[test]
fn the_check_sees_a_use_of_a_lower_layer() {
    let uses = crate_uses("use crate::http::AppState; // crate::cli in a comment\n");
    assert_eq!(uses, BTreeSet::from(["http".to_owned()]));
}

/// Ways to open a transaction other than `Store::begin`, which takes SQLite's write lock up
/// front so a transaction that reads before it writes waits for other writers instead of
/// failing.
const OTHER_BEGINS: &[&str] = &["pool.begin(", "pool().begin(", "begin_with(", "\"BEGIN"];

fn other_begins(source: &str) -> Vec<&'static str> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect();
    OTHER_BEGINS
        .iter()
        .copied()
        .filter(|pattern| code.contains(pattern))
        .collect()
}

#[test]
fn every_transaction_opens_through_the_store() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let one_way = src.join("store").join("mod.rs");
    let mut refused = Vec::new();
    for file in files.iter().filter(|file| **file != one_way) {
        let source = std::fs::read_to_string(file).expect("read a source file");
        for found in other_begins(&source) {
            refused.push(format!("{}: {found}", file.display()));
        }
    }
    assert!(
        refused.is_empty(),
        "transactions opened outside Store::begin:\n{}",
        refused.join("\n")
    );
}

#[test]
fn the_check_sees_a_transaction_opened_on_the_pool() {
    let found = other_begins("let tx = self.pool().begin().await?; // pool.begin( in a comment\n");
    assert_eq!(found, vec!["pool().begin("]);
}

/// The modules of `src/http/mod.rs` itself: what a module inside `http` may name as
/// `crate::http::…`. Anything else there is an item of that file, which no child imports.
const HTTP_ROOMS: &[&str] = &[
    "auth",
    "background",
    "outbox",
    "pipeline",
    "routes",
    "server",
    "state",
];

/// `crate::http::X` paths naming an item of `http/mod.rs`, and `super::X` paths naming an item
/// of the enclosing `mod.rs` rather than a sibling module (`siblings`), outside comments and
/// test modules.
fn parent_imports(source: &str, siblings: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    // A test module's `super` is the file itself.
    let before_tests = source.split("#[cfg(test)]").next().unwrap_or_default();
    for line in before_tests.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::http::") {
            let name: String = code[at + "crate::http::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !HTTP_ROOMS.contains(&name.as_str()) {
                found.push(format!("crate::http::{name}"));
            }
        }
        for (at, _) in code.match_indices("super::") {
            let name: String = code[at + "super::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '*')
                .collect();
            if name != "*" && !siblings.contains(&name) {
                found.push(format!("super::{name}"));
            }
        }
    }
    found
}

#[test]
fn no_module_in_http_imports_the_file_above_it() {
    let http = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join("http");
    let mut files = Vec::new();
    rust_files(&http, &mut files);
    let mut refused = Vec::new();
    for file in &files {
        if file.file_name().is_some_and(|name| name == "mod.rs") {
            continue;
        }
        let siblings: Vec<String> = std::fs::read_dir(file.parent().expect("a folder"))
            .expect("read the folder")
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if path.is_dir() {
                    Some(name)
                } else {
                    name.strip_suffix(".rs").map(str::to_owned)
                }
            })
            .collect();
        let source = std::fs::read_to_string(file).expect("read a source file");
        for found in parent_imports(&source, &siblings) {
            refused.push(format!("{}: {found}", file.display()));
        }
    }
    assert!(
        refused.is_empty(),
        "a module imports the file above it:\n{}",
        refused.join("\n")
    );
}

#[test]
fn the_check_sees_an_import_of_the_parent() {
    let siblings = vec!["workspaces".to_owned()];
    let found = parent_imports(
        "use crate::http::AppState;\nuse crate::http::state::AppState;\nuse super::workspaces::x;\nuse super::App;\nuse super::*;\n",
        &siblings,
    );
    assert_eq!(found, vec!["crate::http::AppState", "super::App"]);
}
