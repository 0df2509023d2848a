//! The ClientHello message (RFC 8446 §4.1.2) and its extensions.
//!
//! ```text
//! struct {
//!     ProtocolVersion legacy_version;               // u16
//!     Random random;                                // 32 bytes
//!     opaque legacy_session_id<0..32>;              // u8 length
//!     CipherSuite cipher_suites<2..2^16-2>;         // u16 length, u16 each
//!     opaque legacy_compression_methods<1..2^8-1>;  // u8 length
//!     Extension extensions<8..2^16-1>;              // u16 length; absent in old hellos
//! } ClientHello;
//! struct { ExtensionType extension_type; opaque extension_data<0..2^16-1>; } Extension;
//! ```

use crate::error::{Error, Field};
use crate::host_name::HostName;
use crate::limits::Limits;
use crate::reader::{Reader, is_grease, u16s};
use crate::record::{HANDSHAKE_CLIENT_HELLO, HANDSHAKE_HEADER_LEN, reassemble_client_hello};
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// Extension types this parser interprets.
pub mod ext {
    /// server_name (RFC 6066).
    pub const SERVER_NAME: u16 = 0x0000;
    /// signature_algorithms (RFC 8446).
    pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
    /// application_layer_protocol_negotiation (RFC 7301).
    pub const ALPN: u16 = 0x0010;
    /// pre_shared_key (RFC 8446).
    pub const PRE_SHARED_KEY: u16 = 0x0029;
    /// supported_versions (RFC 8446).
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
    /// encrypted_client_hello (draft-ietf-tls-esni).
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
}

/// Parses a ClientHello from the start of a TCP stream, with default
/// [`Limits`].
///
/// `input` is whatever the client has sent so far. The answer is the parsed
/// hello, [`Error::NeedMore`] (read more and call again with the longer
/// prefix), [`Error::NotTls`], or a specific malformation. The parse is one
/// pass and allocates nothing when the hello sits in one TLS record (the
/// usual case); a hello split over records is joined into one buffer of at
/// most [`Limits::max_client_hello_len`] bytes.
///
/// ```
/// use edge_sni::{ClientHelloBuilder, Error, parse_client_hello};
/// let bytes = ClientHelloBuilder::tls13().server_name("Example.COM").alpn(&[b"h2", b"http/1.1"]).encode();
/// let hello = parse_client_hello(&bytes).unwrap();
/// assert_eq!(hello.server_name(), Some("example.com"));
/// assert_eq!(hello.alpn().collect::<Vec<_>>(), [&b"h2"[..], b"http/1.1"]);
/// assert!(matches!(parse_client_hello(&bytes[..10]), Err(Error::NeedMore { .. })));
/// assert_eq!(parse_client_hello(b"GET / HTTP/1.1\r\n").unwrap_err(), Error::NotTls);
/// ```
pub fn parse_client_hello(input: &[u8]) -> Result<ClientHello<'_>, Error> {
    parse_client_hello_with(input, &Limits::default())
}

/// [`parse_client_hello`] with explicit [`Limits`].
pub fn parse_client_hello_with<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<ClientHello<'a>, Error> {
    let msg = reassemble_client_hello(input, limits)?;
    ClientHello::parse_body(msg.body, msg.consumed, msg.records)
}

/// A parsed ClientHello. Fields borrow from the parsed bytes (the input, or
/// the reassembly buffer when the hello spanned records).
#[derive(Clone)]
pub struct ClientHello<'a> {
    body: Cow<'a, [u8]>,
    consumed: usize,
    records: usize,
    f: Fields,
}

/// Extension types remembered inline for duplicate detection; hellos with
/// more extensions fall back to a 64 Kib bitmap on the stack.
const INLINE_SEEN: usize = 32;

