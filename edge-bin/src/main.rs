//! `edge`: the HA edge proxy binary.
//!
//! ```text
//! edge run   -c edge.toml    run the proxy (SIGHUP reloads, SIGTERM stops gracefully)
//! edge check -c edge.toml    validate the config as a run would, then exit
//! edge check -c new.toml --diff-against old.toml | --running [FILE]
//!                            ... and print what a reload would change
//! edge admin [-s SOCKET] CMD  send one command to a running edge's admin socket
//! edge peer-key -o FILE     write a pair's peer link credentials (0600)
//! edge completions bash|zsh|fish
//!                            print a shell completion script
//! edge --version
//! ```
//!
//! Exit status (as `nginx -t` / `haproxy -c`): 0 success, 1 invalid config
//! or a failure at start, 2 usage error.

/// jemalloc with background purge threads: memory freed after a load peak
/// (10,000 connections closing) goes back to the OS within seconds, where
/// glibc's malloc kept it (RSS stayed at the peak and grew each round).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use edge_bin::{admin, confdiff, config, management, notify, reload, telemetry};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The HA edge proxy.
#[derive(Debug, Parser)]
#[command(
    name = "edge",
    version,
    // A repeated option takes its last value (`-c a -c b` checks b).
    args_override_self = true,
    after_help = "exit status: 0 ok, 1 invalid config or start failure, 2 usage error"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy
    ///
    /// Runs the proxy with config FILE: SIGHUP reloads FILE, SIGTERM and
    /// SIGINT stop gracefully (in-flight work finishes).
    Run {
        /// The configuration file.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        file: PathBuf,
        /// Where to keep a copy of the config as last loaded (default
        /// $RUNTIME_DIRECTORY/running.toml, else /run/edge/running.toml when
        /// /run/edge exists).
        #[arg(long = "running-config", value_name = "COPY")]
        running_copy: Option<PathBuf>,
    },
    /// Validate a config and exit
    ///
    /// Validates FILE (everything a run would check) and exits; with
    /// --diff-against or --running, also prints what a reload would change.
    Check {
        /// The configuration file.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        file: PathBuf,
        /// Print what reloading from OLD to FILE changes.
        #[arg(long, value_name = "OLD", conflicts_with = "running")]
        diff_against: Option<PathBuf>,
        /// Compare with the running instance's config copy (default
        /// $RUNTIME_DIRECTORY/running.toml, else /run/edge/running.toml).
        #[arg(long, value_name = "COPY", num_args = 0..=1)]
        running: Option<Option<PathBuf>>,
    },
    /// Send a command to a running edge's admin socket
    ///
    /// Sends COMMAND to a running edge's admin socket (-s SOCKET; default
    /// /run/edge/admin.sock) and prints the answer; `edge admin help` lists
    /// the commands.
    #[command(override_usage = "edge admin [-s SOCKET] COMMAND...")]
    Admin {
        /// [-s SOCKET] COMMAND...
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Write the credentials file of a pair's peer link
    ///
    /// Writes a new self-signed certificate and its private key (PEM) to
    /// FILE with mode 0600, for `[peer] credentials`. Copy the same file to
    /// both nodes of the pair (as a secret): each accepts only a peer that
    /// presents this certificate.
    PeerKey {
        /// Where to write the credentials.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the version
    Version,
    /// Print a shell completion script
    ///
    /// Prints the completion script for SHELL, e.g.
    /// `edge completions bash > /etc/bash_completion.d/edge`.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// The shells `edge completions` writes scripts for.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// What `edge check` compares with.
enum Against {
    File(PathBuf),
    Running(PathBuf),
}

fn main() -> ExitCode {
    // Usage errors exit 2 (clap's code); --help and --version exit 0.
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("edge {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut Cli::command(), "edge", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Admin { args } => admin::client::main(&args),
        Command::PeerKey { out, force } => match edge_bin::peer::write_credentials(&out, force) {
            Ok(()) => {
                println!(
                    "edge: peer credentials written to {} (mode 0600)",
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edge: {e}");
                ExitCode::from(1)
            }
        },
        Command::Check {
            file,
            diff_against,
            running,
        } => {
            let against = match (diff_against, running) {
                (Some(old), _) => Some(Against::File(old)),
                (None, Some(copy)) => Some(Against::Running(
                    copy.unwrap_or_else(reload::default_running_copy),
                )),
                (None, None) => None,
            };
            check(&file, against.as_ref())
        }
        Command::Run { file, running_copy } => {
            let copy = running_copy.or_else(|| {
                let p = reload::default_running_copy();
                p.parent().is_some_and(Path::is_dir).then_some(p)
            });
            run(&file, copy)
        }
    }
}

fn check(path: &Path, against: Option<&Against>) -> ExitCode {
    let text = match reload::read_config(path) {
        Ok((text, v)) => {
            for w in &v.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "edge: the configuration file {} syntax is ok",
                path.display()
            );
            println!(
                "edge: configuration file {} test is successful",
                path.display()
            );
            text
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("edge: configuration file {} test failed", path.display());
            return ExitCode::from(1);
        }
    };
    let Some(against) = against else {
        return ExitCode::SUCCESS;
    };
    let (old_path, old) = match against {
        Against::File(p) => match std::fs::read_to_string(p) {
            Ok(t) => (p, t),
            Err(e) => {
                eprintln!("edge: cannot read {}: {e}", p.display());
                return ExitCode::from(1);
            }
        },
        Against::Running(p) => match std::fs::read_to_string(p) {
            Ok(t) => (p, t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                println!(
                    "edge: no running config at {} (edge not running?): everything below is new",
                    p.display()
                );
                (p, String::new())
            }
            Err(e) => {
                eprintln!("edge: cannot read the running config {}: {e}", p.display());
                return ExitCode::from(1);
            }
        },
    };
    print!("{}", diff_report(old_path, &old, path, &text));
    ExitCode::SUCCESS
}

/// The summary and the unified diff `edge check --diff-against` prints.
fn diff_report(old_path: &Path, old: &str, new_path: &Path, new: &str) -> String {
    let mut out = String::new();
    let (o, n) = (old_path.display(), new_path.display());
    match confdiff::summarize(old, new) {
        Ok(changes) if changes.is_empty() && old == new => {
            out.push_str(&format!("edge: no changes: {n} is the same as {o}\n"));
            return out;
        }
        Ok(changes) if changes.is_empty() => {
            out.push_str(&format!(
                "edge: a reload from {o} to {n} changes no setting (comments or layout only)\n"
            ));
        }
        Ok(changes) => {
            out.push_str(&format!(
                "edge: a reload from {o} to {n} would change ({} changes):\n",
                changes.len()
            ));
            for c in changes {
                out.push_str(&format!("  {c}\n"));
            }
        }
        Err(e) => out.push_str(&format!("edge: no summary: {e}\n")),
    }
    out.push('\n');
    out.push_str(&confdiff::unified(&o.to_string(), &n.to_string(), old, new));
    out
}

fn run(path: &Path, running_copy: Option<PathBuf>) -> ExitCode {
    let (text, v) = match reload::read_config(path) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter(&v.log_level)));
    // Colours only on a terminal (and never with NO_COLOR): a file, a pipe
    // or journald gets plain text.
    let ansi = {
        use std::io::IsTerminal as _;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    // One worker: a current-thread runtime, as HAProxy's `nbthread 1` or
    // one nginx worker: no work-stealing queues, no cross-thread wakeups.
    // (Blocking work still goes to tokio's blocking pool.)
    let mut rt = if v.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if v.worker_threads > 0 {
            b.worker_threads(v.worker_threads);
        }
        b
    };
    rt.enable_all();
    let rt = match rt.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edge: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(serve(path, text, v, running_copy));
    // Connections still open after the drain deadline end here.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    // The last line edge writes says why it exits; a fatal error is
    // written once, here.
    match result {
        Ok(reason) => {
            tracing::info!("edge exits: {reason}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("edge exits on an error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(
    path: &Path,
    text: String,
    v: config::Validated,
    running_copy: Option<PathBuf>,
) -> Result<&'static str, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |k: SignalKind| signal(k).map_err(|e| format!("cannot handle signals: {e}"));
    // Before anything starts, so that no signal finds the default action.
    let (mut hup, mut term, mut int) = (
        sig(SignalKind::hangup())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
    );
    let notifier = Arc::new(notify::Notifier::from_env());
    let admin = admin::Admin::new(path);
    admin.use_state_file(v.admin.state_file.clone());
    // Before the first TLS config is built: it takes these keys.
    let tickets = edge_bin::tickets::init(v.tickets.keys_file.clone())?;
    let peer_settings = v.peer.clone();
    let etcd_settings = v.etcd.clone();
    for w in &v.warnings {
        tracing::warn!("{w}");
    }
    let admin_settings = v.admin.clone();
    let management_settings = v.management.clone();
    // Process-wide: metrics and access-log sinks survive reloads.
    let telemetry = telemetry::Telemetry::new();
    // `[etcd]` before the first config starts its ACME manager (its storage).
    let _fleet = match &etcd_settings {
        Some(e) => Some(
            edge_bin::etcd::start(e, admin.clone(), tickets.clone(), &telemetry.metrics).await?,
        ),
        None => None,
    };
    let reloader = reload::Reloader::start(
        path,
        text,
        v,
        running_copy,
        notifier.clone(),
        admin.clone(),
        telemetry.clone(),
    )
    .await?;
    telemetry.reopen_on_sigusr1();
    // A fleet rotates its keys through etcd (one rotation for all nodes).
    let _rotation = etcd_settings.is_none().then(|| tickets.spawn_rotation());
    let _peer = match &peer_settings {
        Some(p) => Some(edge_bin::peer::start(p, admin.clone(), tickets).await?),
        None => None,
    };
    // `[management]` (metrics) is bound once: a reload keeps it (restart to change it).
    if let Some(m) = &management_settings {
        let l = management::bind(m)
            .await
            .map_err(|e| format!("cannot listen on {} (management): {e}", m.listen))?;
        let bound = l.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(address = %bound, kind = "management", "listening");
        management::spawn(
            l,
            telemetry.metrics.clone(),
            reloader.shared().clone(),
            admin.clone(),
        );
    }
    // The admin socket's `reload` command runs the same reload as SIGHUP.
    let hook = reloader.clone();
    let reload_hook: admin::ReloadFn = Arc::new(move || {
        let r = hook.clone();
        Box::pin(async move {
            r.reload()
                .await
                .map(|s| s.to_string())
                .map_err(|e| e.to_string())
        })
    });
    let _admin_socket = admin::start(
        &admin_settings,
        admin,
        reloader.shared().clone(),
        reload_hook,
    )?;
    // Ready once the servers are known (bounded by `startup_hold`).
    reloader.first_round().await;
    notifier.ready("serving");
    notifier.spawn_watchdog();
    let signal = loop {
        tokio::select! {
            _ = hup.recv() => {
                // The outcome is logged (and sent to systemd) by reload().
                let _ = reloader.reload().await;
            }
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };
    tracing::info!("shutting down ({signal})");
    let second = "a second stop signal: in-flight work was cut short";
    Ok(tokio::select! {
        _ = reloader.stop() => match signal {
            "SIGINT" => "stopped by SIGINT, in-flight work finished",
            _ => "stopped by SIGTERM, in-flight work finished",
        },
        _ = term.recv() => second,
        _ = int.recv() => second,
    })
}

/// The log filter without `RUST_LOG`: the config's level, with the h2
/// library's per-connection warnings off (a reset flood would write one
/// line per attacking connection; each such connection is an access record
/// and counts in the metrics instead).
fn default_filter(level: &str) -> String {
    format!("{level},h2=error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
