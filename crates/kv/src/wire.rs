//! Primitive encodings shared by the request codec and the snapshot format: LEB128 varints,
//! zigzag for signed integers, length-prefixed byte strings. Decoding never panics and never
//! trusts a length: every length is checked against the bytes that remain, so garbage input
//! cannot make us allocate more than the input could describe.

use crate::error::DecodeError;
use bytes::Bytes;

pub(crate) type Result<T> = std::result::Result<T, DecodeError>;

pub(crate) fn put_u8(buf: &mut Vec<u8>, v: u8) {
    buf.push(v);
}

pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Zigzag keeps small negative numbers (revision -1, limit -1) one byte long.
pub(crate) fn put_i64(buf: &mut Vec<u8>, v: i64) {
    put_varint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

pub(crate) fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

pub(crate) fn put_len(buf: &mut Vec<u8>, n: usize) {
    put_varint(buf, n as u64);
}

/// Booleans travel as bit sets so that unknown bits can be rejected.
pub(crate) fn put_flags(buf: &mut Vec<u8>, flags: &[bool]) {
    debug_assert!(flags.len() <= 8);
    let mut b = 0u8;
    for (i, f) in flags.iter().enumerate() {
        if *f {
            b |= 1 << i;
        }
    }
    buf.push(b);
}

#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn varint(&mut self) -> Result<u64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError("varint overflows 64 bits"));
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    pub(crate) fn i64(&mut self) -> Result<i64> {
        let z = self.varint()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// A byte string, copied out into its own allocation. Copying (rather than slicing a
    /// shared buffer) matters because decoded keys and values live on in the store: a slice
    /// would pin the whole log batch or snapshot buffer it came from.
    pub(crate) fn bytes(&mut self) -> Result<Bytes> {
        let len = self.len(1)?;
        let out = Bytes::copy_from_slice(&self.buf[self.pos..self.pos + len]);
        self.pos += len;
        Ok(out)
    }

    /// A count of elements that take at least `min_size` bytes each.
    pub(crate) fn len(&mut self, min_size: usize) -> Result<usize> {
        let n = self.varint()?;
        if n > (self.remaining() / min_size.max(1)) as u64 {
            return Err(DecodeError("length exceeds the remaining input"));
        }
        Ok(n as usize)
    }

    /// `n` booleans packed by [`put_flags`]; unknown bits are an error.
    pub(crate) fn flags<const N: usize>(&mut self) -> Result<[bool; N]> {
        let b = self.u8()?;
        if N < 8 && b >> N != 0 {
            return Err(DecodeError("unknown flag bits"));
        }
        let mut out = [false; N];
        for (i, f) in out.iter_mut().enumerate() {
            *f = b & (1 << i) != 0;
        }
        Ok(out)
    }

    pub(crate) fn finish(self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn integers_round_trip(u in any::<u64>(), i in any::<i64>()) {
            let mut buf = Vec::new();
            put_varint(&mut buf, u);
            put_i64(&mut buf, i);
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.varint().unwrap(), u);
            prop_assert_eq!(r.i64().unwrap(), i);
            r.finish().unwrap();
        }
    }

    #[test]
    fn small_negatives_are_short() {
        let mut buf = Vec::new();
        put_i64(&mut buf, -1);
        assert_eq!(buf.len(), 1);
    }

    #[test]
    fn rejects_overlong_and_oversized() {
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint()
                .is_err()
        );
        assert!(Reader::new(&[5, 1, 2]).bytes().is_err());
        assert!(Reader::new(&[0b100]).flags::<2>().is_err());
    }
}