impl<'a> ClientHello<'a> {
    /// Parses a bare handshake message (4-byte header and body), as carried
    /// outside TLS records, e.g. in QUIC CRYPTO frames.
    pub fn parse_handshake(msg: &'a [u8], limits: &Limits) -> Result<Self, Error> {
        let mut r = Reader::new(msg);
        let msg_type = r.u8().ok_or(Error::NeedMore {
            needed: Some(HANDSHAKE_HEADER_LEN),
        })?;
        if msg_type != HANDSHAKE_CLIENT_HELLO {
            return Err(Error::NotClientHello { msg_type });
        }
        let len = r.u24().ok_or(Error::NeedMore {
            needed: Some(HANDSHAKE_HEADER_LEN - msg.len()),
        })?;
        let total = len.saturating_add(HANDSHAKE_HEADER_LEN);
        if total > limits.max_client_hello_len {
            return Err(Error::TooLarge {
                len: total,
                max: limits.max_client_hello_len,
            });
        }
        let body = r.take(len).ok_or(Error::NeedMore {
            needed: Some(total - msg.len()),
        })?;
        if !r.is_empty() {
            return Err(Error::TrailingBytes {
                field: Field::HandshakeMessage,
                len: r.remaining(),
            });
        }
        Self::parse_body(Cow::Borrowed(body), total, 0)
    }

    fn parse_body(body: Cow<'a, [u8]>, consumed: usize, records: usize) -> Result<Self, Error> {
        let f = Fields::parse(&body)?;
        Ok(Self {
            body,
            consumed,
            records,
            f,
        })
    }

    fn bytes(&self, range: &Range<usize>) -> &[u8] {
        self.body.get(range.clone()).unwrap_or_default()
    }

    /// The SNI host name: validated, lower-cased, without a trailing dot.
    /// `None` when the client sent no server_name extension (or one with
    /// no host_name entry).
    pub fn server_name(&self) -> Option<&str> {
        self.f.server_name.as_ref().map(HostName::as_str)
    }

    /// Whether the server_name was an IP address, which RFC 6066 forbids
    /// but some clients send: it is read as no SNI
    /// ([`server_name`](Self::server_name) is `None`).
    pub fn sni_ip_literal(&self) -> bool {
        self.f.sni_ip_literal
    }

    /// Whether a server_name extension was present at all.
    pub fn has_server_name_extension(&self) -> bool {
        self.f.has_server_name_extension
    }

