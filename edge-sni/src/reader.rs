//! A bounds-checked cursor over untrusted bytes: every read returns `None`
//! instead of panicking when the input is short.

use std::ops::Range;

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Position from the start of the buffer this reader was made with.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// Like [`Reader::take`] but returns where the bytes are.
    pub(crate) fn take_range(&mut self, n: usize) -> Option<Range<usize>> {
        let start = self.pos;
        self.take(n)?;
        Some(start..self.pos)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    pub(crate) fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(
            usize::from(*b.first()?) << 16 | usize::from(*b.get(1)?) << 8 | usize::from(*b.get(2)?),
        )
    }
}

/// Iterates the big-endian `u16`s of a validated, even-length list.
pub(crate) fn u16s(list: &[u8]) -> impl Iterator<Item = u16> + Clone + '_ {
    list.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
}

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, …, 0xfafa.
pub(crate) fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}
