//! `edge`: the HA edge proxy binary.
//!
//! ```text
//! edge run   -c edge.toml    run the proxy
//! edge check -c edge.toml    validate the config as a run would, then exit
//! edge --version
//! ```
//!
//! Exit status (as `nginx -t` / `haproxy -c`): 0 success, 1 invalid config
//! or a failure at start, 2 usage error.

use edge_bin::{config, demo, management, server, state, telemetry, vrrp};

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use arc_swap::ArcSwap;

const USAGE: &str = "usage:
  edge run -c FILE      run the proxy with config FILE
  edge check -c FILE    validate FILE (everything a run would check) and exit
  edge --version        print the version

exit status: 0 ok, 1 invalid config or start failure, 2 usage error";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Version,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter();
    let cmd = it.next().ok_or("missing command")?;
    match cmd.as_str() {
        "--version" | "-V" | "version" => return Ok(Command::Version),
        "--help" | "-h" | "help" => return Ok(Command::Help),
        "run" | "check" => {}
        other => return Err(format!("unknown command {other:?}")),
    }
    let mut file = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => file = Some(PathBuf::from(it.next().ok_or("-c needs a file")?)),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let file = file.ok_or("missing -c FILE")?;
    Ok(if cmd == "run" {
        Command::Run(file)
    } else {
        Command::Check(file)
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edge: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        Command::Version => {
            println!("edge {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Check(path) => match config::load(&path) {
            Ok(_) => {
                println!(
                    "edge: the configuration file {} syntax is ok",
                    path.display()
                );
                println!(
                    "edge: configuration file {} test is successful",
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("edge: configuration file {} test failed", path.display());
                ExitCode::from(1)
            }
        },
        Command::Run(path) => run(&path),
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let v = match config::load(path) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&v.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if v.worker_threads > 0 {
        rt.worker_threads(v.worker_threads);
    }
    let rt = match rt.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edge: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(serve(v)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("edge: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(v: config::Validated) -> Result<(), String> {
    demo::start_all(&v.demo_backends)
        .await
        .map_err(|e| format!("cannot start a demo backend: {e}"))?;
    // Process-wide: metrics and access-log sinks survive reloads.
    let telemetry = telemetry::Telemetry::new();
    let state = state::State::build(&v, &telemetry).map_err(|e| e.to_string())?;
    let health = state.health.clone();
    let shared: state::SharedState = Arc::new(ArcSwap::from_pointee(state));
    telemetry.reopen_on_sigusr1();
    if let Some(m) = &v.management {
        let l = management::bind(m)
            .await
            .map_err(|e| format!("cannot listen on {} (management): {e}", m.listen))?;
        let bound = l.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(address = %bound, kind = "management", "listening");
        management::spawn(l, telemetry.metrics.clone(), shared.clone());
    }
    let conns = Arc::new(tokio::sync::Semaphore::new(v.limits.max_connections));
    for (addrs, tls) in [(&v.https.listen, true), (&v.http.listen, false)] {
        for a in addrs {
            let l = server::bind(*a).map_err(|e| format!("cannot listen on {a}: {e}"))?;
            let bound = l.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(address = %bound, kind = if tls { "https" } else { "http" }, "listening");
            tokio::spawn(server::accept_loop(l, shared.clone(), conns.clone(), tls));
        }
    }
    // After the listeners: a node that becomes master serves at once.
    let vrrp = vrrp::start(&v.vrrp, &health, &telemetry.metrics).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    // Hand the VIPs over first (priority-0 advert), then stop serving.
    // Bounded, so a wedged instance cannot keep edge from exiting.
    if tokio::time::timeout(std::time::Duration::from_secs(5), vrrp.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("VRRP handover did not finish within 5 s");
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
