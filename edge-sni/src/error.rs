//! The parser's error type: one variant per way a stream prefix can fail.

use std::fmt;

/// Why [`parse_client_hello`](crate::parse_client_hello) did not return a
/// ClientHello.
///
/// [`Error::NeedMore`] is not a failure: the prefix is a valid start of a
/// ClientHello and the caller should read more bytes and try again.
/// [`Error::NotTls`] means the stream is something else (plain HTTP, SSH, …)
/// and may be routed elsewhere. Every other variant is a malformed or
/// unacceptable TLS stream and names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The prefix is valid so far but incomplete. `needed` is the least
    /// number of further bytes that can make progress (exact when a record
    /// header says how long the record is).
    #[error("incomplete ClientHello: need {} more bytes", needed.map_or_else(|| "some".to_owned(), |n| n.to_string()))]
    NeedMore {
        /// Bytes still missing, when known.
        needed: Option<usize>,
    },
    /// The stream does not start with a TLS handshake record.
    #[error("not TLS: the stream does not start with a TLS handshake record")]
    NotTls,
    /// An SSLv2-compatible ClientHello (RFC 5246 appendix E.2), which no
    /// TLS 1.2+ server accepts.
    #[error("SSLv2-style ClientHello is not supported")]
    SslV2ClientHello,
    /// A TLS record of another content type (alert, change_cipher_spec,
    /// application data, heartbeat) where a handshake record was required.
    #[error("TLS record of content type {content_type} where a handshake record (22) was required")]
    UnexpectedContentType {
        /// The record's content type.
        content_type: u8,
    },
    /// A later handshake record carried a version that is not 3.x.
    #[error("TLS record version {version:#06x} is not 3.x")]
    BadRecordVersion {
        /// The record's legacy_record_version.
        version: u16,
    },
    /// A zero-length handshake record (RFC 8446 §5.1 forbids them).
    #[error("zero-length TLS handshake record")]
    EmptyRecord,
    /// A record longer than 2^14 bytes (RFC 8446 §5.1).
    #[error("TLS record of {len} bytes exceeds the 16384-byte maximum")]
    RecordOverflow {
        /// The record length from its header.
        len: usize,
    },
    /// The first handshake message is not a ClientHello.
    #[error("first handshake message has type {msg_type}, not ClientHello (1)")]
    NotClientHello {
        /// The handshake message type.
        msg_type: u8,
    },
    /// The ClientHello is longer than [`Limits::max_client_hello_len`](crate::Limits).
    #[error("ClientHello of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The handshake message length (header included).
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A length prefix runs past the end of the structure that encloses it.
    #[error("{field}: length runs past the end of the enclosing structure")]
    Truncated {
        /// The field whose length was wrong.
        field: Field,
    },
    /// Bytes left over after a structure that must be consumed exactly.
    #[error("{field}: {len} unexpected trailing bytes")]
    TrailingBytes {
        /// The structure with bytes left over.
        field: Field,
        /// How many bytes were left.
        len: usize,
    },
    /// A length that the protocol does not allow (zero where a value is
    /// required, odd for a list of 16-bit values, over a maximum).
    #[error("{field}: invalid length {len}")]
    BadLength {
        /// The field whose length was invalid.
        field: Field,
        /// The length found.
        len: usize,
    },
    /// The same extension type appears twice (RFC 8446 §4.2).
    #[error("duplicate extension {ext_type:#06x}")]
    DuplicateExtension {
        /// The repeated extension type.
        ext_type: u16,
    },
    /// The server_name extension lists more than one host_name (RFC 6066 §3).
    #[error("server_name extension lists more than one host_name")]
    DuplicateHostName,
    /// pre_shared_key is not the last extension (RFC 8446 §4.2.11).
    #[error("pre_shared_key is not the last extension")]
    PskNotLast,
    /// The SNI host name is not an acceptable DNS name.
    #[error("invalid SNI host name: {0}")]
    InvalidServerName(#[from] HostNameError),
}

/// Why an SNI host name was rejected (RFC 6066 §3, RFC 1123 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostNameError {
    /// The name is empty (or only a dot).
    #[error("empty host name")]
    Empty,
    /// Longer than 253 bytes without the trailing dot.
    #[error("host name of {len} bytes is longer than 253")]
    TooLong {
        /// The name's length.
        len: usize,
    },
    /// A byte that is not a letter, digit, hyphen, underscore or dot.
    #[error("byte {byte:#04x} at offset {offset} is not allowed in a host name")]
    InvalidByte {
        /// The offending byte.
        byte: u8,
        /// Its offset in the name.
        offset: usize,
    },
    /// An empty label (`a..b`, a leading dot).
    #[error("empty label")]
    EmptyLabel,
    /// A label longer than 63 bytes.
    #[error("label of {len} bytes is longer than 63")]
    LabelTooLong {
        /// The label's length.
        len: usize,
    },
    /// A label that starts or ends with a hyphen.
    #[error("label starts or ends with a hyphen")]
    HyphenAtLabelEdge,
    /// An IPv4 or IPv6 literal, which RFC 6066 does not allow in SNI.
    #[error("an IP address is not a host name (RFC 6066 allows none in SNI)")]
    IpLiteral,
    /// The last label is all digits, which no DNS name has (RFC 3696 §2).
    #[error("all-numeric top-level label")]
    NumericTopLevel,
}

/// Why a host-name pattern (`www.example.com`, `*.example.com`) was
/// rejected; see [`HostPattern`](crate::HostPattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostPatternError {
    /// The name (of a wildcard: the part after `*.`) is not a host name.
    #[error(transparent)]
    Name(#[from] HostNameError),
    /// A `*` anywhere but as the whole left-most label.
    #[error("'*' is only allowed as the whole left-most label, as in \"*.example.com\"")]
    Wildcard,
}

/// A field of the TLS record or ClientHello, named in [`Error`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// The handshake message as a whole.
    HandshakeMessage,
    /// `legacy_version`.
    LegacyVersion,
    /// `random`.
    Random,
    /// `legacy_session_id`.
    SessionId,
    /// `cipher_suites`.
    CipherSuites,
    /// `legacy_compression_methods`.
    CompressionMethods,
    /// The extension block.
    Extensions,
    /// The data of one extension, by type.
    Extension(u16),
    /// The `server_name` list (RFC 6066).
    ServerNameList,
    /// One `server_name` entry.
    ServerName,
    /// The ALPN `protocol_name_list` (RFC 7301).
    AlpnList,
    /// One ALPN protocol name.
    AlpnProtocol,
    /// The `supported_versions` list.
    SupportedVersions,
    /// The `signature_algorithms` list.
    SignatureAlgorithms,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::HandshakeMessage => f.write_str("handshake message"),
            Field::LegacyVersion => f.write_str("legacy_version"),
            Field::Random => f.write_str("random"),
            Field::SessionId => f.write_str("legacy_session_id"),
            Field::CipherSuites => f.write_str("cipher_suites"),
            Field::CompressionMethods => f.write_str("legacy_compression_methods"),
            Field::Extensions => f.write_str("extensions"),
            Field::Extension(t) => write!(f, "extension {t:#06x}"),
            Field::ServerNameList => f.write_str("server_name list"),
            Field::ServerName => f.write_str("server_name entry"),
            Field::AlpnList => f.write_str("ALPN protocol_name_list"),
            Field::AlpnProtocol => f.write_str("ALPN protocol name"),
            Field::SupportedVersions => f.write_str("supported_versions"),
            Field::SignatureAlgorithms => f.write_str("signature_algorithms"),
        }
    }
}
