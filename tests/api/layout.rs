//! The architecture, checked: every `crate::`, `super::` and child-module path in `src/` is
//! resolved to the module (file) it names, and
//! - layers use only the layers below them (http → pipeline → kinesis/spool → domain; `config`
//!   and `telemetry` use nothing above `domain`);
//! - no two files depend on each other, directly or in a circle;
//! - no file in `src/` is longer than `MAX_LINES` unless it is listed in `LONG_FILES` (which the
//!   architecture section of docs/how-it-works.md explains).
//!
//! Test code (`tests.rs`, `proptests.rs`, inline `#[cfg(test)] mod tests`) is left out: a test
//! module looks at its parent by nature.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

/// Files allowed past `MAX_LINES`, with the reason (repeated in docs/how-it-works.md).
const LONG_FILES: &[(&str, &str)] = &[(
    "src/pipeline/tests.rs",
    "unit tests of the aggregator against a fake Kinesis: one scenario per case, kept together",
)];

/// Which top-level modules each top-level module may use. `startup` composes everything.
fn allowed(layer: &str) -> &'static [&'static str] {
    match layer {
        "http" => &[
            "pipeline",
            "kinesis",
            "spool",
            "domain",
            "config",
            "telemetry",
        ],
        "pipeline" => &["kinesis", "spool", "domain", "config", "telemetry"],
        "spool" => &["domain", "config", "telemetry"],
        "kinesis" => &["domain", "config", "telemetry"],
        "config" => &["domain"],
        "domain" | "telemetry" => &[],
        _ => &[
            "http",
            "pipeline",
            "kinesis",
            "spool",
            "domain",
            "config",
            "telemetry",
            "startup",
        ],
    }
}

type Module = Vec<String>;

struct SourceFile {
    path: PathBuf,
    module: Module,
    text: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/http/mod.rs` → `[http]`, `src/http/events.rs` → `[http, events]`, `src/lib.rs` → `[]`.
fn module_of(path: &Path) -> Module {
    let relative = path.strip_prefix(src_dir()).expect("under src/");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

fn is_test_file(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("tests.rs" | "proptests.rs")
    )
}

/// The source without comments and without the inline test module (always at the end).
fn code_of(text: &str) -> String {
    // `#[cfg(test)]` then `mod tests {`, whatever its visibility.
    let test_module = text.match_indices("#[cfg(test)]\n").find(|(at, marker)| {
        text[at + marker.len()..]
            .lines()
            .next()
            .is_some_and(|line| line.trim_end().ends_with("mod tests {"))
    });
    let text = match test_module {
        Some((at, _)) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn load() -> Vec<SourceFile> {
    let mut paths = Vec::new();
    rust_files(&src_dir(), &mut paths);
    paths
        .into_iter()
        .map(|path| SourceFile {
            module: module_of(&path),
            text: std::fs::read_to_string(&path).expect("readable source"),
            path,
        })
        .collect()
}

/// Every path a `use` tree names, expanded: `a::{b, c::{d}}` → `a::b`, `a::c::d`.
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        // `a::b as c` → `a::b`
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.to_owned()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .flat_map(expand_use_tree)
        .map(|sub| {
            if sub == "self" {
                prefix.to_owned()
            } else {
                format!("{prefix}::{sub}")
            }
        })
        .collect()
}

/// The paths a file names: its `use` trees and `crate::`/`super::` paths in the code.
fn paths_named(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = find_use(rest) {
        let after = &rest[at..];
        let end = after.find(';').unwrap_or(after.len());
        let statement = &after[..end];
        let tree = statement
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ")
            .trim_start_matches("use ");
        paths.extend(expand_use_tree(tree));
        rest = &after[end..];
    }
    for anchor in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(anchor) {
            let start = from + at;
            let preceded_by_ident = code[..start]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            let len = code[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(code.len() - start);
            let path = code[start..start + len].trim_end_matches(':');
            // `super::{a, b}` alone names nothing; its use tree is expanded above.
            if !preceded_by_ident && path.contains("::") {
                paths.push(path.to_owned());
            }
            from = start + len.max(1);
        }
    }
    paths
}

/// The byte offset of the next `use` statement at the start of a line.
fn find_use(code: &str) -> Option<usize> {
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .any(|p| trimmed.starts_with(p))
        {
            return Some(offset + indent);
        }
        offset += line.len();
    }
    None
}

