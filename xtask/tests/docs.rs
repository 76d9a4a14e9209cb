//! The guides cannot drift from the code.
//!
//! - Every `cargo xtask ...` line in a fenced `sh` block of README.md or
//!   docs/*.md parses against the real command line (`drr_stack::cli::parse`),
//!   and the read-only ones run against the stack (`cargo xtask test` exports
//!   it); commands that change or stop the stack are skipped with a reason.
//! - docs/troubleshooting.md quotes messages as lines of the form
//!   ``> `` fragment `` `` (a double-backtick code span on a quote line).
//!   Every fragment must occur verbatim in a `.rs` file under drr-stack/src
//!   or drr-core/src, so the guide cannot quote a message that no longer
//!   exists.
//! - In the other direction, every message drr-stack and drr-core can
//!   print (see [`covered_calls`]) must have its key (see [`key`]) inside
//!   some quoted fragment, so a new message fails this test until the guide
//!   explains it.
//! - Every guide in docs/ is linked from the README.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    xtask::workspace_root()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// README.md and every docs/*.md, sorted.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut guides: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    guides.sort();
    files.extend(guides);
    files
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Source text with string continuations (`\` newline indentation) joined,
/// as the compiler joins them.
fn normalize(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'\n') {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every `.rs` file under drr-stack/src and drr-core/src, normalized.
fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&root().join("drr-stack/src"), &mut files);
    rust_files(&root().join("drr-core/src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = normalize(&read(&f));
            (f, text)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Messages

/// The fragments quoted in troubleshooting.md: lines ``> `` fragment `` ``.
fn quoted_fragments() -> Vec<(usize, String)> {
    let text = read(&root().join("docs/troubleshooting.md"));
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let inner = line.strip_prefix("> `` ")?.strip_suffix(" ``")?;
            Some((i + 1, inner.to_owned()))
        })
        .collect()
}

#[derive(Debug, PartialEq)]
enum Token {
    Str(String),
    Ident(String),
    Punct(char),
}

/// A small Rust lexer: string literals (raw ones too), identifiers and
/// punctuation; comments, whitespace, numbers and char literals dropped.
fn lex(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            tokens.push(Token::Str(
                chars[start..i.min(chars.len())].iter().collect(),
            ));
            i += 1;
        } else if c == 'r' && matches!(chars.get(i + 1), Some('"' | '#')) {
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                tokens.push(Token::Ident("r".into()));
                i += 1;
                continue;
            }
            let start = j + 1;
            let closing: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let rest: String = chars[start..].iter().collect();
            let len = rest.find(&closing).unwrap_or(rest.len());
            tokens.push(Token::Str(rest[..len].to_owned()));
            i = start + rest[..len].chars().count() + closing.chars().count();
        } else if c == '\'' {
            // A char literal ('x', '\n', '\'') or a lifetime ('a).
            if chars.get(i + 1) == Some(&'\\') {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() || c.is_whitespace() {
            i += 1;
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// Drops `#[cfg(test)]` items: their messages are the tests' own.
fn without_tests(source: &str) -> &str {
    match source.find("#[cfg(test)]\nmod tests") {
        Some(i) => &source[..i],
        None => source,
    }
}

/// The calls whose message a user can see, and which argument holds it:
///
/// - `bail!(msg, ..)`, `anyhow!(msg, ..)`, `ensure!(cond, msg, ..)`,
///   `.context(msg)`, `.with_context(|| format!(msg, ..))` in drr-stack
///   (outside `bench/`, a maintainers' measurement tool);
/// - the spec validator's `self.report(field, msg, fix)`;
/// - in drr-core, `#[error(msg)]` and `Error::config(msg)`.
///
/// The message is the first string literal in that argument; an argument
/// without one (a variable, a helper's result) is not checked.
fn covered_calls(path: &Path, tokens: &[Token]) -> Vec<String> {
    let in_core = path.components().any(|c| c.as_os_str() == "drr-core");
    let ident = |t: Option<&Token>, name: &str| matches!(t, Some(Token::Ident(s)) if s == name);
    let punct = |t: Option<&Token>, ch: char| t == Some(&Token::Punct(ch));
    let mut messages = Vec::new();
    for i in 0..tokens.len() {
        let at = |k: usize| tokens.get(i + k);
        // (index of the opening parenthesis, argument holding the message)
        let call = if in_core {
            if punct(at(0), '#') && punct(at(1), '[') && ident(at(2), "error") && punct(at(3), '(')
            {
                Some((i + 3, 0))
            } else if ident(at(0), "Error")
                && punct(at(1), ':')
                && punct(at(2), ':')
                && ident(at(3), "config")
                && punct(at(4), '(')
            {
                Some((i + 4, 0))
            } else {
                None
            }
        } else if punct(at(1), '!') && punct(at(2), '(') {
            match at(0) {
                Some(Token::Ident(m)) if m == "bail" || m == "anyhow" => Some((i + 2, 0)),
                Some(Token::Ident(m)) if m == "ensure" => Some((i + 2, 1)),
                _ => None,
            }
        } else if punct(at(0), '.') && punct(at(2), '(') {
            match at(1) {
                Some(Token::Ident(m)) if m == "context" || m == "with_context" => Some((i + 2, 0)),
                _ => None,
            }
        } else if ident(at(0), "self")
            && punct(at(1), '.')
            && ident(at(2), "report")
            && punct(at(3), '(')
        {
            Some((i + 3, 1))
        } else {
            None
        };
        let Some((open, wanted)) = call else { continue };
        let (mut depth, mut arg) = (0usize, 0usize);
        for token in &tokens[open..] {
            match token {
                Token::Punct('(' | '[' | '{') => depth += 1,
                Token::Punct(')' | ']' | '}') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Token::Punct(',') if depth == 1 => arg += 1,
                Token::Str(s) if arg == wanted => {
                    messages.push(s.clone());
                    break;
                }
                _ => {}
            }
        }
    }
    messages
}

/// Every message covered by the rule, with the file it is in.
fn messages() -> Vec<(String, String)> {
    let root = root();
    let mut out = Vec::new();
    for (path, text) in sources() {
        let rel = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if rel.starts_with("drr-stack/src/bench/") || rel.ends_with("/tests.rs") {
            continue;
        }
        for message in covered_calls(&path, &lex(without_tests(&text))) {
            out.push((rel.clone(), message));
        }
    }
    out
}

/// What the guide must quote of a message: the first run of text between
/// `{placeholders}` that is at least 8 characters long once spaces and
/// backticks at its ends are trimmed, cut to 30 characters (the longest run
/// when none is that long).
fn key(message: &str) -> String {
    let mut runs = Vec::new();
    let mut run = String::new();
    let mut depth = 0;
    for c in message.chars() {
        match c {
            '{' => {
                depth += 1;
                runs.push(std::mem::take(&mut run));
            }
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => run.push(c),
            _ => {}
        }
    }
    runs.push(run);
    let runs: Vec<&str> = runs
        .iter()
        .map(|r| r.trim_matches(|c: char| c.is_whitespace() || c == '`'))
        .collect();
    let chosen = runs
        .iter()
        .find(|r| r.chars().count() >= 8)
        .or_else(|| runs.iter().max_by_key(|r| r.len()))
        .copied()
        .unwrap_or_default();
    chosen
        .chars()
        .take(30)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Messages that no user action causes: broken invariants of drr itself.
const NOT_USER_CAUSED: &[&str] = &[
    "a spec always has a primary",
    "a generated file has no parent",
    "a generated file has no name",
    "a worker thread panicked",
];

#[test]
fn every_quoted_message_exists_in_the_code() {
    let sources = sources();
    let fragments = quoted_fragments();
    assert!(
        fragments.len() > 20,
        "docs/troubleshooting.md quotes too few messages ({})",
        fragments.len()
    );
    let missing: Vec<String> = fragments
        .iter()
        .filter(|(_, f)| !sources.iter().any(|(_, text)| text.contains(f.as_str())))
        .map(|(line, f)| format!("docs/troubleshooting.md:{line}: {f}"))
        .collect();
    assert!(
        missing.is_empty(),
        "these quoted messages occur in no .rs file under drr-stack/src or drr-core/src; \
         update the quotes (and the advice) to the messages the code prints now:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_message_is_explained_in_troubleshooting() {
    let fragments: Vec<String> = quoted_fragments().into_iter().map(|(_, f)| f).collect();
    let messages = messages();
    assert!(
        messages.len() > 50,
        "found only {} messages: is the lexer broken?",
        messages.len()
    );
    let mut missing = BTreeSet::new();
    for (file, message) in &messages {
        let key = key(message);
        if NOT_USER_CAUSED.contains(&key.as_str()) {
            continue;
        }
        if !fragments.iter().any(|f| f.contains(&key)) {
            missing.insert(format!("{file}: `{key}` (from \"{message}\")"));
        }
    }
    assert!(
        missing.is_empty(),
        "these messages are not explained in docs/troubleshooting.md; add an entry that quotes \
         at least the part in backticks (a line ``> `` fragment `` ``) with its cause and fix:\n{}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn keys_are_the_first_long_run_of_text() {
    assert_eq!(key("cannot write {}"), "cannot write");
    assert_eq!(
        key("{flag} must be longer than zero"),
        "must be longer than zero"
    );
    assert_eq!(
        key("port {} on {} (node `{}`) is already in use by {holder}; stop it"),
        ") is already in use by"
    );
    assert_eq!(key("`{}` failed ({}):\\n{}"), "failed (");
    let tokens = lex(
        "fn f() { anyhow::ensure!(x > 1, \"too {small}\", small = 1); a.context(r#\"raw \"q\"\"#) }",
    );
    assert_eq!(
        covered_calls(Path::new("drr-stack/src/x.rs"), &tokens),
        ["too {small}", "raw \"q\""]
    );
}

// ---------------------------------------------------------------------------
// Links

#[test]
fn every_guide_is_linked_from_the_readme() {
    let readme = read(&root().join("README.md"));
    let unlinked: Vec<String> = markdown_files()
        .into_iter()
        .skip(1)
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            (!readme.contains(&format!("](docs/{name})"))).then_some(name)
        })
        .collect();
    assert!(
        unlinked.is_empty(),
        "link these guides from README.md's Guides section: {unlinked:?}"
    );
}

// ---------------------------------------------------------------------------
// What an adopter copies

/// Every Markdown file an adopter reads: README.md, docs/*.md and the
/// crates' READMEs.
fn adopter_docs() -> Vec<PathBuf> {
    let mut files = markdown_files();
    files.extend(["drr-stack/README.md", "drr-core/README.md"].map(|f| root().join(f)));
    files
}

/// drr is not on crates.io yet: a dependency on drr-stack or drr-core in
/// the docs is one that works, by git or by path.
#[test]
fn shown_dependencies_are_git_or_path() {
    let mut wrong = Vec::new();
    for path in adopter_docs() {
        for (n, line) in read(&path).lines().enumerate() {
            let line = line.trim_start_matches(['#', ' ']);
            let declares = line.starts_with("drr-stack =") || line.starts_with("drr-core =");
            if declares && !line.contains("git =") && !line.contains("path =") {
                wrong.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "show `{{ git = \"https://github.com/drr-rs/drr\" }}` or `{{ path = ... }}`:\n{}",
        wrong.join("\n")
    );
}

/// A role in a sample spec may create databases: drr-core's test helpers
/// need it, and a sample should just work.
#[test]
fn sample_login_roles_may_create_databases() {
    let mut files = adopter_docs();
    files.push(root().join("examples/adopt/xtask/src/spec.rs"));
    files.push(root().join("drr-stack/src/lib.rs"));
    let mut wrong = Vec::new();
    for path in files {
        for (n, line) in read(&path).lines().enumerate() {
            if line.contains("Role::login(\"") && !line.contains(".createdb()") {
                wrong.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(wrong.is_empty(), "add `.createdb()`:\n{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------
// Commands

/// A `cargo xtask` command shown in the docs.
#[derive(Debug)]
struct Shown {
    place: String,
    args: Vec<String>,
}

/// Splits shell words, honouring single and double quotes.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Where the command starting `tail` ends: at a comment, a closing `)`, a
/// pipe, `;` or `&` outside quotes.
fn command_end(tail: &str) -> usize {
    let mut quote = None;
    for (i, c) in tail.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#' | ')' | '|' | ';' | '&') => return i,
            _ => {}
        }
    }
    tail.len()
}

/// Every `cargo xtask ...` in a fenced `sh` block: the words after it, up to
/// a comment, a closing `)`, a pipe or `;`/`&&`.
fn shown_commands() -> Vec<Shown> {
    let mut shown = Vec::new();
    for path in markdown_files() {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = read(&path);
        let mut in_sh = false;
        let mut in_fence = false;
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if let Some(info) = trimmed.strip_prefix("```") {
                if in_fence {
                    in_fence = false;
                    in_sh = false;
                } else {
                    in_fence = true;
                    in_sh = info.trim() == "sh";
                }
                continue;
            }
            if !in_sh {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find("cargo xtask") {
                let tail = &rest[at + "cargo xtask".len()..];
                let end = command_end(tail);
                shown.push(Shown {
                    place: format!("{name}:{}", n + 1),
                    args: shell_words(&tail[..end]),
                });
                rest = &tail[end..];
            }
        }
    }
    shown
}

#[test]
fn every_shown_command_parses() {
    let shown = shown_commands();
    assert!(
        shown.len() > 10,
        "found only {} commands: is the extraction broken?",
        shown.len()
    );
    let broken: Vec<String> = shown
        .iter()
        .filter_map(|s| match drr_stack::cli::parse(&s.args) {
            Ok(()) => None,
            Err(e) if e.exit_code() == 0 => None, // --help, --version
            Err(e) => Some(format!(
                "{}: cargo xtask {}\n{e}",
                s.place,
                s.args.join(" ")
            )),
        })
        .collect();
    assert!(
        broken.is_empty(),
        "commands in the docs that `cargo xtask` rejects:\n{}",
        broken.join("\n")
    );
}

/// How a shown command is run against the stack: `Ok(args)` to run (possibly
/// made safe), `Err(reason)` to skip.
fn plan(args: &[String]) -> Result<Vec<String>, &'static str> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    if words.contains(&"--help") || words.contains(&"-h") {
        return Ok(args.to_vec());
    }
    if words.contains(&"--backend") {
        return Err("names a backend; the stack under test runs on its own");
    }
    if words.contains(&"--cluster") {
        return Err("names a cluster this repository does not declare");
    }
    match words.first().copied() {
        Some("status" | "env") => Ok(args.to_vec()),
        Some("gen") if words.contains(&"--check") => Ok(args.to_vec()),
        Some("gen") => Err("writes compose/"),
        Some("delay") if shows_delay(&words[1..]) => Ok(args.to_vec()),
        Some("delay") => Err("changes the shared stack's delay"),
        Some("pause" | "resume") => Err("changes replay on the shared stack"),
        Some("failover") => Err("changes the shared stack's roles"),
        Some("probe") => {
            // Short, and never over a file the docs ship (docs/lag.svg).
            let mut safe = vec![
                "probe".to_owned(),
                "--duration".into(),
                "2s".into(),
                "--interval".into(),
                "250ms".into(),
            ];
            if words.contains(&"--json") {
                safe.push("--json".into());
            }
            if words.contains(&"--svg") {
                let svg = std::env::temp_dir().join(format!("drr-docs-{}.svg", std::process::id()));
                safe.extend(["--svg".to_owned(), svg.display().to_string()]);
            }
            Ok(safe)
        }
        Some("psql") if words.contains(&"-c") => Ok(args.to_vec()),
        Some("psql") => Err("interactive"),
        Some("logs") if words.contains(&"-f") || words.contains(&"--follow") => Err("never ends"),
        Some("logs") => Ok(args.to_vec()),
        Some("up") => Err("changes the stack (`cargo xtask test` has just run it)"),
        Some("down" | "destroy") => Err("stops the shared stack"),
        Some("test") => Err("runs the whole test suite (this test is part of it)"),
        Some("image") => Err("builds an image (minutes)"),
        Some("bench") => Err("measures for minutes on throw-away stacks"),
        Some("net" | "partition" | "heal") => Err(
            "the shared stack opts no link in; the network-faults guide runs on a stack of its own",
        ),
        _ => Err("not a command this test knows how to run safely"),
    }
}

/// Whether `delay` with these arguments only shows the delay: no value, no
/// `--reset`.
fn shows_delay(words: &[&str]) -> bool {
    let mut words = words.iter();
    while let Some(w) = words.next() {
        if *w == "--replica" {
            words.next();
        } else if !w.starts_with("--replica=") {
            return false;
        }
    }
    true
}

/// Runs the xtask binary (what `cargo xtask` runs) from the workspace root.
fn run(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the xtask binary: {e}"))
}

#[test]
fn safe_shown_commands_run_against_the_stack() {
    assert!(
        std::env::var_os("DRR_PRIMARY_URL").is_some(),
        "DRR_PRIMARY_URL is not set: this test runs the docs' commands against the stack; \
         run it through `cargo xtask test` (e.g. `cargo xtask test -p xtask --test docs`)"
    );
    let mut seen = BTreeSet::new();
    let mut ran = BTreeSet::new();
    let mut failures = Vec::new();
    for shown in shown_commands() {
        let line = format!("cargo xtask {}", shown.args.join(" "));
        if !seen.insert(shown.args.clone()) {
            continue;
        }
        let args = match plan(&shown.args) {
            Ok(args) => args,
            Err(reason) => {
                eprintln!("skip {}: {line}: {reason}", shown.place);
                continue;
            }
        };
        if !ran.insert(args.clone()) {
            continue;
        }
        let started = Instant::now();
        let output = run(&args);
        eprintln!(
            "ran  {}: cargo xtask {} ({} ms)",
            shown.place,
            args.join(" "),
            started.elapsed().as_millis()
        );
        if !output.status.success() {
            failures.push(format!(
                "{}: cargo xtask {} exited with {}\n{}{}",
                shown.place,
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        if let Some(i) = args.iter().position(|a| a == "--svg") {
            let _ = std::fs::remove_file(&args[i + 1]);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{line} took too long"
        );
    }
    assert!(
        failures.is_empty(),
        "commands from the docs failed:\n{}",
        failures.join("\n")
    );
}

/// Runs `guide`'s commands as shown, in order, on a stack of its own for
/// `spec` in a temporary workspace, destroyed however the test ends.
fn run_guide_on_own_stack(guide: &[Vec<String>], spec: drr_stack::spec::StackSpec) {
    let root = drr_stack::testing::scratch_dir("drr-docs-guide-").expect("a workspace");
    // The fault proxy is the xtask binary's hidden `net-proxy` command.
    drr_stack::net::launch::use_program(env!("CARGO_BIN_EXE_xtask").into());
    let run = |args: &[String]| {
        let args = ["--quiet".to_owned()]
            .into_iter()
            .chain(args.iter().cloned());
        drr_stack::cli::run_args(args, spec.clone(), root.path())
    };
    /// Destroys the stack however the test ends.
    struct Destroy<'a>(&'a dyn Fn(&[String]) -> std::process::ExitCode);
    impl Drop for Destroy<'_> {
        fn drop(&mut self) {
            (self.0)(&["destroy".to_owned(), "--yes".to_owned()]);
        }
    }
    let _destroy = Destroy(&run);
    for args in guide {
        assert_eq!(
            run(args),
            std::process::ExitCode::SUCCESS,
            "cargo xtask {} failed",
            args.join(" ")
        );
    }
}

/// The network-faults guide's commands, run as shown, in order, on a stack
/// whose replica opts both links in.
#[test]
fn the_network_faults_guide_runs_on_a_stack_of_its_own() {
    let guide: Vec<Vec<String>> = shown_commands()
        .into_iter()
        .filter(|s| s.place.starts_with("network-faults.md:"))
        .map(|s| s.args)
        .collect();
    assert!(
        guide
            .iter()
            .any(|args| args.first().is_some_and(|a| a == "partition")),
        "the guide shows no partition: is the extraction broken? {guide:?}"
    );
    let spec = drr_stack::testing::net_spec(&[Duration::ZERO]).expect("a spec");
    run_guide_on_own_stack(&guide, spec);
}

/// The failover guide's rehearsal, run as shown, in order, on a stack of
/// its own (a primary and a replica on free ports in a temporary
/// workspace): the commands that change roles cannot run on the shared
/// stack, and a guide whose commands are never run drifts.
#[test]
fn the_failover_guide_runs_on_a_stack_of_its_own() {
    let guide: Vec<Vec<String>> = shown_commands()
        .into_iter()
        .filter(|s| s.place.starts_with("failover.md:") && !s.args.contains(&"--cluster".into()))
        .map(|s| s.args)
        .collect();
    assert!(
        guide
            .iter()
            .any(|args| args.first().is_some_and(|a| a == "failover")),
        "the guide shows no failover: is the extraction broken? {guide:?}"
    );
    let spec = drr_stack::testing::spec(&[Duration::ZERO]).expect("a spec");
    run_guide_on_own_stack(&guide, spec);
}
