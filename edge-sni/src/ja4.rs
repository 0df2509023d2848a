//! The JA4 TLS client fingerprint (FoxIO), computed from a parsed hello.
//!
//! `t13d1516h2_8daaf6152771_e5627efa2ab1`: transport, version, SNI or not,
//! cipher and extension counts, ALPN first/last character; then a truncated
//! SHA-256 of the sorted cipher list; then one of the sorted extension list
//! (without SNI and ALPN) followed by the signature algorithms in order.
//! GREASE values are ignored everywhere.

use crate::client_hello::{ClientHello, ext};
use crate::reader::is_grease;
use sha2::{Digest, Sha256};
use std::fmt;

/// A JA4 fingerprint; `Display` gives the usual
/// `t13d1516h2_8daaf6152771_e5627efa2ab1` form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ja4 {
    a: [u8; 10],
    b: [u8; 12],
    c: [u8; 12],
}

const EMPTY_HASH: [u8; 12] = *b"000000000000";
const HEX: &[u8; 16] = b"0123456789abcdef";

impl ClientHello<'_> {
    /// The JA4 fingerprint (FoxIO) of this hello, for logging.
    pub fn ja4(&self) -> Ja4 {
        Ja4::from_client_hello(self)
    }
}

impl Ja4 {
    pub(crate) fn from_client_hello(hello: &ClientHello<'_>) -> Self {
        let mut a = [0u8; 10];
        let mut w = a.iter_mut();
        let mut put = |b: u8| {
            if let Some(slot) = w.next() {
                *slot = b;
            }
        };
        put(b't');
        let [v1, v2] = version_code(hello.max_version());
        put(v1);
        put(v2);
        put(if hello.has_server_name_extension() {
            b'd'
        } else {
            b'i'
        });
        let [c1, c2] = two_digits(hello.cipher_suites().filter(|c| !is_grease(*c)).count());
        put(c1);
        put(c2);
        let [e1, e2] = two_digits(hello.extension_types().filter(|e| !is_grease(*e)).count());
        put(e1);
        put(e2);
        let [l1, l2] = alpn_code(hello.alpn().next());
        put(l1);
        put(l2);

        let b = with_sorted(hello.cipher_suites(), |ciphers| {
            if ciphers.is_empty() {
                return EMPTY_HASH;
            }
            let mut h = Sha256::new();
            write_list(ciphers, &mut |s| h.update(s));
            truncated_hex(h)
        });
        let exts = hello
            .extension_types()
            .filter(|e| *e != ext::SERVER_NAME && *e != ext::ALPN);
        let c = with_sorted(exts, |exts| {
            if exts.is_empty() {
                return EMPTY_HASH;
            }
            let mut h = Sha256::new();
            write_list(exts, &mut |s| h.update(s));
            write_sig_algs(hello, &mut |s| h.update(s));
            truncated_hex(h)
        });
        Self { a, b, c }
    }

    /// The readable first part, e.g. `t13d1516h2`.
    pub fn a(&self) -> &str {
        std::str::from_utf8(&self.a).unwrap_or_default()
    }

    /// The cipher hash, 12 hex digits.
    pub fn b(&self) -> &str {
        std::str::from_utf8(&self.b).unwrap_or_default()
    }

    /// The extension and signature algorithm hash, 12 hex digits.
    pub fn c(&self) -> &str {
        std::str::from_utf8(&self.c).unwrap_or_default()
    }
}

impl fmt::Display for Ja4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}_{}", self.a(), self.b(), self.c())
    }
}

impl fmt::Debug for Ja4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ja4({self})")
    }
}

/// The unhashed JA4 (`JA4_r`): the same fields with the cipher, extension
/// and signature algorithm lists written out, for debugging fingerprints.
#[derive(Debug, Clone, Copy)]
pub struct Ja4Raw<'h, 'a>(pub &'h ClientHello<'a>);

impl fmt::Display for Ja4Raw<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hello = self.0;
        let mut out = Ok(());
        let mut sink = |s: &[u8]| {
            if out.is_ok() {
                out = f.write_str(std::str::from_utf8(s).unwrap_or_default());
            }
        };
        sink(hello.ja4().a.as_slice());
        sink(b"_");
        with_sorted(hello.cipher_suites(), |c| write_list(c, &mut sink));
        sink(b"_");
        let exts = hello
            .extension_types()
            .filter(|e| *e != ext::SERVER_NAME && *e != ext::ALPN);
        with_sorted(exts, |e| write_list(e, &mut sink));
        write_sig_algs(hello, &mut sink);
        out
    }
}

fn version_code(v: u16) -> [u8; 2] {
    match v {
        0x0304 => *b"13",
        0x0303 => *b"12",
        0x0302 => *b"11",
        0x0301 => *b"10",
        0x0300 => *b"s3",
        0x0002 => *b"s2",
        0xfeff => *b"d1",
        0xfefd => *b"d2",
        0xfefc => *b"d3",
        _ => *b"00",
    }
}

fn two_digits(n: usize) -> [u8; 2] {
    let n = n.min(99) as u8;
    [b'0' + n / 10, b'0' + n % 10]
}

fn alpn_code(first: Option<&[u8]>) -> [u8; 2] {
    let (Some(&f), Some(&l)) = (first.and_then(|p| p.first()), first.and_then(|p| p.last())) else {
        return *b"00";
    };
    if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
        [f, l]
    } else {
        [HEX[usize::from(f >> 4)], HEX[usize::from(l & 0x0f)]]
    }
}

