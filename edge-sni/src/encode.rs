//! Encoding ClientHellos: for tests, fuzz seeds and tools that need a
//! hello with given fields without running a TLS client.

use crate::client_hello::ext;
use crate::record::{CONTENT_TYPE_HANDSHAKE, HANDSHAKE_CLIENT_HELLO, MAX_FRAGMENT_LEN};

/// Builds ClientHello bytes field by field.
///
/// Extensions are written in the order they are added, so tests can place
/// them anywhere. Lengths are not checked against the protocol's maxima:
/// the encoder can produce malformed hellos on purpose.
///
/// ```
/// use edge_sni::{ClientHelloBuilder, parse_client_hello};
/// let bytes = ClientHelloBuilder::tls13().server_name("a.example").encode_records(100);
/// let hello = parse_client_hello(&bytes).unwrap();
/// assert!(hello.records() > 1);
/// assert_eq!(hello.server_name(), Some("a.example"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHelloBuilder {
    /// `legacy_version`.
    pub legacy_version: u16,
    /// `random`.
    pub random: [u8; 32],
    /// `legacy_session_id`.
    pub session_id: Vec<u8>,
    /// `cipher_suites`.
    pub cipher_suites: Vec<u16>,
    /// `legacy_compression_methods`.
    pub compression_methods: Vec<u8>,
    /// Extensions (type, data) in wire order; `None` omits the block.
    pub extensions: Option<Vec<(u16, Vec<u8>)>>,
    /// `legacy_record_version` of the records.
    pub record_version: u16,
}

impl ClientHelloBuilder {
    /// A TLS 1.2 hello: three ECDHE/RSA suites, no extensions.
    pub fn tls12() -> Self {
        Self {
            legacy_version: 0x0303,
            random: [7; 32],
            session_id: Vec::new(),
            cipher_suites: vec![0xc02b, 0xc02f, 0x009c],
            compression_methods: vec![0],
            extensions: None,
            record_version: 0x0301,
        }
    }

    /// A TLS 1.3 hello: the three TLS 1.3 suites, a 32-byte session id and
    /// supported_versions [1.3, 1.2].
    pub fn tls13() -> Self {
        Self {
            session_id: vec![9; 32],
            cipher_suites: vec![0x1301, 0x1302, 0x1303],
            ..Self::tls12()
        }
        .supported_versions(&[0x0304, 0x0303])
    }

    /// Appends an extension with raw data.
    #[must_use]
    pub fn extension(mut self, ext_type: u16, data: Vec<u8>) -> Self {
        self.extensions
            .get_or_insert_with(Vec::new)
            .push((ext_type, data));
        self
    }

    /// Appends a server_name extension with one host_name.
    #[must_use]
    pub fn server_name(self, name: &str) -> Self {
        let mut entry = vec![0u8];
        put_vec16(&mut entry, name.as_bytes());
        let mut data = Vec::new();
        put_vec16(&mut data, &entry);
        self.extension(ext::SERVER_NAME, data)
    }

    /// Appends an ALPN extension.
    #[must_use]
    pub fn alpn(self, protocols: &[&[u8]]) -> Self {
        let mut list = Vec::new();
        for p in protocols {
            list.push(len8(p.len()));
            list.extend_from_slice(p);
        }
        let mut data = Vec::new();
        put_vec16(&mut data, &list);
        self.extension(ext::ALPN, data)
    }

    /// Appends a supported_versions extension.
    #[must_use]
    pub fn supported_versions(self, versions: &[u16]) -> Self {
        let list: Vec<u8> = versions.iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut data = vec![len8(list.len())];
        data.extend_from_slice(&list);
        self.extension(ext::SUPPORTED_VERSIONS, data)
    }

    /// Appends a signature_algorithms extension.
    #[must_use]
    pub fn signature_algorithms(self, algs: &[u16]) -> Self {
        let list: Vec<u8> = algs.iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut data = Vec::new();
        put_vec16(&mut data, &list);
        self.extension(ext::SIGNATURE_ALGORITHMS, data)
    }

    /// The ClientHello body (without handshake header).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.legacy_version.to_be_bytes());
        out.extend_from_slice(&self.random);
        out.push(len8(self.session_id.len()));
        out.extend_from_slice(&self.session_id);
        let suites: Vec<u8> = self
            .cipher_suites
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        put_vec16(&mut out, &suites);
        out.push(len8(self.compression_methods.len()));
        out.extend_from_slice(&self.compression_methods);
        if let Some(exts) = &self.extensions {
            let mut block = Vec::new();
            for (t, data) in exts {
                block.extend_from_slice(&t.to_be_bytes());
                put_vec16(&mut block, data);
            }
            put_vec16(&mut out, &block);
        }
        out
    }

    /// The handshake message: type 1, 24-bit length, body.
    pub fn encode_handshake(&self) -> Vec<u8> {
        let body = self.encode_body();
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes();
        let mut out = vec![HANDSHAKE_CLIENT_HELLO, len[1], len[2], len[3]];
        out.extend_from_slice(&body);
        out
    }

    /// The hello in as few records as allowed (one up to 16 KiB).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_records(MAX_FRAGMENT_LEN)
    }

    /// The hello split into records of at most `fragment_len` bytes.
    ///
    /// # Panics
    /// If `fragment_len` is 0.
    pub fn encode_records(&self, fragment_len: usize) -> Vec<u8> {
        frame_records(&self.encode_handshake(), fragment_len, self.record_version)
    }
}

/// Frames handshake bytes into handshake records of at most `fragment_len`
/// bytes each (re-framing a captured hello, for instance).
///
/// # Panics
/// If `fragment_len` is 0.
pub fn frame_records(handshake: &[u8], fragment_len: usize, record_version: u16) -> Vec<u8> {
    assert!(fragment_len > 0, "records must carry at least one byte");
    let mut out = Vec::with_capacity(handshake.len() + handshake.len() / fragment_len * 5 + 5);
    for chunk in handshake.chunks(fragment_len.min(MAX_FRAGMENT_LEN)) {
        out.push(CONTENT_TYPE_HANDSHAKE);
        out.extend_from_slice(&record_version.to_be_bytes());
        put_vec16(&mut out, chunk);
    }
    out
}

/// A fatal TLS alert record (RFC 8446 §6) with `description`, e.g.
/// [`alert::DECODE_ERROR`], for a server that refuses a ClientHello before
/// any TLS library has seen it: the client learns why instead of seeing a
/// reset.
pub fn fatal_alert(description: u8) -> [u8; 7] {
    // content type 21 (alert), legacy version 3.3, length 2, level 2 (fatal).
    [21, 3, 3, 0, 2, 2, description]
}

/// Alert descriptions (RFC 8446 §6).
pub mod alert {
    /// A message could not be parsed.
    pub const DECODE_ERROR: u8 = 50;
    /// A field was out of range or inconsistent (e.g. a message too large).
    pub const ILLEGAL_PARAMETER: u8 = 47;
}

fn len8(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

fn put_vec16(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(data);
}