    /// The ALPN protocol names in the client's order (empty without ALPN).
    pub fn alpn(&self) -> impl Iterator<Item = &[u8]> + Clone + '_ {
        AlpnIter {
            r: Reader::new(self.f.alpn.as_ref().map_or(&[][..], |r| self.bytes(r))),
        }
    }

    /// The supported_versions list as sent, GREASE included (empty when the
    /// extension is absent, as from TLS 1.2-only clients).
    pub fn supported_versions(&self) -> impl Iterator<Item = u16> + Clone + '_ {
        u16s(
            self.f
                .supported_versions
                .as_ref()
                .map_or(&[][..], |r| self.bytes(r)),
        )
    }

    /// Whether the client sent a supported_versions extension.
    pub fn has_supported_versions(&self) -> bool {
        self.f.supported_versions.is_some()
    }

    /// The highest version the client offers: the greatest non-GREASE
    /// supported_versions entry, else `legacy_version`.
    pub fn max_version(&self) -> u16 {
        self.supported_versions()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(self.f.legacy_version)
    }

    /// `legacy_version` (0x0303 from every TLS 1.2/1.3 client).
    pub fn legacy_version(&self) -> u16 {
        self.f.legacy_version
    }

    /// The 32-byte client random.
    pub fn random(&self) -> &[u8] {
        self.bytes(&self.f.random)
    }

    /// `legacy_session_id` (0 to 32 bytes).
    pub fn session_id(&self) -> &[u8] {
        self.bytes(&self.f.session_id)
    }

    /// Cipher suites in the client's order, GREASE included.
    pub fn cipher_suites(&self) -> impl Iterator<Item = u16> + Clone + '_ {
        u16s(self.bytes(&self.f.cipher_suites))
    }

    /// `legacy_compression_methods`.
    pub fn compression_methods(&self) -> &[u8] {
        self.bytes(&self.f.compression_methods)
    }

    /// Each extension's type and data, in the client's order.
    pub fn extensions(&self) -> impl Iterator<Item = (u16, &[u8])> + Clone + '_ {
        ExtensionIter {
            r: Reader::new(self.bytes(&self.f.extensions)),
        }
    }

    /// Extension types in the client's order, GREASE included.
    pub fn extension_types(&self) -> impl Iterator<Item = u16> + Clone + '_ {
        self.extensions().map(|(t, _)| t)
    }

    /// signature_algorithms in the client's order (empty when absent).
    pub fn signature_algorithms(&self) -> impl Iterator<Item = u16> + Clone + '_ {
        u16s(
            self.f
                .signature_algorithms
                .as_ref()
                .map_or(&[][..], |r| self.bytes(r)),
        )
    }

    /// Whether an encrypted_client_hello extension is present (the SNI is
    /// then the ECH public name, not the real destination).
    pub fn has_ech(&self) -> bool {
        self.f.has_ech
    }

    /// Whether a pre_shared_key extension is present (session resumption).
    pub fn has_psk(&self) -> bool {
        self.f.has_psk
    }

    /// Stream bytes from the start of the input through the ClientHello's
    /// last byte.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// TLS records the hello spanned (0 when parsed from a bare handshake
    /// message).
    pub fn records(&self) -> usize {
        self.records
    }

    /// Whether the hello was joined from several records into an owned
    /// buffer.
    pub fn is_reassembled(&self) -> bool {
        matches!(self.body, Cow::Owned(_))
    }

    /// The ClientHello body as parsed (after the handshake header).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Copies the borrowed bytes so the hello outlives its input.
    pub fn into_owned(self) -> ClientHello<'static> {
        ClientHello {
            body: Cow::Owned(self.body.into_owned()),
            ..self
        }
    }
}

impl fmt::Debug for ClientHello<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Hex<'b>(&'b [u8]);
        impl fmt::Debug for Hex<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
        struct List<I>(I);
        impl<I: Iterator + Clone> fmt::Debug for List<I>
        where
            I::Item: fmt::Debug,
        {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.clone()).finish()
            }
        }
        f.debug_struct("ClientHello")
            .field("server_name", &self.server_name())
            .field("alpn", &List(self.alpn().map(String::from_utf8_lossy)))
            .field(
                "legacy_version",
                &format_args!("{:#06x}", self.f.legacy_version),
            )
            .field("supported_versions", &List(self.supported_versions()))
            .field("cipher_suites", &List(self.cipher_suites()))
            .field("extension_types", &List(self.extension_types()))
            .field("session_id", &Hex(self.session_id()))
            .field("has_ech", &self.f.has_ech)
            .field("has_psk", &self.f.has_psk)
            .field("records", &self.records)
            .field("consumed", &self.consumed)
            .finish_non_exhaustive()
    }
}

/// What one pass over the body finds; positions index the body.
#[derive(Clone)]
struct Fields {
    legacy_version: u16,
    random: Range<usize>,
    session_id: Range<usize>,
    cipher_suites: Range<usize>,
    compression_methods: Range<usize>,
    extensions: Range<usize>,
    alpn: Option<Range<usize>>,
    supported_versions: Option<Range<usize>>,
    signature_algorithms: Option<Range<usize>>,
    server_name: Option<HostName>,
    has_server_name_extension: bool,
    sni_ip_literal: bool,
    has_ech: bool,
    has_psk: bool,
}

fn truncated(field: Field) -> Error {
    Error::Truncated { field }
}

