//! `vrrp`: run one VRRP instance from flags (what the edge-vrrp lab tests
//! and the failover benchmark drive).
//!
//! ```text
//! vrrp --interface eth0 --vrid 51 --priority 150 --advert-interval 0.1 \
//!      --vip 198.18.0.100/24 [--vip ...] [--version 2|3] \
//!      [--unicast-src ADDR --unicast-peer ADDR ...] [--nopreempt] \
//!      [--preempt-delay SECS] [--two-node] [--garp-delay SECS] \
//!      [--garp-repeat N] [--garp-refresh SECS] [--vmac] [--checksum-message-only] \
//!      [--auth-pass PASSWORD]
//! ```
//!
//! Prints one JSON line per state change on stdout, e.g.
//! `{"state":"master","from":"backup","reason":"master-down","vrid":51,...}`;
//! logs go to stderr (`RUST_LOG`). SIGTERM or SIGINT hands over with a
//! priority-0 advertisement, removes the addresses and exits. SIGUSR1
//! forces Fault (as a failed health check would), SIGUSR2 clears it.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_vrrp::{ChecksumMode, Config, Instance, Version};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: vrrp --interface IF --vrid N --priority N --vip CIDR [--vip CIDR ...] \
[--advert-interval SECS] [--version 2|3] [--unicast-src ADDR] [--unicast-peer ADDR ...] [--nopreempt] \
[--preempt-delay SECS] [--two-node] [--garp-delay SECS] [--garp-repeat N] [--garp-refresh SECS] [--vmac] \
[--checksum-message-only] [--auth-pass PASSWORD]";

fn parse_args(args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut config = Config::default();
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let secs = |name: &str, v: String| -> Result<Duration, String> {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{name}: `{v}` is not a number of seconds"))
        };
        let num = |name: &str, v: String| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--interface" => {
                config.interface(value("--interface")?);
            }
            "--vrid" => {
                let v = num("--vrid", value("--vrid")?)?;
                config.vrid(u8::try_from(v).map_err(|_| format!("--vrid: {v} is not 1-255"))?);
            }
            "--priority" => {
                let v = num("--priority", value("--priority")?)?;
                config.priority(
                    u8::try_from(v).map_err(|_| format!("--priority: {v} is not 1-255"))?,
                );
            }
            "--advert-interval" => {
                // Round to whole centiseconds (the wire unit of VRRPv3).
                let d = secs("--advert-interval", value("--advert-interval")?)?;
                let cs = (d.as_secs_f64() * 100.0).round() as u64;
                config.advert_interval(Duration::from_millis(cs * 10));
            }
            "--vip" => {
                config.virtual_address(value("--vip")?.parse().map_err(|e| format!("--vip: {e}"))?);
            }
            "--version" => match value("--version")?.as_str() {
                "2" => {
                    config.version(Version::V2);
                }
                "3" => {
                    config.version(Version::V3);
                }
                other => return Err(format!("--version: `{other}` is not 2 or 3")),
            },
            "--unicast-src" => {
                let v = value("--unicast-src")?;
                config.unicast_source(
                    v.parse()
                        .map_err(|_| format!("--unicast-src: `{v}` is not an address"))?,
                );
            }
            "--unicast-peer" => {
                let v = value("--unicast-peer")?;
                config.unicast_peer(
                    v.parse()
                        .map_err(|_| format!("--unicast-peer: `{v}` is not an address"))?,
                );
            }
            "--nopreempt" => {
                config.preempt(false);
            }
            "--preempt-delay" => {
                config.preempt_delay(secs("--preempt-delay", value("--preempt-delay")?)?);
            }
            "--two-node" => {
                config.two_node(true);
            }
            "--garp-delay" => {
                config.garp_delay(secs("--garp-delay", value("--garp-delay")?)?);
            }
            "--garp-repeat" => {
                let v = num("--garp-repeat", value("--garp-repeat")?)?;
                config.garp_repeat(
                    u32::try_from(v).map_err(|_| "--garp-repeat: too large".to_string())?,
                );
            }
            "--garp-refresh" => {
                config.garp_refresh(Some(secs("--garp-refresh", value("--garp-refresh")?)?));
            }
            "--vmac" => {
                config.use_vmac(true);
            }
            "--auth-pass" => {
                config.auth_password(value("--auth-pass")?);
            }
            "--checksum-message-only" => {
                config.checksum_mode(ChecksumMode::MessageOnly);
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown flag `{other}`\n{USAGE}")),
        }
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vrrp: {e}");
            return ExitCode::from(2);
        }
    };
    let (vrid, interface) = (config.vrid_value(), config.interface_name().to_owned());
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("vrrp: cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let (mut usr1, mut usr2) = match (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            eprintln!("vrrp: cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let handle = match Instance::spawn(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vrrp: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut events = handle.events();
    let print = move |e: &edge_vrrp::Event| {
        println!(
            "{}",
            serde_json::json!({
                "state": e.to.as_str(),
                "from": e.from.as_str(),
                "reason": e.reason.as_str(),
                "vrid": vrid,
                "priority": e.priority,
                "interface": interface,
                "unix_ms": unix_ms() as u64,
            })
        );
    };
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(e) => print(&e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
            _ = usr1.recv() => handle.set_fault(true),
            _ = usr2.recv() => handle.set_fault(false),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let result = handle.shutdown().await;
    // Report the transitions the shutdown itself made.
    while let Ok(e) = events.try_recv() {
        print(&e);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vrrp: {e}");
            ExitCode::FAILURE
        }
    }
}
