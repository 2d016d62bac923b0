//! `cargo xtask check-layout`: the shape of the source tree that docs/ARCHITECTURE.md promises.
//!
//! - No import cycle between the modules of any crate: a module's edges are the `crate::…` and `super::…` paths
//!   and the `use child::…` of its submodules in its non-test code (outside `#[cfg(test)]` items),
//!   each resolved to the longest module prefix. A cycle is reported with one file and line per edge.
//! - No non-test source file over [`MAX_FILE_LINES`] lines.
//! - No function over [`MAX_FN_LINES`] lines in the crates of [`FN_LIMIT_CRATES`].
//!
//! It reads rustfmt-formatted source as text (a function ends at the first line that is its indentation and
//! `}`), so it needs no compiler plugin and runs in a second.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Lines a non-test source file may have (house style: "a file over about 600 lines usually holds two ideas").
pub const MAX_FILE_LINES: usize = 600;
/// Lines a function may have in [`FN_LIMIT_CRATES`].
pub const MAX_FN_LINES: usize = 120;
/// The crates whose functions are held to [`MAX_FN_LINES`].
pub const FN_LIMIT_CRATES: [&str; 2] = ["crates/pipeline", "xtask"];

/// One source file of a crate, as module path and text.
#[derive(Debug)]
pub struct SourceFile {
    /// The file, relative to the workspace root.
    pub path: PathBuf,
    /// Its module path inside the crate: `""` for lib.rs/main.rs, `a::b` for `a/b.rs` or `a/b/mod.rs`.
    pub module: String,
    /// The code outside `#[cfg(test)]` items.
    pub code: String,
}

/// An import edge from one module to another, with where it was seen.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The importing module.
    pub from: String,
    /// The imported module.
    pub to: String,
    /// File and line of the first reference.
    pub at: String,
}

/// Every check over the workspace at `root`; fails naming each violation.
pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let mut crates = 0;
    for src in crate_sources(root)? {
        crates += 1;
        let files = read_crate(root, &src)?;
        for cycle in cycles(&edges(&files)) {
            let mut s = String::from("import cycle:");
            for e in cycle {
                s += &format!("\n    {} -> {} ({})", show(&e.from), show(&e.to), e.at);
            }
            problems.push(s);
        }
        for f in &files {
            let lines = f.code.lines().count();
            if lines > MAX_FILE_LINES {
                problems.push(format!(
                    "{}: {lines} lines of non-test code (at most {MAX_FILE_LINES}); split it by idea",
                    f.path.display()
                ));
            }
            let rel = src.strip_prefix(root).unwrap_or(&src);
            if FN_LIMIT_CRATES.iter().any(|c| rel.starts_with(c)) {
                for (name, line, len) in long_functions(&f.code, MAX_FN_LINES) {
                    problems.push(format!(
                        "{}:{line}: fn {name} has {len} lines (at most {MAX_FN_LINES})",
                        f.path.display()
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} layout problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    eprintln!(
        "check-layout: {crates} crates, no import cycle, no file over {MAX_FILE_LINES} lines, no function over \
         {MAX_FN_LINES} lines in {}",
        FN_LIMIT_CRATES.join(", ")
    );
    Ok(())
}

fn show(module: &str) -> &str {
    if module.is_empty() {
        "crate"
    } else {
        module
    }
}

/// The `src` directories of the workspace's crates.
fn crate_sources(root: &Path) -> Result<Vec<PathBuf>> {
    // `benches/` holds its library (lib.rs and the modules it declares) beside criterion's bench targets.
    let mut out = vec![root.join("xtask/src"), root.join("benches")];
    let crates = root.join("crates");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&crates)
        .with_context(|| format!("reading {}", crates.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("src")))
        .filter(|p| p.is_dir())
        .collect();
    names.sort();
    out.extend(names);
    Ok(out)
}

/// The source files under `src` (excluding `src/bin`), with their module paths and non-test code. A directory
/// without `src/` (benches) gives its `lib.rs` and the files it declares as modules.
fn read_crate(root: &Path, src: &Path) -> Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    if !src.ends_with("src") {
        let lib = std::fs::read_to_string(src.join("lib.rs"))
            .with_context(|| format!("reading {}", src.join("lib.rs").display()))?;
        let mut names = vec!["lib".to_string()];
        names.extend(lib.lines().filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.strip_suffix(';')?.to_string())
        }));
        for name in names {
            let path = src.join(format!("{name}.rs"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            files.push(SourceFile {
                path: path.strip_prefix(root).unwrap_or(&path).to_path_buf(),
                module: module_path(Path::new(&format!("{name}.rs"))),
                code: non_test_code(&text),
            });
        }
        return Ok(files);
    }
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                if path != src.join("bin") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let rel = path.strip_prefix(src).expect("walked from src");
            files.push(SourceFile {
                path: path.strip_prefix(root).unwrap_or(&path).to_path_buf(),
                module: module_path(rel),
                code: non_test_code(&text),
            });
        }
    }
    files.sort_by(|a, b| a.module.cmp(&b.module));
    Ok(files)
}

