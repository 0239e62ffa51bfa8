//! The architecture, checked (in the manner of rust-analyzer's tidy tests): the pure core stays
//! pure, and ARCHITECTURE.md's map names every file of `src/` and `crates/` and nothing that is
//! not there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The pure core: no I/O, no runtime, no database, no Lambda. Tested and benchmarked alone.
const CORE: &str = "login-etl-core";

/// What the pure core must not depend on, directly or not: the async runtime, the database
/// driver, TLS, the HTTP stack and the Lambda runtime.
const IMPURE: &[&str] = &[
    "tokio",
    "tokio-postgres",
    "postgres-protocol",
    "postgres-native-tls",
    "native-tls",
    "tokio-native-tls",
    "openssl",
    "openssl-sys",
    "lambda_runtime",
    "hyper",
    "hyper-util",
];

/// What no crate can keep the core from naming: the standard library's own I/O.
const STD_IO: &[&str] = &["std::fs", "std::net::TcpStream"];

#[test]
fn the_pure_core_depends_on_no_runtime_database_tls_or_lambda() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            CORE,
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}"])
        .current_dir(ROOT)
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {CORE}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    // Each line is `name vX.Y.Z[ (path)][ (*)]`.
    let names: Vec<&str> = tree.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(
        names.contains(&CORE),
        "cargo tree printed no {CORE}: {tree}"
    );
    let impure: Vec<&&str> = IMPURE.iter().filter(|c| names.contains(c)).collect();
    assert!(
        impure.is_empty(),
        "{CORE} depends on {impure:?}: the pure core must stay free of I/O (cargo tree -p {CORE} -i NAME says through what)"
    );
}

/// The code of a file without its comments (a comment may well say "std::fs").
fn code_of(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_pure_core_does_no_io_of_its_own() {
    let mut files = Vec::new();
    source_files(&Path::new(ROOT).join("crates/core/src"), &mut files);
    assert!(!files.is_empty());
    for file in &files {
        let code = code_of(&Path::new(ROOT).join(file));
        for name in STD_IO {
            let used = code.match_indices(name).any(|(at, _)| {
                // A whole path segment: `std::fs` but not `std::fs_like`.
                let after = code[at + name.len()..].chars().next();
                !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            assert!(
                !used,
                "{} names {name}: the pure core must stay free of I/O",
                file.display()
            );
        }
    }
}

/// Every Rust file below `dir`, as a path from the repository's root.
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
    source_files(&Path::new(ROOT).join("crates"), &mut files);
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
        .filter(|quoted| {
            ["src/", "crates/", "tests/"]
                .iter()
                .any(|top| quoted.starts_with(top))
        })
        .filter(|path| !Path::new(ROOT).join(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what is not there: {missing:?}"
    );
}