/// The module a path names from inside `from`: the longest known module prefix, or `None` for
/// paths outside the crate.
fn resolve(path: &str, from: &Module, known: &BTreeSet<Module>) -> Option<Module> {
    let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Module = match segments.first() {
        Some(&"crate") => Vec::new(),
        Some(&"super") | Some(&"self") => from.clone(),
        Some(first) => {
            // A child module used by name (2018 paths), or an external crate.
            let mut child = from.clone();
            child.push((*first).to_owned());
            if !known.contains(&child) {
                return None;
            }
            from.clone()
        }
        None => return None,
    };
    let mut rest = segments.as_slice();
    if matches!(rest.first(), Some(&"crate") | Some(&"self")) {
        rest = &rest[1..];
    }
    while rest.first() == Some(&"super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut target = base.clone();
    let mut best = base;
    for segment in rest {
        target.push((*segment).to_owned());
        if known.contains(&target) {
            best = target.clone();
        } else {
            break;
        }
    }
    Some(best)
}

fn dependencies() -> BTreeMap<Module, BTreeSet<Module>> {
    let files: Vec<SourceFile> = load()
        .into_iter()
        .filter(|f| !is_test_file(&f.path) && !f.path.ends_with("main.rs"))
        .collect();
    let known: BTreeSet<Module> = files.iter().map(|f| f.module.clone()).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let code = code_of(&file.text);
        let targets: BTreeSet<Module> = paths_named(&code)
            .iter()
            .filter_map(|p| resolve(p, &file.module, &known))
            .filter(|m| m != &file.module)
            .collect();
        graph.insert(file.module.clone(), targets);
    }
    graph
}

fn show(module: &Module) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

#[test]
fn layers_use_only_the_layers_below_them() {
    let mut wrong = Vec::new();
    for (from, targets) in dependencies() {
        let layer = from.first().map_or("crate", String::as_str);
        for to in targets {
            let Some(to_layer) = to.first() else {
                continue; // the crate root: only `init_logging`, used by startup and main
            };
            if to_layer != layer && !allowed(layer).contains(&to_layer.as_str()) {
                wrong.push(format!("{} uses {}", show(&from), show(&to)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "layering broken (see the Architecture section of docs/how-it-works.md):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_file_depends_on_itself_through_others() {
    let graph = dependencies();
    // Depth-first search for a back edge, reporting the circle it closes.
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = stack.iter().position(|m| m == node) {
            let circle: Vec<String> = stack[at..].iter().chain([node]).map(show).collect();
            cycles.push(circle.join(" → "));
            return;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, cycles);
        }
        stack.pop();
        done.insert(node.clone());
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_sees_the_uses_it_must_judge() {
    // Guards the parser above: if it stopped finding paths, the two tests would pass vacuously.
    let graph = dependencies();
    let uses = |from: &[&str], to: &[&str]| {
        let from: Module = from.iter().map(|s| s.to_string()).collect();
        let to: Module = to.iter().map(|s| s.to_string()).collect();
        graph.get(&from).is_some_and(|t| t.contains(&to))
    };
    assert!(uses(&["http", "events"], &["pipeline"]), "{graph:?}");
    assert!(uses(&["pipeline", "call"], &["kinesis"]));
    assert!(uses(&["pipeline", "aggregator"], &["pipeline", "pending"]));
    assert!(uses(&["startup"], &["http"]));
    let known: BTreeSet<Module> = graph.keys().cloned().collect();
    let from: Module = vec!["pipeline".into(), "call".into()];
    assert_eq!(
        resolve("super::super::http::error::ApiError", &from, &known),
        Some(vec!["http".to_owned(), "error".to_owned()])
    );
    assert_eq!(
        expand_use_tree("a::{b, c::{d, e as f}, self}"),
        vec!["a::b", "a::c::d", "a::c::e", "a"]
    );
}

#[test]
fn source_files_stay_short() {
    let mut long = Vec::new();
    for file in load() {
        let lines = file.text.lines().count();
        let relative = file
            .path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .expect("in the repository")
            .to_string_lossy()
            .into_owned();
        if lines > MAX_LINES && !LONG_FILES.iter().any(|(path, _)| *path == relative) {
            long.push(format!("{relative}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "split these, or list them in LONG_FILES and the Architecture section of docs/how-it-works.md:\n{}",
        long.join("\n")
    );
}
