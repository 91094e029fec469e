//! Imports point one way (connection → cmd → session → proto): no module
//! of imap-frontend's `src/` uses one that uses it back, directly or round
//! a longer loop. Read from the source text: every `crate::`, `super::`,
//! `self::` path and every path through a child module, resolved to the
//! file of the deepest module it names (a child that uses its parent
//! counts as much as any other use).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`cmd::fetch`; "" for the crate root) → file.
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(name);
            modules(&path, &p, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut p = prefix.to_vec();
            match name.as_str() {
                "mod" | "lib" => {}
                "main" if prefix.is_empty() => continue,
                _ => p.push(name),
            }
            out.insert(p.join("::"), path);
        }
    }
}

/// The paths `a::b::c` written in `text` (comments and tests left out).
fn paths(text: &str) -> Vec<Vec<String>> {
    let code = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut current: Vec<String> = Vec::new();
        let mut word = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_alphanumeric() || c == '_' {
                word.push(c);
                continue;
            }
            if c == ':' && chars.peek() == Some(&':') {
                chars.next();
                if !word.is_empty() {
                    current.push(std::mem::take(&mut word));
                }
                continue;
            }
            if !word.is_empty() {
                current.push(std::mem::take(&mut word));
            }
            if current.len() > 1 {
                out.push(std::mem::take(&mut current));
            }
            current.clear();
        }
        if !word.is_empty() {
            current.push(word);
        }
        if current.len() > 1 {
            out.push(current);
        }
    }
    out
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut mods = BTreeMap::new();
    modules(&src, &[], &mut mods);
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (module, file) in &mods {
        let here: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
        let text = std::fs::read_to_string(file).unwrap();
        for path in paths(&text) {
            let (mut base, rest): (Vec<&str>, &[String]) = match path[0].as_str() {
                "crate" => (Vec::new(), &path[1..]),
                "self" => (here.clone(), &path[1..]),
                "super" => (here[..here.len().saturating_sub(1)].to_vec(), &path[1..]),
                // A child module of this one, named without `self::`.
                _ => (here.clone(), &path[..]),
            };
            let from_crate = path[0] == "crate";
            let mut target = None;
            if from_crate || matches!(path[0].as_str(), "self" | "super") {
                target = mods
                    .get_key_value(&base.join("::"))
                    .map(|(k, _)| k.as_str());
            }
            for part in rest {
                base.push(part);
                if let Some((k, _)) = mods.get_key_value(&base.join("::")) {
                    target = Some(k.as_str());
                }
            }
            if let Some(t) = target
                && t != module
            {
                edges.entry(module.as_str()).or_default().insert(t);
            }
        }
    }
    // Every loop: a module that can reach itself again.
    let mut loops = Vec::new();
    for start in edges.keys() {
        let mut stack = vec![(*start, vec![*start])];
        let mut seen = BTreeSet::new();
        while let Some((m, trail)) = stack.pop() {
            for &next in edges.get(m).into_iter().flatten() {
                if next == *start {
                    loops.push(trail.join(" -> ") + " -> " + start);
                } else if seen.insert(next) {
                    let mut t = trail.clone();
                    t.push(next);
                    stack.push((next, t));
                }
            }
        }
    }
    assert!(
        loops.is_empty(),
        "import loops (\"\" is lib.rs):\n{}",
        loops.join("\n")
    );
    // The reading found the layers (so an empty result means something).
    assert!(edges["connection"].contains("cmd"), "{edges:?}");
    assert!(edges["cmd::fetch"].contains("session"), "{edges:?}");
}
