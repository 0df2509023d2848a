//! Loopback ports for tests outside the lab.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Never the same port twice in one test process: tests running in
/// parallel threads each start servers on the ports they were given, and
/// the kernel may hand a just-closed port out again.
pub fn free_port() -> u16 {
    unique_port(|| TcpListener::bind("127.0.0.1:0")?.local_addr())
}

/// A port the kernel picks through `bind`, never one handed out before.
fn unique_port(bind: impl Fn() -> std::io::Result<SocketAddr>) -> u16 {
    loop {
        let port = bind().unwrap().port();
        if first_time(port) {
            return port;
        }
    }
}

/// Whether `port` was not handed out before by this process.
fn first_time(port: u16) -> bool {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if given.contains(&port) {
        return false;
    }
    given.push(port);
    true
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    unique_port(|| UdpSocket::bind("127.0.0.1:0")?.local_addr())
}

/// Waits until 127.0.0.1:`port` accepts a connection; false after
/// `timeout`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// 127.0.0.1:`port`.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_bindable_and_waited_for() {
        let port = free_port();
        assert!(!wait_port(port, Duration::from_millis(100)));
        let l = TcpListener::bind(addr(port)).unwrap();
        assert!(wait_port(port, Duration::from_secs(5)));
        drop(l);
        let u = free_udp_port();
        UdpSocket::bind(("127.0.0.1", u)).unwrap();
    }

    #[test]
    fn ports_are_never_handed_out_twice() {
        let mut ports: Vec<u16> = (0..500).map(|_| free_port()).collect();
        ports.extend((0..100).map(|_| free_udp_port()));
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), n);
    }
}
