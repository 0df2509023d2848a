//! `edge admin [-s SOCKET] COMMAND...`: sends one command to a running
//! edge's admin socket and prints the answer.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::command::{self, Command};

/// The socket `edge admin` talks to without `-s`.
pub const DEFAULT_SOCKET: &str = "/run/edge/admin.sock";
/// Largest answer read (a `show servers` of thousands of servers fits).
const MAX_ANSWER: u64 = 16 << 20;

/// Usage of the admin client.
pub const USAGE: &str =
    "edge admin [-s SOCKET] COMMAND...   run an admin command (\"edge admin help\")";

/// Parses `[-s SOCKET] COMMAND...` into the socket and the command line.
pub fn parse_args(args: &[String]) -> Result<(PathBuf, String), String> {
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    let mut it = args.iter().peekable();
    while let Some(a) = it.peek() {
        match a.as_str() {
            "-s" | "--socket" => {
                it.next();
                socket = PathBuf::from(it.next().ok_or("-s needs a socket path")?);
            }
            _ => break,
        }
    }
    let words: Vec<&str> = it.map(String::as_str).collect();
    if words.is_empty() {
        return Err("admin: missing command (try \"edge admin help\")".into());
    }
    Ok((socket, words.join(" ")))
}

/// Sends `line` and returns the answer text. The wait is bounded: 30 s
/// plus the timeout of each drain on the line.
pub fn send(socket: &Path, line: &str) -> std::io::Result<String> {
    // Each drain on the line (`;`-separated commands) may take its timeout.
    let wait = line
        .split(';')
        .filter_map(|c| match command::parse(c.trim()) {
            Ok(Command::Drain { timeout, .. }) => Some(timeout),
            _ => None,
        })
        .fold(Duration::from_secs(30), |w, t| w.saturating_add(t));
    exchange(UnixStream::connect(socket)?, line, wait)
}

/// Sends `line` on a connected socket and reads the answer (`wait` at most).
pub fn exchange(mut s: UnixStream, line: &str, wait: Duration) -> std::io::Result<String> {
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.set_read_timeout(Some(wait))?;
    let sent = s
        .write_all(line.as_bytes())
        .and_then(|()| s.write_all(b"\n"))
        .and_then(|()| s.shutdown(std::net::Shutdown::Write));
    // A busy edge answers ("too many admin connections") and closes before
    // reading: the answer is still there to read, so read it rather than
    // report the broken pipe.
    let mut out = Vec::new();
    let read = (&mut s).take(MAX_ANSWER).read_to_end(&mut out);
    match (sent, read) {
        (_, Ok(_)) if !out.is_empty() => Ok(String::from_utf8_lossy(&out).into_owned()),
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(_)) => Ok(String::new()),
    }
}

/// Runs the client: exit 0 on a successful answer, 1 on an error answer
/// or when edge cannot be reached, 2 on a usage error.
pub fn main(args: &[String]) -> ExitCode {
    let (socket, line) = match parse_args(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("edge: {e}\nusage: {USAGE}");
            return ExitCode::from(2);
        }
    };
    match send(&socket, &line) {
        Ok(answer) if answer.is_empty() || answer.lines().any(|l| l.starts_with("error:")) => {
            if answer.is_empty() {
                eprintln!("edge: no answer from {}", socket.display());
            } else {
                eprint!("{answer}");
            }
            ExitCode::from(1)
        }
        Ok(answer) => {
            print!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "edge: cannot talk to the admin socket {}: {e}",
                socket.display()
            );
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cli_args() {
        assert_eq!(
            parse_args(&args(&["show", "servers"])).unwrap(),
            (PathBuf::from(DEFAULT_SOCKET), "show servers".into())
        );
        assert_eq!(
            parse_args(&args(&["-s", "/tmp/a.sock", "drain", "app", "1.2.3.4:5"])).unwrap(),
            (PathBuf::from("/tmp/a.sock"), "drain app 1.2.3.4:5".into())
        );
        assert!(parse_args(&args(&["-s"])).is_err());
        assert!(parse_args(&args(&["-s", "/x"])).is_err());
        assert!(parse_args(&[]).is_err());
    }
}
