//! The architecture and the docs, checked (in the manner of rust-analyzer's tidy tests): the pure
//! core stays pure; ARCHITECTURE.md's map names every file of `src/` and `crates/` and nothing
//! that is not there; the README's configuration table lists exactly the environment variables
//! the code reads; and the docs state template.yaml's defaults as the template has them.

use std::collections::BTreeSet;
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

// ---------------------------------------------------------------------------------------------
// The README's configuration table against the environment variables the code reads.

/// Read by the code but set by Lambda itself (or by its role), so the README's table need not
/// list them: the function never asks a user for these.
const SET_BY_LAMBDA: &[&str] = &[
    "AWS_REGION",               // the function's region (Secrets Manager, RDS auth tokens)
    "AWS_ACCESS_KEY_ID",        // the role's credentials
    "AWS_SECRET_ACCESS_KEY",    //
    "AWS_SESSION_TOKEN",        //
    "AWS_LAMBDA_FUNCTION_NAME", // the EMF metrics' FunctionName dimension
    "AWS_LAMBDA_RUNTIME_API",   // the Runtime API's address: init errors, the shutdown extension
];

/// Literals shaped like a variable name that are not one (none today). Add one here, with why,
/// only if the test names a literal that the code does not read from the environment.
const NOT_VARIABLES: &[&str] = &[];

/// A string literal as written in a Rust file, and whether it sits in test-only code.
struct Literal {
    text: String,
    in_test: bool,
}

/// The string literals of a Rust file, outside comments. A literal is in test-only code when it
/// lies inside the item that follows a `#[cfg(test)]` (found by matching braces in the code with
/// literals and comments taken out, so a brace in a string does not count).
fn string_literals(source: &str) -> Vec<Literal> {
    let bytes = source.as_bytes();
    // The code with every literal and comment blanked, and each literal's text and start.
    let mut code = String::with_capacity(source.len());
    let mut literals: Vec<(usize, String)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &source[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(source.len(), |n| i + n);
            code.push_str(&" ".repeat(end - i));
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(source.len(), |n| i + n + 2);
            code.push_str(&" ".repeat(end - i));
            i = end;
        } else if rest.starts_with("r\"")
            || rest.starts_with("r#")
            || rest.starts_with("br\"")
            || rest.starts_with("br#")
        {
            // A raw string: r"...", r#"..."#, with any number of #.
            let start = i + rest.find('r').unwrap() + 1;
            let hashes = source[start..].chars().take_while(|&c| c == '#').count();
            if source[start + hashes..].starts_with('"') {
                let open = start + hashes + 1;
                let close = format!("\"{}", "#".repeat(hashes));
                let end = source[open..]
                    .find(&close)
                    .map_or(source.len(), |n| open + n);
                literals.push((i, source[open..end].to_string()));
                let after = (end + close.len()).min(source.len());
                code.push_str(&" ".repeat(after - i));
                i = after;
            } else {
                code.push_str(&source[i..start]);
                i = start;
            }
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            let mut text = String::new();
            while j < bytes.len() && bytes[j] != b'"' {
                if bytes[j] == b'\\' {
                    j += 1;
                }
                let c = source[j..].chars().next().unwrap();
                text.push(c);
                j += c.len_utf8();
            }
            literals.push((i, text));
            code.push_str(&" ".repeat(j + 1 - i));
            i = j + 1;
        } else if bytes[i] == b'\''
            && (rest.starts_with("'\\") || rest[1..].chars().nth(1) == Some('\''))
        {
            // A char literal ('{', '\n'), not a lifetime ('a).
            let end = if let Some(escaped) = rest.strip_prefix("'\\") {
                // Past the escaped character ('\'' included), to the closing quote.
                let skip = escaped.chars().next().map_or(0, char::len_utf8);
                escaped[skip..]
                    .find('\'')
                    .map_or(source.len(), |n| i + 2 + skip + n + 1)
            } else {
                i + 1 + rest[1..].chars().next().unwrap().len_utf8() + 1
            };
            code.push_str(&" ".repeat(end - i));
            i = end;
        } else {
            let c = rest.chars().next().unwrap();
            code.push(c);
            i += c.len_utf8();
        }
    }
    // The byte ranges of test-only items.
    let mut tests: Vec<(usize, usize)> = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]").map(|n| from + n) {
        let Some(open) = code[at..].find(['{', ';']).map(|n| at + n) else {
            break;
        };
        let mut end = open + 1;
        if code.as_bytes()[open] == b'{' {
            let mut depth = 0usize;
            for (n, c) in code[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + n + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        tests.push((at, end));
        from = end;
    }
    literals
        .into_iter()
        .map(|(at, text)| Literal {
            in_test: tests.iter().any(|&(start, end)| (start..end).contains(&at)),
            text,
        })
        .collect()
}

