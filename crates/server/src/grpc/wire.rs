//! A scan of a request's protobuf encoding before prost decodes it. prost is built without
//! its recursion limit (100 levels, which refused valid txns nested 50 deep: each txn level
//! is two messages), so this scan is what bounds the decoder's recursion, and the stack:
//!
//! - txns: `TxnRequest.success`/`failure` (fields 2, 3) hold `RequestOp`s, whose
//!   `request_txn` (field 4) is the next level. More than `TXN_LEVELS_MAX` levels cannot pass
//!   etcd's op budget (each level takes at least one of its 128 ops), so they are refused
//!   as etcd refuses an over-budget txn, before decoding.
//! - anything else: every length-delimited field is tried as a message (a bytes field that
//!   does not parse is skipped as bytes), and groups are followed, so no path prost could
//!   recurse along is missed; nesting deeper than `NESTING_MAX` is refused. Only a value
//!   that is itself protobuf nested hundreds deep could be refused wrongly.
//!
//! Linear time: a field that fails to parse as a message is skipped whole by its parent,
//! never scanned again.

/// The deepest valid txn: one op per level out of etcd's budget of `TXN_OPS_MAX`.
pub const TXN_LEVELS_MAX: usize = synod_kv::TXN_OPS_MAX;

/// The deepest message nesting accepted: the deepest txn (two messages a level) plus room
/// for a value that is itself protobuf. prost's stack use at this depth is well under 1 MiB.
pub const NESTING_MAX: usize = 2 * TXN_LEVELS_MAX + 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `etcdserverpb.TxnRequest`.
    Txn,
    /// Any other request message.
    Other,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// A txn holds a put or a delete at some level.
    pub writes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// Txns nested deeper than `TXN_LEVELS_MAX`.
    TooManyTxnLevels,
    /// Nesting deeper than `NESTING_MAX`.
    TooDeep,
    /// Not a protobuf message.
    Malformed(&'static str),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::TooManyTxnLevels => write!(f, "txns nested over {TXN_LEVELS_MAX} deep"),
            ScanError::TooDeep => f.write_str("proto: exceeded maximum recursion depth"),
            ScanError::Malformed(why) => write!(f, "proto: {why}"),
        }
    }
}

