//! Request-smuggling guard for HTTP/1: watches the bytes an HTTP server
//! (hyper) reads from a client and follows request framing (heads,
//! Content-Length bodies, chunked bodies) so it can flag a request that
//! carries both `Content-Length` and `Transfer-Encoding`. hyper alone would
//! let Transfer-Encoding win; a proxy should answer such a request 400 and
//! close (RFC 9112 §6.3), which [`Flags::is_flagged`] lets the request
//! service do. Feed it from a [`Meter`](crate::meter::Meter) on the client
//! stream.
//!
//! The scanner is a byte-at-a-time state machine with no allocation beyond
//! the current head (capped); on anything it does not understand it stops
//! watching and leaves the verdict to hyper's parser.

use std::sync::atomic::{AtomicUsize, Ordering};

/// What the scanner found on one connection, shared with the request
/// service: the first request that had both `Content-Length` and
/// `Transfer-Encoding`.
#[derive(Debug, Default)]
pub struct Flags {
    /// 1 + index of the first request with CL+TE; 0 = none.
    flagged: AtomicUsize,
}

impl Flags {
    /// Marks request number `seq` (0-based) as having both CL and TE; only
    /// the first such request is kept.
    pub fn flag(&self, seq: usize) {
        let _ = self.flagged.compare_exchange(
            0,
            seq.wrapping_add(1),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// The first request (0-based) that had both CL and TE, if any.
    pub fn first_flagged(&self) -> Option<usize> {
        self.flagged.load(Ordering::Acquire).checked_sub(1)
    }

    /// Whether request number `seq` (0-based) had both CL and TE.
    pub fn is_flagged(&self, seq: usize) -> bool {
        self.flagged.load(Ordering::Acquire) == seq.wrapping_add(1)
    }
}

#[derive(Debug)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize {
        size: u64,
        digits: u32,
        in_ext: bool,
    },
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailers,
    Stop,
}

/// The framing scanner of one client stream.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    /// The part of a head (or trailer line) that arrived in earlier reads;
    /// a head that arrives in one read is parsed in place, never copied.
    head: Vec<u8>,
    /// The current head line so far: 0 = empty, 1 = just `\r`, 2 = text.
    line: u8,
    max_head: usize,
    seq: usize,
}

impl Scanner {
    /// A scanner that gives up on a head longer than `max_head` bytes.
    pub fn new(max_head: usize) -> Self {
        Self {
            state: State::Head,
            head: Vec::new(),
            line: 0,
            max_head,
            seq: 0,
        }
    }

    /// The length of the head's part in `data` if the head ends there (the
    /// line feed that ends an empty line), following `self.line`.
    fn head_end(&mut self, data: &[u8]) -> Option<usize> {
        for (i, &b) in data.iter().enumerate() {
            match b {
                b'\n' if self.line < 2 => {
                    self.line = 0;
                    return Some(i + 1);
                }
                b'\n' => self.line = 0,
                b'\r' if self.line == 0 => self.line = 1,
                _ => self.line = 2,
            }
        }
        None
    }

    /// Whether it gave up watching (CL+TE, an upgrade, `CONNECT`, an
    /// oversized head or framing it does not understand): then the stream
    /// needs no more feeding.
    pub fn stopped(&self) -> bool {
        matches!(self.state, State::Stop)
    }

    /// The next bytes read from the client; a request with both CL and TE
    /// is marked in `flags`.
    pub fn feed(&mut self, mut data: &[u8], flags: &Flags) {
        while !data.is_empty() {
            match &mut self.state {
                State::Stop => return,
                State::Head => {
                    if self.head.is_empty() {
                        // Empty lines before a request line are ignored (RFC 9112 §2.2).
                        let skip = data
                            .iter()
                            .position(|&b| b != b'\r' && b != b'\n')
                            .unwrap_or(data.len());
                        data = data.get(skip..).unwrap_or_default();
                        if data.is_empty() {
                            return;
                        }
                        self.line = 0;
                    }
                    let Some(end) = self.head_end(data) else {
                        if self.head.len() + data.len() > self.max_head {
                            self.state = State::Stop;
                        } else {
                            self.head.extend_from_slice(data);
                        }
                        return;
                    };
                    let (part, rest) = data.split_at(end);
                    data = rest;
                    if self.head.len() + part.len() > self.max_head + 4 {
                        self.state = State::Stop;
                    } else if self.head.is_empty() {
                        self.state = end_of_head(part, self.seq, flags);
                    } else {
                        self.head.extend_from_slice(part);
                        self.state = end_of_head(&self.head, self.seq, flags);
                        self.head.clear();
                    }
                    self.seq += 1;
                }
                State::Fixed(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    // take <= data.len(), so the cast is exact.
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkSize {
                    size,
                    digits,
                    in_ext,
                } => {
                    let b = data[0];
                    data = &data[1..];
                    match b {
                        b'\n' => {
                            self.state = if *size == 0 {
                                State::Trailers
                            } else {
                                State::ChunkData(*size)
                            };
                        }
                        b'\r' => {}
                        _ if *in_ext => {}
                        b';' | b' ' | b'\t' => *in_ext = true,
                        _ => match (b as char).to_digit(16) {
                            Some(d) if *digits < 15 => {
                                *size = *size * 16 + u64::from(d);
                                *digits += 1;
                            }
                            _ => self.state = State::Stop,
                        },
                    }
                }
                State::ChunkData(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::ChunkDataEnd(0);
                    }
                }
                State::ChunkDataEnd(seen) => {
                    let b = data[0];
                    data = &data[1..];
                    if b == b'\n' {
                        self.state = State::ChunkSize {
                            size: 0,
                            digits: 0,
                            in_ext: false,
                        };
                    } else if b == b'\r' && *seen == 0 {
                        *seen = 1;
                    } else {
                        self.state = State::Stop;
                    }
                }
                State::Trailers => {
                    let b = data[0];
                    data = &data[1..];
                    self.head.push(b);
                    if self.head == b"\r\n" || self.head == b"\n" {
                        self.head.clear();
                        self.state = State::Head;
                    } else if b == b'\n' {
                        self.head.clear();
                    } else if self.head.len() > self.max_head {
                        self.state = State::Stop;
                    }
                }
            }
        }
    }
}