/// Shaped like an environment variable's name: upper case, digits and `_`, with a `_` in it
/// (`DATABASE_URL`, `AWS_REGION`) or libpq's `PG` prefix (`PGHOST`). That leaves out the other
/// upper-case literals the code has (`"GET"`, `"POST"`, `"COMMIT"`, `"ROLLBACK"`).
fn looks_like_a_variable(text: &str) -> bool {
    let upper = !text.is_empty()
        && text.starts_with(|c: char| c.is_ascii_uppercase())
        && text
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    upper && (text.contains('_') || (text.starts_with("PG") && text.len() > 2))
}

/// The environment variables the code of `src/` reads. The code reads them in several ways, all
/// through a name written as a string literal somewhere in `src/`: `std::env::var("X")`, a
/// lookup closure or function given the name (`lookup("X")`, `get("X")`, `environment("X")`,
/// `flag(&lookup, "X", ..)`, `key_value(lookup, "X")`, `key_id(lookup, "X", ..)`), a constant
/// (`const SECRET_VARIABLE: &str = "SECRET_ARN"`), a pair of names (`KeySlot::variables`), the
/// table of a secret's fields and the variables they stand for (`secrets::FIELDS`), and the
/// `variable: "X"` an error names. So this takes every literal of non-test code shaped like a
/// variable's name, whatever the call around it: a new way of reading one cannot slip past.
fn variables_read_by_the_code() -> BTreeSet<String> {
    let mut files = Vec::new();
    source_files(&Path::new(ROOT).join("src"), &mut files);
    let mut read = BTreeSet::new();
    for file in files {
        let source = fs::read_to_string(Path::new(ROOT).join(&file)).unwrap();
        for literal in string_literals(&source) {
            if !literal.in_test
                && looks_like_a_variable(&literal.text)
                && !NOT_VARIABLES.contains(&literal.text.as_str())
            {
                read.insert(literal.text);
            }
        }
    }
    read
}

/// The variables the README's configuration table lists: every `NAME` in backticks in the first
/// column of the table under `## Configuration`.
fn variables_in_the_readme() -> BTreeSet<String> {
    let readme = fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Configuration"))
        .expect("README.md has a `## Configuration` section");
    section
        .lines()
        .filter(|line| line.starts_with('|') && !line.starts_with("| ---"))
        .skip(1) // the header
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|name| looks_like_a_variable(name))
        .collect()
}

#[test]
fn the_readme_configuration_table_lists_exactly_the_variables_the_code_reads() {
    let read = variables_read_by_the_code();
    let listed = variables_in_the_readme();
    assert!(
        read.contains("DATABASE_URL") && read.contains("PGHOST") && read.contains("SECRET_ARN"),
        "the scan of src/ found too little: {read:?}"
    );
    let unlisted: Vec<&String> = read
        .iter()
        .filter(|v| !listed.contains(*v) && !SET_BY_LAMBDA.contains(&v.as_str()))
        .collect();
    let unread: Vec<&String> = listed.iter().filter(|v| !read.contains(*v)).collect();
    assert!(
        unlisted.is_empty() && unread.is_empty(),
        "README.md's configuration table and the code disagree.\n\
         read by src/ but not in the table: {unlisted:?}\n\
         in the table but read nowhere in src/: {unread:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// template.yaml's defaults against the docs.

/// The template's settings the docs name, and the command-line flags that set the same thing in
/// `cargo lambda deploy` and `aws lambda create-event-source-mapping` (`--scaling-config
/// MaximumConcurrency=`, `--provisioned-poller-config MinimumPollers=..,MaximumPollers=..`).
const TEMPLATE_SETTINGS: &[(&str, &[&str])] = &[
    ("BatchSize", &["--batch-size"]),
    (
        "MaximumBatchingWindowInSeconds",
        &["--maximum-batching-window-in-seconds"],
    ),
    ("MaximumConcurrency", &["MaximumConcurrency="]),
    ("MinimumPollers", &["MinimumPollers="]),
    ("MaximumPollers", &["MaximumPollers="]),
    ("MaxReceiveCount", &[]),
    ("MemorySize", &["--memory"]),
    ("Timeout", &["--timeout"]),
    ("VisibilityTimeout", &["--visibility-timeout"]),
];

/// The one page that states the defaults, in its `### Parameters` table.
const DEFAULTS_PAGE: &str = "docs/deploy.md";

/// A dated log states what the template held then, not now.
const HISTORY: &[&str] = &["docs/benchmarks-log.md"];

/// A setting's value in template.yaml: a parameter's `Default:`, or a resource's property.
fn template_value(template: &str, name: &str) -> u64 {
    let lines: Vec<&str> = template.lines().collect();
    let parameter = lines.iter().position(|l| *l == format!("  {name}:"));
    let value = match parameter {
        Some(at) => lines[at + 1..]
            .iter()
            .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
            .find_map(|l| l.trim().strip_prefix("Default:")),
        None => lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:"))),
    };
    let value = value.unwrap_or_else(|| panic!("template.yaml has no {name}"));
    value
        .trim()
        .trim_matches('"')
        .parse()
        .unwrap_or_else(|_| panic!("template.yaml's {name} is not a number: {value:?}"))
}

/// The number right after `at` in `text`, past spaces, backticks, `*`, `:` and `=`: "1,000" is 1000.
fn number_after(text: &str, at: usize) -> Option<u64> {
    let rest = text[at..].trim_start_matches([' ', '`', '*', ':', '=']);
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Every Markdown file of the repository, but for `target/` and hidden folders.
fn markdown_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                markdown_files(&path, into);
            }
        } else if name.ends_with(".md") {
            into.push(path.strip_prefix(ROOT).unwrap().to_path_buf());
        }
    }
}

