#![no_main]
//! edge-bin's HTTP/1 framing guard (the CL+TE smuggling scanner) on
//! arbitrary client streams. Input: one byte choosing a read size, then the
//! stream. Never panics; the verdict is the same whether the stream arrives
//! whole, byte by byte or in reads of the chosen size; and when the first
//! request head carries both Content-Length and Transfer-Encoding (by an
//! independent, whole-buffer reading of that head) it is the one flagged.
use edge_sni::h1guard::scan;

/// Larger than any input libFuzzer makes here, so the head cap (whose
/// boundary depends on read sizes by design) never decides.
const MAX_HEAD: usize = 1 << 20;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&size, stream)) = data.split_first() else { return };
    let whole = scan([stream], MAX_HEAD);
    assert_eq!(scan(stream.chunks(1), MAX_HEAD), whole, "byte by byte");
    let size = usize::from(size % 64) + 1;
    assert_eq!(scan(stream.chunks(size), MAX_HEAD), whole, "reads of {size}");
    assert!(whole.requests <= stream.len());
    if let Some(i) = whole.flagged {
        assert!(whole.stopped && i + 1 == whole.requests, "{whole:?}");
    }
    if let Some(first) = first_head_cl_te(stream) {
        assert_eq!(whole.flagged == Some(0), first, "{whole:?}");
    }
    // A tiny head cap only makes the scanner give up, never panic.
    let small = scan(stream.chunks(size), 16);
    assert!(small.flagged.is_none() || small.stopped);
});

/// Whether the first request head (after blank lines) has both a valid
/// Content-Length and a Transfer-Encoding; `None` when there is no complete
/// head or the guard is defined to leave it alone (not UTF-8, CONNECT/PRI,
/// an unparsable Content-Length).
fn first_head_cl_te(stream: &[u8]) -> Option<bool> {
    let start = stream.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let stream = &stream[start..];
    // The head ends at the first line that is empty or a lone CR.
    let mut line_start = 0;
    let mut end = None;
    for (i, &b) in stream.iter().enumerate() {
        if b == b'\n' {
            let line = &stream[line_start..i];
            if line.is_empty() || line == b"\r" {
                end = Some(i + 1);
                break;
            }
            line_start = i + 1;
        }
    }
    let head = std::str::from_utf8(&stream[..end?]).ok()?;
    if head.starts_with("CONNECT ") || head.starts_with("PRI ") {
        return None;
    }
    let (mut cl, mut te) = (false, false);
    for line in head.split('\n').skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                value.trim().parse::<u64>().ok()?;
                cl = true;
            }
            "transfer-encoding" => te = true,
            _ => {}
        }
    }
    Some(cl && te)
}
