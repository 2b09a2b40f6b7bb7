//! The server's module drawing, read from its source: no module depends on itself through
//! others, and the two adapters over the application layer (the JSON routes and the pages)
//! never reach into each other. A change that breaks either fails here, naming the modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of the server by its path (`application::accounts`), with the modules it names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    collect(&root, &root, &mut sources);
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, source) in &sources {
        let mut uses = BTreeSet::new();
        for path in named_paths(module, source) {
            if let Some(target) = resolve(&modules, &path)
                && target != *module
                && !module.starts_with(&format!("{target}::"))
            {
                uses.insert(target);
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph.remove("lib");
    graph
}

fn collect(root: &Path, dir: &Path, sources: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, sources);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut name = relative.to_string_lossy().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_owned();
            }
            sources.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The `crate::…` and `super::…` paths a module's code names, unit tests and comments left out.
fn named_paths(module: &str, source: &str) -> Vec<String> {
    let code: String = source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let parent = module.rsplit_once("::").map_or("", |(parent, _)| parent);
    let mut paths = Vec::new();
    for (prefix, base) in [("crate::", String::new()), ("super::", parent.to_owned())] {
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c};`
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    paths.push(join(&base, &path_of(item.trim())));
                }
            } else {
                let path = path_of(rest);
                // `use crate::a::{b, c};`
                if let Some(group) = rest[path.len()..].strip_prefix("::{") {
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    for item in group.split(',') {
                        paths.push(join(&base, &format!("{path}::{}", path_of(item.trim()))));
                    }
                }
                paths.push(join(&base, &path));
            }
        }
    }
    paths
}

/// The leading `a::b::c` of `text`: lower-case segments, the names of modules.
fn path_of(text: &str) -> String {
    let mut path = String::new();
    for segment in text.split("::") {
        let name: String = segment
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        if !path.is_empty() {
            path.push_str("::");
        }
        path.push_str(&name);
        if name.len() != segment.len() {
            break;
        }
    }
    path
}

fn join(base: &str, path: &str) -> String {
    match (base.is_empty(), path == "self") {
        (_, true) => base.to_owned(),
        (true, false) => path.to_owned(),
        (false, false) => format!("{base}::{path}"),
    }
}

/// The module a path names: its longest prefix that is a module.
fn resolve(modules: &BTreeSet<String>, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|candidate| modules.contains(candidate))
}

/// The strongly connected groups of more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(walk: &mut Walk<'a>, node: &'a str) {
        let n = walk.index.len();
        walk.index.insert(node, n);
        walk.low.insert(node, n);
        walk.stack.push(node);
        for next in walk.graph.get(node).into_iter().flatten() {
            if !walk.index.contains_key(next.as_str()) {
                visit(walk, next);
                let low = walk.low[node].min(walk.low[next.as_str()]);
                walk.low.insert(node, low);
            } else if walk.stack.contains(&next.as_str()) {
                let low = walk.low[node].min(walk.index[next.as_str()]);
                walk.low.insert(node, low);
            }
        }
        if walk.low[node] == walk.index[node] {
            let mut group = Vec::new();
            while let Some(member) = walk.stack.pop() {
                group.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                walk.found.push(group);
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            visit(&mut walk, node);
        }
    }
    walk.found
}

#[test]
fn no_server_module_depends_on_itself_through_others() {
    let graph = module_graph();
    assert!(
        graph.contains_key("application::accounts"),
        "{:?}",
        graph.keys()
    );
    let groups = cycles(&graph);
    assert!(groups.is_empty(), "modules in a cycle: {groups:?}");
    // Top-level modules as wholes too: a cycle through files of two modules is one of theirs.
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let head = |module: &str| module.split("::").next().unwrap_or_default().to_owned();
    for (module, uses) in &graph {
        let entry = top.entry(head(module)).or_default();
        entry.extend(
            uses.iter()
                .map(|used| head(used))
                .filter(|used| *used != head(module)),
        );
    }
    let groups = cycles(&top);
    assert!(
        groups.is_empty(),
        "top-level modules in a cycle: {groups:?}"
    );
}

#[test]
fn the_routes_and_the_pages_never_import_each_other() {
    let crossing: Vec<String> = module_graph()
        .into_iter()
        .flat_map(|(module, uses)| uses.into_iter().map(move |used| (module.clone(), used)))
        .filter(|(module, used)| {
            (module.starts_with("routes") && used.starts_with("pages"))
                || (module.starts_with("pages") && used.starts_with("routes"))
        })
        .map(|(module, used)| format!("{module} -> {used}"))
        .collect();
    assert!(crossing.is_empty(), "{crossing:?}");
}

#[test]
fn the_application_layer_knows_no_http() {
    let adapters = [
        "routes", "pages", "router", "edge", "limits", "problem", "json", "views",
    ];
    let graph = module_graph();
    let mut reaching = Vec::new();
    for (module, uses) in &graph {
        if module == "error" || module.starts_with("application") {
            for used in uses {
                if adapters
                    .iter()
                    .any(|a| used == a || used.starts_with(&format!("{a}::")))
                {
                    reaching.push(format!("{module} -> {used}"));
                }
            }
        }
    }
    assert!(reaching.is_empty(), "{reaching:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    collect(&root, &root.join("application"), &mut sources);
    for (module, source) in sources {
        assert!(!source.contains("axum"), "application::{module} names axum");
    }
}

/// The HTTP adapters read and write through the application layer: no route or page touches
/// storage, page rendering included.
#[test]
fn the_routes_and_the_pages_go_through_the_application_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for adapter in ["routes", "pages"] {
        let mut sources = BTreeMap::new();
        collect(&root, &root.join(adapter), &mut sources);
        assert!(!sources.is_empty());
        for (module, source) in sources {
            assert!(
                !source.contains(".database") && !source.contains("mailroom_storage::Database"),
                "{adapter}::{module} reaches storage"
            );
        }
    }
}

/// The reader of the drawing sees what a cycle is: a negative control for the two tests above.
#[test]
fn the_drawing_finds_a_cycle_when_there_is_one() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(cycles(&graph), vec![vec!["a".to_owned(), "b".to_owned()]]);
    let modules = BTreeSet::from(["routes".to_owned(), "routes::auth".to_owned()]);
    let paths = named_paths("pages::account", "use crate::routes::{auth, me};\n");
    let resolved: BTreeSet<_> = paths.iter().filter_map(|p| resolve(&modules, p)).collect();
    assert!(resolved.contains("routes::auth"), "{paths:?}");
}