/// Scans one encoded request message.
pub fn scan(buf: &[u8], root: Root) -> Result<Summary, ScanError> {
    let mut summary = Summary::default();
    let (kind, levels) = match root {
        Root::Txn => (Kind::Txn, 1),
        Root::Other => (Kind::Other, 0),
    };
    message(buf, kind, 1, levels, &mut summary)?;
    Ok(summary)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Txn,
    Op,
    Other,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ScanError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or(ScanError::Malformed("truncated varint"))?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(ScanError::Malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], ScanError> {
        let n = usize::try_from(n).map_err(|_| ScanError::Malformed("length overflow"))?;
        if n > self.buf.len() {
            return Err(ScanError::Malformed("field runs past the message"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A field's number and wire type.
    fn key(&mut self) -> Result<(u64, u8), ScanError> {
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(ScanError::Malformed("invalid field number"));
        }
        Ok((field, (key & 7) as u8))
    }
}

/// Scans the fields of one message of `kind` at `depth`, `levels` txns deep.
fn message(
    buf: &[u8],
    kind: Kind,
    depth: usize,
    levels: usize,
    summary: &mut Summary,
) -> Result<(), ScanError> {
    if levels > TXN_LEVELS_MAX {
        return Err(ScanError::TooManyTxnLevels);
    }
    if depth > NESTING_MAX {
        return Err(ScanError::TooDeep);
    }
    let mut r = Reader { buf };
    while !r.buf.is_empty() {
        let (field, wire) = r.key()?;
        match wire {
            0 => {
                r.varint()?;
            }
            1 => {
                r.take(8)?;
            }
            5 => {
                r.take(4)?;
            }
            2 => {
                let len = r.varint()?;
                let sub = r.take(len)?;
                let (sub_kind, sub_levels) = match (kind, field) {
                    (Kind::Txn, 2 | 3) => (Kind::Op, levels),
                    (Kind::Op, 4) => (Kind::Txn, levels + 1),
                    _ => (Kind::Other, levels),
                };
                if kind == Kind::Op && (field == 2 || field == 3) {
                    summary.writes = true;
                }
                match message(sub, sub_kind, depth + 1, sub_levels, summary) {
                    // Bytes or a string, not a message: skipped whole.
                    Ok(()) | Err(ScanError::Malformed(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            3 => group(&mut r, field, depth + 1, levels, summary)?,
            4 => return Err(ScanError::Malformed("end of a group that was not started")),
            _ => return Err(ScanError::Malformed("invalid wire type")),
        }
    }
    Ok(())
}

/// Scans a group's fields up to its end marker (`field`, wire type 4).
fn group(
    r: &mut Reader<'_>,
    field: u64,
    depth: usize,
    levels: usize,
    summary: &mut Summary,
) -> Result<(), ScanError> {
    if depth > NESTING_MAX {
        return Err(ScanError::TooDeep);
    }
    loop {
        if r.buf.is_empty() {
            return Err(ScanError::Malformed("group without an end"));
        }
        let (f, wire) = r.key()?;
        match wire {
            0 => {
                r.varint()?;
            }
            1 => {
                r.take(8)?;
            }
            5 => {
                r.take(4)?;
            }
            2 => {
                let len = r.varint()?;
                let sub = r.take(len)?;
                match message(sub, Kind::Other, depth + 1, levels, summary) {
                    Ok(()) | Err(ScanError::Malformed(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            3 => group(r, f, depth + 1, levels, summary)?,
            4 if f == field => return Ok(()),
            4 => {
                return Err(ScanError::Malformed(
                    "group ends with another field's marker",
                ))
            }
            _ => return Err(ScanError::Malformed("invalid wire type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: usize, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn field(number: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2];
        varint(body.len(), &mut out);
        out.extend_from_slice(body);
        out
    }

    /// A txn `levels` deep; the innermost op puts (or, without `put`, ranges).
    fn txn(levels: usize, put: bool) -> Vec<u8> {
        let inner = field(1, b"k"); // key
        let mut op = field(if put { 2 } else { 1 }, &inner);
        let mut t = field(2, &op);
        for _ in 1..levels {
            op = field(4, &t);
            t = field(2, &op);
        }
        t
    }

    #[test]
    fn txns_up_to_the_op_budget_pass_and_deeper_ones_do_not() {
        let s = scan(&txn(TXN_LEVELS_MAX, true), Root::Txn).expect("valid depth");
        assert!(s.writes);
        let s = scan(&txn(TXN_LEVELS_MAX, false), Root::Txn).expect("valid depth");
        assert!(!s.writes);
        assert_eq!(
            scan(&txn(TXN_LEVELS_MAX + 1, false), Root::Txn),
            Err(ScanError::TooManyTxnLevels)
        );
    }

    #[test]
    fn deep_groups_and_deep_nesting_are_refused() {
        let mut groups = vec![0x7b; 10_000];
        groups.extend(vec![0x7c; 10_000]);
        assert_eq!(scan(&groups, Root::Other), Err(ScanError::TooDeep));
        let mut nested = field(1, b"x");
        for _ in 0..NESTING_MAX {
            nested = field(1, &nested);
        }
        assert_eq!(scan(&nested, Root::Other), Err(ScanError::TooDeep));
        let shallow = [0x7b, 0x08, 0x01, 0x7c];
        assert_eq!(scan(&shallow, Root::Other), Ok(Summary::default()));
    }

    #[test]
    fn bytes_that_are_not_a_message_are_skipped_and_garbage_is_malformed() {
        // PutRequest{key: "k", value: 0xff 0xff} (the value does not parse as a message).
        let mut put = field(1, b"k");
        put.extend(field(2, &[0xff, 0xff]));
        assert_eq!(scan(&put, Root::Other), Ok(Summary::default()));
        assert!(matches!(
            scan(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], Root::Other),
            Err(ScanError::Malformed(_))
        ));
        assert!(matches!(
            scan(&[0x0f], Root::Other),
            Err(ScanError::Malformed(_))
        ));
        assert!(matches!(
            scan(&[0x7c], Root::Other),
            Err(ScanError::Malformed(_))
        ));
        assert_eq!(scan(&[], Root::Txn), Ok(Summary::default()));
    }
}