/// Reads a `u8`- or `u16`-length-prefixed vector and returns its range.
fn vector(r: &mut Reader<'_>, len_bytes: u8, field: Field) -> Result<Range<usize>, Error> {
    let len = match len_bytes {
        1 => r.u8().map(usize::from),
        _ => r.u16().map(usize::from),
    }
    .ok_or(truncated(field))?;
    r.take_range(len).ok_or(truncated(field))
}

/// Like [`vector`] for a list of 16-bit values: non-empty and even.
fn u16_list(r: &mut Reader<'_>, len_bytes: u8, field: Field) -> Result<Range<usize>, Error> {
    let range = vector(r, len_bytes, field)?;
    if range.is_empty() || range.len() % 2 != 0 {
        return Err(Error::BadLength {
            field,
            len: range.len(),
        });
    }
    Ok(range)
}

fn expect_end(r: &Reader<'_>, field: Field) -> Result<(), Error> {
    match r.remaining() {
        0 => Ok(()),
        len => Err(Error::TrailingBytes { field, len }),
    }
}

impl Fields {
    fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let legacy_version = r.u16().ok_or(truncated(Field::LegacyVersion))?;
        let random = r.take_range(32).ok_or(truncated(Field::Random))?;
        let session_id = vector(&mut r, 1, Field::SessionId)?;
        if session_id.len() > 32 {
            return Err(Error::BadLength {
                field: Field::SessionId,
                len: session_id.len(),
            });
        }
        let cipher_suites = u16_list(&mut r, 2, Field::CipherSuites)?;
        let compression_methods = vector(&mut r, 1, Field::CompressionMethods)?;
        if compression_methods.is_empty() {
            return Err(Error::BadLength {
                field: Field::CompressionMethods,
                len: 0,
            });
        }
        let mut fields = Fields {
            legacy_version,
            random,
            session_id,
            cipher_suites,
            compression_methods,
            extensions: r.position()..r.position(),
            alpn: None,
            supported_versions: None,
            signature_algorithms: None,
            server_name: None,
            has_server_name_extension: false,
            sni_ip_literal: false,
            has_ech: false,
            has_psk: false,
        };
        // Hellos from before RFC 5246 may end here, with no extension block.
        if r.is_empty() {
            return Ok(fields);
        }
        fields.extensions = vector(&mut r, 2, Field::Extensions)?;
        expect_end(&r, Field::HandshakeMessage)?;
        fields.parse_extensions(body)?;
        Ok(fields)
    }

    fn parse_extensions(&mut self, body: &[u8]) -> Result<(), Error> {
        let block = body.get(self.extensions.clone()).unwrap_or_default();
        let base = self.extensions.start;
        let mut r = Reader::new(block);
        let mut seen = [0u16; INLINE_SEEN];
        let mut count = 0usize;
        while !r.is_empty() {
            let ext_type = r.u16().ok_or(truncated(Field::Extensions))?;
            let len = usize::from(r.u16().ok_or(truncated(Field::Extensions))?);
            let data = r
                .take_range(len)
                .ok_or(truncated(Field::Extension(ext_type)))?;
            let data = (data.start + base)..(data.end + base);
            if self.has_psk {
                return Err(Error::PskNotLast);
            }
            if let Some(inline) = seen.get(..count.min(INLINE_SEEN))
                && inline.contains(&ext_type)
            {
                return Err(Error::DuplicateExtension { ext_type });
            }
            if let Some(slot) = seen.get_mut(count) {
                *slot = ext_type;
            }
            count += 1;
            self.parse_extension(ext_type, body, data)?;
        }
        if count > INLINE_SEEN {
            find_duplicate(block)?;
        }
        Ok(())
    }

    fn parse_extension(
        &mut self,
        ext_type: u16,
        body: &[u8],
        data: Range<usize>,
    ) -> Result<(), Error> {
        let field = Field::Extension(ext_type);
        let mut r = Reader::new(body.get(..data.end).unwrap_or_default());
        r.take(data.start).ok_or(truncated(field))?;
        match ext_type {
            ext::SERVER_NAME => {
                self.has_server_name_extension = true;
                let list = vector(&mut r, 2, Field::ServerNameList)?;
                expect_end(&r, field)?;
                if list.is_empty() {
                    return Err(Error::BadLength {
                        field: Field::ServerNameList,
                        len: 0,
                    });
                }
                let mut entries = Reader::new(body.get(list).unwrap_or_default());
                while !entries.is_empty() {
                    let name_type = entries.u8().ok_or(truncated(Field::ServerName))?;
                    let len = usize::from(entries.u16().ok_or(truncated(Field::ServerName))?);
                    let name = entries.take(len).ok_or(truncated(Field::ServerName))?;
                    // Only host_name (0) is defined; others are skipped.
                    if name_type == 0 {
                        if self.server_name.is_some() || self.sni_ip_literal {
                            return Err(Error::DuplicateHostName);
                        }
                        match HostName::parse(name) {
                            Ok(n) => self.server_name = Some(n),
                            // RFC 6066 forbids an address here, but clients
                            // send one (wrk, embedded stacks); servers treat
                            // it as no SNI, and so does this parser.
                            Err(crate::HostNameError::IpLiteral) => self.sni_ip_literal = true,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            ext::ALPN => {
                let list = vector(&mut r, 2, Field::AlpnList)?;
                expect_end(&r, field)?;
                if list.is_empty() {
                    return Err(Error::BadLength {
                        field: Field::AlpnList,
                        len: 0,
                    });
                }
                let mut names = Reader::new(body.get(list.clone()).unwrap_or_default());
                while !names.is_empty() {
                    let len = usize::from(names.u8().ok_or(truncated(Field::AlpnProtocol))?);
                    if len == 0 {
                        return Err(Error::BadLength {
                            field: Field::AlpnProtocol,
                            len,
                        });
                    }
                    names.take(len).ok_or(truncated(Field::AlpnProtocol))?;
                }
                self.alpn = Some(list);
            }
            ext::SUPPORTED_VERSIONS => {
                self.supported_versions = Some(u16_list(&mut r, 1, Field::SupportedVersions)?);
                expect_end(&r, field)?;
            }
            ext::SIGNATURE_ALGORITHMS => {
                self.signature_algorithms = Some(u16_list(&mut r, 2, Field::SignatureAlgorithms)?);
                expect_end(&r, field)?;
            }
            ext::ENCRYPTED_CLIENT_HELLO => self.has_ech = true,
            ext::PRE_SHARED_KEY => self.has_psk = true,
            _ => {}
        }
        Ok(())
    }
}

/// Duplicate check for hellos with many extensions: a 65536-bit map.
fn find_duplicate(block: &[u8]) -> Result<(), Error> {
    let mut bits = [0u64; 1024];
    for (ext_type, _) in (ExtensionIter {
        r: Reader::new(block),
    }) {
        let Some(word) = bits.get_mut(usize::from(ext_type >> 6)) else {
            continue;
        };
        let bit = 1u64 << (ext_type & 63);
        if *word & bit != 0 {
            return Err(Error::DuplicateExtension { ext_type });
        }
        *word |= bit;
    }
    Ok(())
}

/// Iterates a validated extension block; stops at the first short read.
#[derive(Clone)]
struct ExtensionIter<'b> {
    r: Reader<'b>,
}

impl<'b> Iterator for ExtensionIter<'b> {
    type Item = (u16, &'b [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let ext_type = self.r.u16()?;
        let len = self.r.u16()?;
        Some((ext_type, self.r.take(usize::from(len))?))
    }
}

/// Iterates a validated ALPN protocol_name_list.
#[derive(Clone)]
struct AlpnIter<'b> {
    r: Reader<'b>,
}

impl<'b> Iterator for AlpnIter<'b> {
    type Item = &'b [u8];
    fn next(&mut self) -> Option<Self::Item> {
        let len = self.r.u8()?;
        self.r.take(usize::from(len))
    }
}
