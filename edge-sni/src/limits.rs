//! Bounds on what the parser accepts and buffers.

/// Bounds on what the parser accepts.
///
/// ```
/// let mut limits = edge_sni::Limits::default();
/// assert_eq!(limits.max_client_hello_len, 16 * 1024);
/// limits.max_client_hello_len = 4096;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest ClientHello handshake message accepted, 4-byte header
    /// included. Default 16 KiB, far above the ~1.9 KB of a post-quantum
    /// Chromium hello. A longer one fails with [`Error::TooLarge`](crate::Error).
    ///
    /// Reassembly allocates at most this much; the record headers around it
    /// add at most 5 bytes per record (see [`Limits::max_buffered_len`]).
    pub max_client_hello_len: usize,
}

impl Limits {
    /// The default cap on a ClientHello: 16 KiB.
    pub const DEFAULT_MAX_CLIENT_HELLO_LEN: usize = 16 * 1024;

    /// Sets [`Limits::max_client_hello_len`].
    #[must_use]
    pub fn with_max_client_hello_len(mut self, len: usize) -> Self {
        self.max_client_hello_len = len;
        self
    }

    /// The most stream bytes a complete ClientHello under these limits can
    /// occupy: the message itself plus a 5-byte record header for every
    /// byte in the worst case of one-byte records.
    pub fn max_buffered_len(&self) -> usize {
        self.max_client_hello_len.saturating_mul(6)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_client_hello_len: Self::DEFAULT_MAX_CLIENT_HELLO_LEN,
        }
    }
}
