//! A TLS ClientHello parser fit to sit on port 443, with a tokio adapter,
//! an SNI router and the passthrough relay.
//!
//! # Design
//!
//! The core, [`parse_client_hello`], does no I/O: given any prefix of a TCP
//! stream it answers with the parsed [`ClientHello`], [`Error::NeedMore`]
//! (with how many bytes, where the record header says), [`Error::NotTls`],
//! or an [`Error`] naming the malformed field. It joins a hello split over
//! several TLS records, bounds what it buffers with [`Limits`] (16 KiB by
//! default), never panics on input, and allocates nothing when the hello
//! sits in one record. Fields borrow from the input: SNI (validated and
//! lower-cased per RFC 6066), ALPN, supported_versions, legacy version,
//! cipher suites, extension types, ECH and PSK presence, and the
//! [`Ja4`] fingerprint.
//!
//! The [`io`] module reads a hello from a tokio stream with a timeout and
//! returns a [`Replay`] stream that yields the bytes already read, to
//! splice to a backend or hand to a rustls acceptor. The [`service`] module
//! wraps that as tower services, and [`SniRouter`] chooses a route by
//! exact name, `*.` wildcard, default, or "no SNI". For a passed-through
//! connection, [`relay`] then joins the client and the backend socket with
//! `splice(2)` (and [`relay_io`] any two streams), with one idle timer and
//! the byte counts each way. [`proxy_protocol`] reads the PROXY v1/v2
//! header a load balancer in front may send before the ClientHello, and
//! writes the v2 header a passthrough backend may expect.
//!
//! # Example
//!
//! ```
//! use edge_sni::{ClientHelloBuilder, Error, parse_client_hello};
//!
//! let stream = ClientHelloBuilder::tls13()
//!     .server_name("WWW.Example.com")
//!     .alpn(&[b"h2", b"http/1.1"])
//!     .encode();
//! // Any prefix asks for more; the whole hello parses.
//! assert!(matches!(parse_client_hello(&stream[..20]), Err(Error::NeedMore { .. })));
//! let hello = parse_client_hello(&stream).unwrap();
//! assert_eq!(hello.server_name(), Some("www.example.com"));
//! assert_eq!(hello.alpn().next(), Some(&b"h2"[..]));
//! assert_eq!(hello.max_version(), 0x0304);
//! assert!(hello.ja4().to_string().starts_with("t13d0303h2_"));
//! ```

mod client_hello;
mod encode;
mod error;
pub mod h1guard;
mod host_name;
pub mod io;
mod ja4;
mod limits;
pub mod meter;
pub mod proxy_protocol;
mod reader;
mod record;
mod router;
pub mod service;
#[cfg(feature = "tickets")]
pub mod tickets;

pub use client_hello::{ClientHello, ext, parse_client_hello, parse_client_hello_with};
pub use encode::{ClientHelloBuilder, alert, fatal_alert, frame_records};
pub use error::{Error, Field, HostNameError, HostPatternError};
pub use host_name::{HostName, HostPattern, MAX_HOST_NAME_LEN, wildcard_parent};
pub use io::{
    ClientHelloInfo, ReadError, ReadOptions, RelayEnd, RelayStats, Replay, read_client_hello,
    relay, relay_io,
};
pub use ja4::{Ja4, Ja4Raw};
pub use limits::Limits;
pub use record::{HandshakeMessage, MAX_FRAGMENT_LEN, reassemble_client_hello};
pub use router::{PatternError, SniRouter};
pub use service::{
    ReadClientHello, ReadClientHelloError, ReadClientHelloLayer, RouteBySni, RouteError,
    TlsConnection,
};
