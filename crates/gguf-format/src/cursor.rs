//! A bounds-checked little-endian reader over the file bytes.

use crate::error::GgufError;

pub(crate) struct Cursor<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    /// Bytes left from the current position.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Takes `n` bytes, or a `Truncated` error describing `what`.
    pub fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        let avail = self.remaining();
        let end = usize::try_from(n)
            .ok()
            .filter(|&n| n <= avail)
            .map(|n| self.pos + n);
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(GgufError::Truncated {
                what: what(),
                offset: self.pos as u64,
                needed: n,
                available: avail as u64,
            }),
        }
    }

    pub fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Checks that `count` items of at least `min_size` bytes each fit in the
    /// rest of the file, so that allocating `count` entries is bounded by the
    /// file size. Returns the count as `usize`.
    pub fn check_count(
        &self,
        count: u64,
        min_size: u64,
        offset: usize,
        what: impl FnOnce() -> String,
    ) -> Result<usize, GgufError> {
        let avail = self.remaining() as u64;
        let fits = count
            .checked_mul(min_size)
            .is_some_and(|total| total <= avail);
        match (fits, usize::try_from(count)) {
            (true, Ok(n)) => Ok(n),
            _ => Err(GgufError::CountTooLarge {
                what: what(),
                offset: offset as u64,
                count,
                available: avail,
            }),
        }
    }
}
