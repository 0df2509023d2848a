//! The command line: usage errors exit 2 with a message naming the
//! problem, `--version`, `--help`, the admin client's arguments passed
//! through, `check --running`'s optional value, and the completion scripts.

use std::path::{Path, PathBuf};
use std::process::Command;

const EDGE: &str = env!("CARGO_BIN_EXE_edge");

/// A valid config (nothing is bound by `edge check`).
const CONFIG: &str = r#"
[http]
listen = ["127.0.0.1:18080"]

[[route]]
respond = { status = 200, body = "hi" }
"#;

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn edge(args: &[&str]) -> Out {
    edge_with(Command::new(EDGE).args(args))
}

fn edge_with(cmd: &mut Command) -> Out {
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A directory of its own for one test, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("edge-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A usage error: exit 2, nothing on stdout, and stderr says what is wrong
/// (every one of `needles`) and shows the usage or where to find it.
fn assert_usage_error(args: &[&str], needles: &[&str]) {
    let out = edge(args);
    assert_eq!(out.code, Some(2), "edge {args:?}: {out}");
    assert!(out.stdout.is_empty(), "edge {args:?}: {out}");
    let lower = out.stderr.to_lowercase();
    assert!(
        lower.contains("usage") || out.stderr.contains("--help"),
        "edge {args:?}: {out}"
    );
    for n in needles {
        assert!(out.stderr.contains(n), "edge {args:?}: {n:?} in {out}");
    }
}

#[test]
fn unknown_command_is_a_usage_error() {
    assert_usage_error(&["bogus"], &["bogus"]);
    assert_usage_error(&["bogus"], &["unrecognized subcommand 'bogus'"]);
    // No command at all.
    let out = edge(&[]);
    assert_eq!(out.code, Some(2), "{out}");
}

#[test]
fn missing_or_misplaced_options_are_usage_errors() {
    assert_usage_error(&["check"], &["--config <FILE>"]);
    assert_usage_error(&["run"], &["--config <FILE>"]);
    assert_usage_error(&["check", "-c"], &["a value is required", "--config"]);
    // Each option belongs to its command.
    assert_usage_error(
        &["check", "-c", "x.toml", "--running-config", "y"],
        &["--running-config"],
    );
    assert_usage_error(
        &["run", "-c", "x.toml", "--diff-against", "y"],
        &["--diff-against"],
    );
    assert_usage_error(&["check", "-c", "x.toml", "--bogus"], &["--bogus"]);
    assert_usage_error(&["completions", "tcsh"], &["tcsh"]);
}

#[test]
fn invalid_config_exits_1() {
    let dir = Dir::new("invalid");
    let bad = dir.write("bad.toml", "[http]\nlisten = 5\n");
    let out = edge(&["check", "-c", bad.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("test failed"), "{out}");
    // The last -c counts, as before.
    let good = dir.write("good.toml", CONFIG);
    let out = edge(&[
        "check",
        "-c",
        bad.to_str().unwrap(),
        "-c",
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{out}");
}

#[test]
fn version_in_every_spelling() {
    let want = format!("edge {}\n", env!("CARGO_PKG_VERSION"));
    for arg in ["--version", "-V", "version"] {
        let out = edge(&[arg]);
        assert_eq!(out.code, Some(0), "{arg}: {out}");
        assert_eq!(out.stdout, want, "{arg}: {out}");
    }
}

#[test]
fn help_lists_the_commands() {
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let out = edge(args);
        assert_eq!(out.code, Some(0), "{args:?}: {out}");
        for cmd in ["run", "check", "admin", "completions"] {
            assert!(
                out.stdout.lines().any(|l| l.trim_start().starts_with(cmd)),
                "{args:?}: no {cmd} in {out}"
            );
        }
        assert!(out.stdout.contains("2 usage error"), "{args:?}: {out}");
    }
    let out = edge(&["check", "--help"]);
    assert_eq!(out.code, Some(0), "{out}");
    for opt in ["--config", "--diff-against", "--running"] {
        assert!(out.stdout.contains(opt), "{opt}: {out}");
    }
}

#[test]
fn check_running_takes_an_optional_copy() {
    let dir = Dir::new("running");
    let new = dir.write("new.toml", CONFIG);
    let new = new.to_str().unwrap();
    // Without a value: $RUNTIME_DIRECTORY/running.toml (absent here), and
    // an option after --running is not taken for its value.
    let out = edge_with(
        Command::new(EDGE)
            .args(["check", "--running", "-c", new])
            .env("RUNTIME_DIRECTORY", &dir.0),
    );
    assert_eq!(out.code, Some(0), "{out}");
    let default = dir.0.join("running.toml");
    assert!(
        out.stdout
            .contains(&format!("no running config at {}", default.display())),
        "{out}"
    );
    // With a value: that file, compared with.
    let old = dir.write("old.toml", &CONFIG.replace("\"hi\"", "\"old\""));
    let out = edge(&["check", "-c", new, "--running", old.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("\"old\" -> \"hi\""), "{out}");
    // One comparison at a time.
    assert_usage_error(
        &["check", "-c", new, "--running", "--diff-against", new],
        &["--diff-against", "--running"],
    );
}

#[test]
fn admin_arguments_go_to_the_admin_client() {
    let dir = Dir::new("admin");
    let sock = dir.0.join("absent.sock");
    let sock = sock.to_str().unwrap();
    // -s and the command words reach the client, which cannot connect: 1.
    let out = edge(&["admin", "-s", sock, "show", "servers", "-x"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .contains(&format!("cannot talk to the admin socket {sock}")),
        "{out}"
    );
    // `help` is a command for the socket, not the command line's help.
    let out = edge(&["admin", "-s", sock, "help"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("cannot talk to the admin socket"),
        "{out}"
    );
    // The client's own usage errors: 2.
    let out = edge(&["admin"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("missing command"), "{out}");
    let out = edge(&["admin", "-s"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("-s needs a socket path"), "{out}");
}

/// Runs `script` in bash after sourcing `edge completions bash`.
fn bash_with_completions(completions: &Path, script: &str) -> Out {
    edge_with(
        Command::new("bash")
            .arg("-c")
            .arg(format!("source {}\n{script}", completions.display())),
    )
}

#[test]
fn bash_completions_are_a_working_script() {
    let out = edge(&["completions", "bash"]);
    assert_eq!(out.code, Some(0), "{out}");
    let dir = Dir::new("completions");
    let script = dir.write("edge.bash", &out.stdout);
    // bash parses it.
    let syntax = edge_with(Command::new("bash").arg("-n").arg(&script));
    assert_eq!(syntax.code, Some(0), "bash -n: {syntax}");
    // It registers a completion for `edge` and names every subcommand.
    assert!(out.stdout.contains("complete "), "{out}");
    for cmd in ["run", "check", "admin", "version", "completions"] {
        assert!(out.stdout.contains(&format!("edge,{cmd})")), "{cmd}: {out}");
    }
    // And it completes: `edge ch<TAB>`, `edge completions <TAB>`,
    // `edge check --d<TAB>`.
    let complete = |words: &[&str]| {
        let line = words.join(" ");
        let r = bash_with_completions(
            &script,
            &format!(
                "COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; \
                 COMP_POINT={point}; _edge edge '{cur}' '{prev}'; echo \"${{COMPREPLY[*]}}\"",
                words = words
                    .iter()
                    .map(|w| format!("'{w}'"))
                    .collect::<Vec<_>>()
                    .join(" "),
                cword = words.len() - 1,
                point = line.len(),
                cur = words[words.len() - 1],
                prev = words[words.len() - 2],
            ),
        );
        assert_eq!(r.code, Some(0), "{words:?}: {r}");
        r.stdout
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(complete(&["edge", "ch"]), ["check"]);
    let shells = complete(&["edge", "completions", ""]);
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|c| c == s), "{s} in {shells:?}");
    }
    assert_eq!(complete(&["edge", "check", "--d"]), ["--diff-against"]);
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    for (shell, marker) in [("zsh", "#compdef edge"), ("fish", "complete -c edge")] {
        let out = edge(&["completions", shell]);
        assert_eq!(out.code, Some(0), "{shell}: {out}");
        assert!(out.stdout.contains(marker), "{shell}: {out}");
        for cmd in ["run", "check", "admin", "version", "completions"] {
            assert!(out.stdout.contains(cmd), "{shell}: no {cmd} in {out}");
        }
    }
}
