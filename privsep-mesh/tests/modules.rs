//! The crate's modules stay in layers: no import circle of more than three files.
//!
//! Reads `src/*.rs` (a directory module as one file), takes an edge A → B for every `crate::B` that A names outside
//! its unit tests (in `use` lines, paths and doc links alike), and finds the
//! strongly connected components (Tarjan). The largest is printed; more than three
//! files in one fails.

use std::collections::{BTreeMap, BTreeSet};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph() -> Graph {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    let without_tests = |text: String| match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_owned(),
        None => text,
    };
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            files.insert(name, without_tests(text));
        } else if p.join("mod.rs").exists() {
            // A directory module counts as one file: all of its files together.
            let mut text = String::new();
            for f in std::fs::read_dir(&p).unwrap() {
                text += &without_tests(std::fs::read_to_string(f.unwrap().path()).unwrap());
            }
            files.insert(name, text);
        }
    }
    let names: BTreeSet<String> = files.keys().cloned().collect();
    let mut g = Graph::new();
    for (name, text) in &files {
        let mut out = BTreeSet::new();
        // `crate::x` anywhere, and the first segment of each item of a
        // `use crate::{x::.., y, ..}` group.
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find("};").unwrap_or(group.len());
                for item in group[..end].split(',') {
                    out.insert(ident(item.trim_start()));
                }
            } else {
                out.insert(ident(rest));
            }
        }
        out.retain(|m| names.contains(m) && m != name);
        g.insert(name.clone(), out);
    }
    g
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect()
}

/// Tarjan's strongly connected components.
fn components(g: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        g: &'a Graph,
        next: usize,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        for w in &s.g[v] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let l = s.low[v].min(s.low[w]);
                s.low.insert(v, l);
            } else if s.on.contains(w) {
                let l = s.low[v].min(s.index[w]);
                s.low.insert(v, l);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            comp.sort();
            s.out.push(comp);
        }
    }
    let mut s = State {
        g,
        next: 0,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_import_circle_of_more_than_three_files() {
    let g = graph();
    let comps = components(&g);
    let largest = comps.iter().max_by_key(|c| c.len()).unwrap();
    println!(
        "{} files; largest import circle: {} {largest:?}",
        g.len(),
        largest.len()
    );
    assert!(largest.len() <= 3, "import circle {largest:?}");
}

/// The check itself can fail: a circle of four is found.
#[test]
fn a_circle_of_four_is_found() {
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("d", "e")] {
        g.entry(a.into()).or_default().insert(b.into());
        g.entry(b.into()).or_default();
    }
    let comps = components(&g);
    assert_eq!(comps.iter().map(Vec::len).max(), Some(4));
}