/// What [`scan`] saw in a client byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Index (0-based) of the first request carrying both `Content-Length`
    /// and `Transfer-Encoding`, the one to answer 400.
    pub flagged: Option<usize>,
    /// Request heads seen complete.
    pub requests: usize,
    /// Whether the scanner gave up watching (CL+TE, an upgrade, `CONNECT`,
    /// an oversized head or framing it does not understand).
    pub stopped: bool,
}

/// The scanner on its own, without I/O (tests, fuzzing):
/// feeds `reads` in order, as successive reads of one client stream, to a
/// fresh scanner capping heads at `max_head` bytes.
pub fn scan<'a>(reads: impl IntoIterator<Item = &'a [u8]>, max_head: usize) -> Verdict {
    let flags = Flags::default();
    let mut s = Scanner::new(max_head);
    for data in reads {
        s.feed(data, &flags);
    }
    Verdict {
        flagged: flags.first_flagged(),
        requests: s.seq,
        stopped: matches!(s.state, State::Stop),
    }
}

/// What follows a complete request head (`seq`: its index on the connection).
fn end_of_head(head: &[u8], seq: usize, flags: &Flags) -> State {
    let Ok(text) = std::str::from_utf8(head) else {
        return State::Stop;
    };
    let mut lines = text.split('\n');
    let request_line = lines.next().unwrap_or("");
    if request_line.starts_with("CONNECT ") || request_line.starts_with("PRI ") {
        return State::Stop;
    }
    let mut cl: Option<u64> = None;
    let mut te = false;
    let mut upgrade = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<u64>() {
                Ok(n) => cl = Some(n),
                Err(_) => return State::Stop,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if te && cl.is_some() {
        flags.flag(seq);
        // hyper closes the connection after this request.
        return State::Stop;
    }
    if upgrade {
        return State::Stop;
    }
    if te {
        State::ChunkSize {
            size: 0,
            digits: 0,
            in_ext: false,
        }
    } else {
        match cl {
            Some(n) if n > 0 => State::Fixed(n),
            _ => State::Head,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> (Scanner, Flags) {
        let flags = Flags::default();
        let mut s = Scanner::new(8192);
        for c in chunks {
            s.feed(c, &flags);
        }
        (s, flags)
    }

    #[test]
    fn flags_cl_te_on_the_right_request() {
        let (_, f) = scan(&[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel",
            b"lo",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]);
        assert!(!f.is_flagged(0) && !f.is_flagged(1) && !f.is_flagged(2));
        assert!(f.is_flagged(3));
    }

    #[test]
    fn byte_by_byte_is_the_same() {
        let msg = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\r\ncontent-length: 0\r\nTRANSFER-ENCODING: chunked\r\n\r\n";
        let flags = Flags::default();
        let mut s = Scanner::new(8192);
        for b in msg.iter() {
            s.feed(std::slice::from_ref(b), &flags);
        }
        assert!(flags.is_flagged(1));
    }

    #[test]
    fn heads_split_anywhere_and_blank_lines_between_requests() {
        let msg: &[u8] = b"\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\r\n\r\nGET / HTTP/1.1\nContent-Length: 1\nTransfer-Encoding: chunked\n\n";
        for cut in 0..msg.len() {
            let (s, f) = scan(&[&msg[..cut], &msg[cut..]]);
            assert!(!f.is_flagged(0), "cut at {cut}");
            assert!(f.is_flagged(1), "cut at {cut}");
            assert!(matches!(s.state, State::Stop));
        }
        // A head that arrives whole is parsed without buffering a copy.
        let (s, _) = scan(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert_eq!(s.head.capacity(), 0);
        assert_eq!(s.seq, 1);
    }

    #[test]
    fn scan_is_the_scanner_on_its_own() {
        let msg: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let whole = super::scan([msg], 8192);
        assert_eq!(
            whole,
            Verdict {
                flagged: Some(1),
                requests: 2,
                stopped: true
            }
        );
        assert_eq!(super::scan(msg.chunks(1), 8192), whole);
        let chunked: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let v = super::scan(chunked.chunks(5), 8192);
        assert_eq!((v.flagged, v.requests, v.stopped), (None, 2, false));
        assert_eq!(super::scan([], 8192).requests, 0);
    }

    #[test]
    fn stops_on_oversized_head_and_garbage() {
        let (s, f) = scan(&[&[b'a'; 9000]]);
        assert!(matches!(s.state, State::Stop));
        assert!(!f.is_flagged(0));
        let (s, _) = scan(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]);
        assert!(matches!(s.state, State::Stop));
    }
}