/// `a/b.rs` and `a/b/mod.rs` → `a::b`; `lib.rs`, `main.rs` → `""`.
fn module_path(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The code outside `#[cfg(test)]` items (a test module or a test-only function is skipped to its closing
/// brace), with `//` comments removed (doc links are not imports).
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_until: Option<String> = None;
    let mut skip_next_item = false;
    for line in text.lines() {
        if let Some(close) = &skip_until {
            if line.trim_end() == close {
                skip_until = None;
            }
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            skip_next_item = true;
            continue;
        }
        if skip_next_item {
            if trimmed.starts_with("#[") {
                continue;
            }
            skip_next_item = false;
            let t = line.trim_end();
            if t.ends_with('{') {
                skip_until = Some(format!("{}}}", &line[..line.len() - trimmed.len()]));
            }
            continue;
        }
        let code = match line.find("//") {
            // A `//` inside a string literal ("https://…") is rare in paths; keep lines with quotes whole.
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every import edge between distinct modules of one crate.
pub fn edges(files: &[SourceFile]) -> Vec<Edge> {
    let modules: BTreeSet<&str> = files.iter().map(|f| f.module.as_str()).collect();
    let mut out: BTreeMap<(String, String), String> = BTreeMap::new();
    for f in files {
        let children: Vec<&str> = modules
            .iter()
            .filter_map(|m| child_name(&f.module, m))
            .collect();
        // Inline `mod x { … }` blocks: `super::` inside one names the file's own module.
        let mut inline: Vec<String> = Vec::new();
        for (i, line) in f.code.lines().enumerate() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            if inline.last().is_some_and(|close| line.trim_end() == close) {
                inline.pop();
            }
            let opens_inline = (trimmed.starts_with("mod ") || trimmed.starts_with("pub mod "))
                && trimmed.trim_end().ends_with('{');
            if opens_inline {
                inline.push(format!("{indent}}}"));
                continue;
            }
            let super_of = if inline.is_empty() {
                let mut segs = split_module(&f.module);
                segs.pop();
                segs
            } else {
                split_module(&f.module)
            };
            for path in paths_in(line, &f.module, &super_of, &children) {
                let Some(to) = resolve(&path, &modules) else {
                    continue;
                };
                if to != f.module {
                    out.entry((f.module.clone(), to))
                        .or_insert_with(|| format!("{}:{}", f.path.display(), i + 1));
                }
            }
        }
    }
    out.into_iter()
        .map(|((from, to), at)| Edge { from, to, at })
        .collect()
}

/// `m` is a direct child of `parent`: its last segment.
fn child_name<'a>(parent: &str, m: &'a str) -> Option<&'a str> {
    let rest = if parent.is_empty() {
        m
    } else {
        m.strip_prefix(parent)?.strip_prefix("::")?
    };
    (!rest.is_empty() && !rest.contains("::")).then_some(rest)
}

/// The absolute module paths (segments) named on one line: `crate::a::b`, `super::x`, `child::y`, and the
/// items of `crate::{a::X, b}` groups.
fn paths_in(line: &str, module: &str, super_of: &[String], children: &[&str]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        let word = &line[start..i];
        if !line[i..].starts_with("::") {
            continue;
        }
        let base: Option<Vec<String>> = match word {
            "crate" => Some(Vec::new()),
            "super" => Some(super_of.to_vec()),
            w if children.contains(&w) => {
                let mut segs = split_module(module);
                segs.push(w.to_string());
                Some(segs)
            }
            _ => None,
        };
        let Some(base) = base else { continue };
        let rest = &line[i + 2..];
        if let Some(group) = rest.strip_prefix('{') {
            for item in top_level_items(group) {
                let mut p = base.clone();
                p.extend(segments(item));
                out.push(p);
            }
        } else if !is_macro_call(rest) {
            let mut p = base;
            p.extend(segments(rest));
            out.push(p);
        }
    }
    out
}

fn split_module(module: &str) -> Vec<String> {
    if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_string).collect()
    }
}

/// `a::b!` (a macro exported at the crate root names no module it depends on).
fn is_macro_call(text: &str) -> bool {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    text[end..].starts_with('!')
}

/// The leading `a::b::C` of `text`, as segments.
fn segments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    loop {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        out.push(rest[..end].to_string());
        match rest[end..].strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    out
}

/// The comma-separated items of a `{…}` group (up to its closing brace), nested groups kept whole.
fn top_level_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// The longest prefix of `path` that is a module of the crate.
fn resolve(path: &[String], modules: &BTreeSet<&str>) -> Option<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m.as_str()))
}