/// Sorts the non-GREASE values (inline for up to 128, heap beyond).
fn with_sorted<R>(values: impl Iterator<Item = u16>, f: impl FnOnce(&[u16]) -> R) -> R {
    const INLINE: usize = 128;
    let mut inline = [0u16; INLINE];
    let mut n = 0usize;
    let mut heap: Vec<u16> = Vec::new();
    for v in values.filter(|v| !is_grease(*v)) {
        match inline.get_mut(n) {
            Some(slot) if heap.is_empty() => {
                *slot = v;
                n += 1;
            }
            _ => {
                if heap.is_empty() {
                    heap.extend_from_slice(&inline);
                }
                heap.push(v);
            }
        }
    }
    let list: &mut [u16] = if heap.is_empty() {
        inline.get_mut(..n).unwrap_or_default()
    } else {
        &mut heap
    };
    list.sort_unstable();
    f(list)
}

fn hex4(v: u16) -> [u8; 4] {
    let [hi, lo] = v.to_be_bytes();
    [
        HEX[usize::from(hi >> 4)],
        HEX[usize::from(hi & 15)],
        HEX[usize::from(lo >> 4)],
        HEX[usize::from(lo & 15)],
    ]
}

fn write_list(values: &[u16], sink: &mut impl FnMut(&[u8])) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            sink(b",");
        }
        sink(&hex4(*v));
    }
}

fn write_sig_algs(hello: &ClientHello<'_>, sink: &mut impl FnMut(&[u8])) {
    let mut first = true;
    for alg in hello.signature_algorithms().filter(|a| !is_grease(*a)) {
        sink(if first { b"_" } else { b"," });
        first = false;
        sink(&hex4(alg));
    }
}

fn truncated_hex(h: Sha256) -> [u8; 12] {
    let digest = h.finalize();
    let mut out = [0u8; 12];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
        if let [hi, lo] = pair {
            *hi = HEX[usize::from(byte >> 4)];
            *lo = HEX[usize::from(byte & 15)];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientHelloBuilder, parse_client_hello};

    fn hash(s: &str) -> String {
        let mut h = Sha256::new();
        h.update(s.as_bytes());
        String::from_utf8(truncated_hex(h).to_vec()).unwrap()
    }

    /// A hello with exactly the ciphers, extensions and signature
    /// algorithms of published JA4 examples (Chrome), in shuffled order
    /// and with GREASE added.
    fn chrome_like() -> Vec<u8> {
        let mut b = ClientHelloBuilder::tls12();
        b.cipher_suites = vec![
            0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let sig_algs = [
            0x0403u16, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let b = b
            .extension(0x3a3a, vec![])
            .extension(0x002d, vec![1, 1])
            .extension(0x0033, vec![0, 0])
            .alpn(&[b"h2", b"http/1.1"])
            .extension(0xfe0d, vec![0])
            .extension(0x0017, vec![])
            .extension(0x44cd, vec![0, 3, 2, b'h', b'2'])
            .server_name("www.google.com")
            .extension(0x000b, vec![1, 0])
            .extension(0x000a, vec![0, 2, 0, 0x1d])
            .supported_versions(&[0x4a4a, 0x0304, 0x0303])
            .extension(0xff01, vec![0])
            .extension(0x0023, vec![])
            .extension(0x0012, vec![])
            .extension(0x0005, vec![1, 0, 0, 0, 0])
            .signature_algorithms(&sig_algs)
            .extension(0x001b, vec![2, 0, 2]);
        b.encode()
    }

    #[test]
    fn matches_the_published_chrome_fingerprint() {
        // The JA4_r lists published with this fingerprint hash to its parts.
        assert_eq!(
            hash("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"),
            "8daaf6152771"
        );
        assert_eq!(
            hash(
                "0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,fe0d,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
            ),
            "d8a2da3f94cd"
        );
        let bytes = chrome_like();
        let hello = parse_client_hello(&bytes).unwrap();
        assert_eq!(
            hello.ja4().to_string(),
            "t13d1516h2_8daaf6152771_d8a2da3f94cd"
        );
        assert_eq!(
            Ja4Raw(&hello).to_string(),
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_\
             0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,fe0d,ff01_\
             0403,0804,0401,0503,0805,0501,0806,0601"
        );
    }

    #[test]
    fn edge_cases_of_the_readable_part() {
        let plain = ClientHelloBuilder::tls12().encode();
        let hello = parse_client_hello(&plain).unwrap();
        // No SNI, no ALPN, TLS 1.2 from legacy_version, no extensions.
        assert_eq!(hello.ja4().a(), "t12i030000");
        assert_eq!(hello.ja4().c(), "000000000000");
        let odd_alpn = ClientHelloBuilder::tls12().alpn(&[b"\x01ab\xfe"]).encode();
        assert_eq!(
            parse_client_hello(&odd_alpn).unwrap().ja4().a(),
            "t12i03010e"
        );
        let one = ClientHelloBuilder::tls12().alpn(&[b"h"]).encode();
        assert_eq!(parse_client_hello(&one).unwrap().ja4().a(), "t12i0301hh");
        let mut many = ClientHelloBuilder::tls12();
        many.cipher_suites = (1..=150).collect();
        let many = many.encode();
        let hello = parse_client_hello(&many).unwrap();
        assert_eq!(&hello.ja4().a()[4..6], "99");
        let list: Vec<String> = (1..=150u16).map(|v| format!("{v:04x}")).collect();
        assert_eq!(hello.ja4().b(), hash(&list.join(",")));
    }
}
