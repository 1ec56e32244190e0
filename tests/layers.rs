//! The library's modules are layers: each may import only the modules
//! declared before it in `src/lib.rs` (the order `docs/DESIGN.md` §6 draws).
//! This test reads every source file of every module and fails on a path
//! `crate::m` (code, doc links included) that reaches a module declared
//! after it, naming the file and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The top-level modules in their declared order.
fn layer_order(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').to_string())
        })
        .collect()
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .expect("read source dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Every `crate::name` in `text`, with its line number.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let preceded_by_ident = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !preceded_by_ident && !name.is_empty() {
                found.push((number + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = layer_order(&src);
    assert!(
        order.len() >= 10,
        "src/lib.rs declares too few modules: {order:?}"
    );
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut violations = Vec::new();
    for module in &order {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src.join(format!("{module}.rs")));
        }
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read source file");
            for (line, target) in crate_paths(&text) {
                let Some(&target_rank) = rank.get(target.as_str()) else {
                    continue; // a macro or item re-exported at the crate root
                };
                if target_rank > rank[module.as_str()] {
                    violations.push(format!(
                        "{}:{line}: `{module}` uses `crate::{target}`, a layer above it",
                        file.strip_prefix(&src).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "modules import layers above them (order in src/lib.rs):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scanner_finds_paths_and_skips_longer_names() {
    let text = "use crate::devices::X;\nlet a = my_crate::report;\n// [`crate::experiment`]\n";
    assert_eq!(
        crate_paths(text),
        vec![(1, "devices".to_string()), (3, "experiment".to_string())]
    );
}