/// The edges of each import cycle (strongly connected component of more than one module), one cycle each.
pub fn cycles(edges: &[Edge]) -> Vec<Vec<Edge>> {
    let mut graph: BTreeMap<&str, Vec<&Edge>> = BTreeMap::new();
    for e in edges {
        graph.entry(&e.from).or_default().push(e);
        graph.entry(&e.to).or_default();
    }
    let mut out = Vec::new();
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for &start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        if let Some(cycle) = path_back(&graph, start) {
            reported.extend(cycle.iter().map(|e| e.from.as_str()));
            out.push(cycle.into_iter().cloned().collect());
        }
    }
    out
}

/// A shortest cycle through `start`, by breadth-first search.
fn path_back<'a>(
    graph: &BTreeMap<&'a str, Vec<&'a Edge>>,
    start: &'a str,
) -> Option<Vec<&'a Edge>> {
    let mut came: BTreeMap<&str, &Edge> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &e in &graph[node] {
            if e.to == start {
                let mut cycle = vec![e];
                let mut at = node;
                while at != start {
                    let back = came[at];
                    cycle.push(back);
                    at = &back.from;
                }
                cycle.reverse();
                return Some(cycle);
            }
            if !came.contains_key(e.to.as_str()) {
                came.insert(&e.to, e);
                queue.push_back(&e.to);
            }
        }
    }
    None
}

/// `(name, first line, lines)` of each function longer than `limit`, in rustfmt-formatted code.
pub fn long_functions(code: &str, limit: usize) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(name) = fn_name(trimmed) else {
            continue;
        };
        let indent = &line[..line.len() - trimmed.len()];
        // The signature ends at the first line ending in `{` (a body) or `;` (a declaration).
        let Some(open) = (i..lines.len()).find(|&j| {
            let t = lines[j].trim_end();
            t.ends_with('{') || t.ends_with(';') || (t.ends_with('}') && t.contains('{'))
        }) else {
            continue;
        };
        if !lines[open].trim_end().ends_with('{') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = (open + 1..lines.len()).find(|&j| lines[j].trim_end() == close) {
            let len = end - i + 1;
            if len > limit {
                out.push((name, i + 1, len));
            }
        }
    }
    out
}

/// The name of the function a line declares, if it does.
fn fn_name(trimmed: &str) -> Option<String> {
    let mut rest = trimmed;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(module: &str, code: &str) -> SourceFile {
        SourceFile {
            path: PathBuf::from(format!("{}.rs", module.replace("::", "/"))),
            module: module.into(),
            code: non_test_code(code),
        }
    }

    #[test]
    fn a_cycle_through_a_use_group_and_a_super_path_is_found() {
        let files = [
            file("", "mod a;\nmod b;\npub use a::Thing;\n"),
            file("a", "use crate::{b::Other, c::Deep};\n"),
            file("b", "fn f() { super::a::helper(); }\n"),
            file("c", "// crate::a::Thing in a comment is no import\n"),
            file(
                "d",
                "mod inner {\n    use super::helper;\n}\ncrate::a_macro! {}\n",
            ),
        ];
        let edges = edges(&files);
        let pairs: Vec<(&str, &str)> = edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str()))
            .collect();
        assert_eq!(pairs, vec![("", "a"), ("a", "b"), ("a", "c"), ("b", "a")]);
        let found = cycles(&edges);
        assert_eq!(found.len(), 1, "{found:?}");
        let names: Vec<(&str, &str)> = found[0]
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str()))
            .collect();
        assert_eq!(names, vec![("a", "b"), ("b", "a")]);
        assert_eq!(found[0][0].at, "a.rs:1");
    }

    #[test]
    fn a_layered_tree_and_test_code_make_no_cycle() {
        let files = [
            file("room", "mod low;\nmod high;\npub use high::entry;\n"),
            file("room::high", "use super::low::X;\n"),
            file(
                "room::low",
                "pub struct X;\n#[cfg(test)]\nmod tests {\n    use crate::room::high::entry;\n}\n\
                 #[cfg(test)]\nfn helper() {\n    crate::room::high::entry();\n}\npub struct Y;\n",
            ),
        ];
        assert!(cycles(&edges(&files)).is_empty());
    }

    #[test]
    fn long_functions_are_measured_from_signature_to_closing_brace() {
        let mut code = String::from("pub fn short() -> u32 { 1 }\nfn declared(x: u32);\n");
        code += "impl T {\n    pub fn long(\n        a: u32,\n    ) -> u32 {\n";
        for _ in 0..5 {
            code += "        let b = {\n            a\n        };\n";
        }
        code += "        a\n    }\n}\n";
        assert_eq!(long_functions(&code, 10), vec![("long".to_string(), 4, 20)]);
        assert!(long_functions(&code, 20).is_empty());
    }

    #[test]
    fn module_paths_follow_the_file_tree() {
        assert_eq!(module_path(Path::new("lib.rs")), "");
        assert_eq!(module_path(Path::new("distill/mod.rs")), "distill");
        assert_eq!(module_path(Path::new("distill/run.rs")), "distill::run");
    }
}