#[test]
fn the_docs_state_template_defaults_once_and_as_the_template_has_them() {
    let template = fs::read_to_string(Path::new(ROOT).join("template.yaml")).unwrap();
    let mut wrong = Vec::new();

    // The one place: each setting has a row in the page's table, with the template's value.
    let page = fs::read_to_string(Path::new(ROOT).join(DEFAULTS_PAGE)).unwrap();
    for (name, _) in TEMPLATE_SETTINGS {
        let value = template_value(&template, name);
        let row = page.lines().find(|l| {
            l.starts_with('|')
                && l.split('|')
                    .nth(1)
                    .is_some_and(|c| c.contains(&format!("`{name}`")))
        });
        let Some(row) = row else {
            wrong.push(format!("{DEFAULTS_PAGE}: no table row names `{name}`"));
            continue;
        };
        // `| `A`, `B` | 1,000, 5 | ...`: the n-th name has the n-th value.
        let cells: Vec<&str> = row.split('|').collect();
        let names: Vec<&str> = cells[1].split('`').skip(1).step_by(2).collect();
        let values: Vec<&str> = cells[2].split(", ").map(str::trim).collect();
        let stated = names
            .iter()
            .position(|n| n == name)
            .and_then(|i| values.get(i))
            .and_then(|v| v.replace(',', "").parse::<u64>().ok());
        if stated != Some(value) {
            wrong.push(format!(
                "{DEFAULTS_PAGE}: `{name}` is {stated:?} in the table, {value} in template.yaml"
            ));
        }
    }

    // Everywhere: "BatchSize 1,000", "`MemorySize` 512", "--batch-size 100" must say the
    // template's value (so a copy that drifts fails; better, link to the table instead).
    let mut files = Vec::new();
    markdown_files(Path::new(ROOT), &mut files);
    for file in files {
        let file = file.to_string_lossy().into_owned();
        if HISTORY.contains(&file.as_str()) {
            continue;
        }
        let text = fs::read_to_string(Path::new(ROOT).join(&file)).unwrap();
        for (name, flags) in TEMPLATE_SETTINGS {
            let value = template_value(&template, name);
            for spelling in std::iter::once(name).chain(flags.iter()) {
                for (at, _) in text.match_indices(spelling) {
                    // A whole name: not `MaxReceiveCount` inside `ApproximateMaxReceiveCount`.
                    let before = text[..at].chars().next_back();
                    let after = text[at + spelling.len()..].chars().next();
                    if before.is_some_and(|c| c.is_alphanumeric())
                        || after.is_some_and(|c| c.is_alphanumeric() || c == '-')
                    {
                        continue;
                    }
                    if let Some(stated) = number_after(&text, at + spelling.len()) {
                        if stated != value {
                            let line = text[..at].lines().count().max(1);
                            wrong.push(format!(
                                "{file}:{line}: {spelling} {stated}, but template.yaml's {name} is {value}"
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the docs and template.yaml disagree (state a default once, in {DEFAULTS_PAGE}'s table, \
         and link to it):\n{}",
        wrong.join("\n")
    );
}
