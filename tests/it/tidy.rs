//! The architecture, checked (in the manner of rust-analyzer's tidy tests): the pure core stays
//! pure, and ARCHITECTURE.md's map names every file of `src/` and nothing that is not there.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The pure core: no I/O, no runtime, no database, no Lambda. Tested and benchmarked alone.
const PURE: &[&str] = &[
    "src/login.rs",
    "src/mask.rs",
    "src/batch.rs",
    "src/vault.rs",
    "src/metrics.rs",
    "src/record.rs",
];

/// What the pure core must not name: the async runtime, the database driver, the Lambda runtime,
/// and the modules that use them.
const IMPURE: &[&str] = &[
    "tokio",
    "tokio_postgres",
    "postgres_native_tls",
    "lambda_runtime",
    "crate::store",
    "crate::handler",
    "std::fs",
    "std::net::TcpStream",
];

/// The code of a file without its comments (a comment may well say "tokio").
fn code_of(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_pure_core_uses_no_runtime_database_or_lambda() {
    for file in PURE {
        let code = code_of(&Path::new(ROOT).join(file));
        for name in IMPURE {
            let used = code.match_indices(name).any(|(at, _)| {
                // A whole path segment: `tokio` but not `tokio_like`.
                let before = code[..at].chars().next_back();
                let after = code[at + name.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            assert!(
                !used,
                "{file} names {name}: the pure core must stay free of I/O"
            );
        }
    }
}

/// Every Rust file below `src/`, as a path from the repository's root.
fn source_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path.strip_prefix(ROOT).unwrap().to_path_buf());
        }
    }
}

#[test]
fn the_architecture_map_matches_the_tree() {
    let map = fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).unwrap();
    let mut files = Vec::new();
    source_files(&Path::new(ROOT).join("src"), &mut files);
    // A file is on the map by its path, or by its name in the row of its folder (`src/store/`
    // lists `connection.rs`, ...).
    let unmapped: Vec<String> = files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .filter(|file| {
            let name = Path::new(file).file_name().unwrap().to_string_lossy();
            let folder = format!("{}/", Path::new(file).parent().unwrap().display());
            let folder_row = map
                .lines()
                .find(|line| line.starts_with(&format!("| `{folder}`")));
            !map.contains(&format!("`{file}`"))
                && !folder_row.is_some_and(|row| row.contains(&format!("`{name}`")))
        })
        .collect();
    assert!(
        unmapped.is_empty(),
        "ARCHITECTURE.md does not name {unmapped:?}"
    );
    // And every path it names exists.
    let missing: Vec<&str> = map
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| quoted.starts_with("src/") || quoted.starts_with("tests/"))
        .filter(|path| !Path::new(ROOT).join(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what is not there: {missing:?}"
    );
}
