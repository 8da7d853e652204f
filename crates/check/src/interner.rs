//! Byte strings as the small integers the checker works on.

use std::collections::HashMap;

/// Gives each distinct byte string a number, 0, 1, 2, ... in order of first sight, and
/// back. Numbers follow first sight, not byte order: a client that uses ranges interns its
/// keys in key order first (or maps them itself).
#[derive(Clone, Debug, Default)]
pub struct Interner {
    ids: HashMap<Vec<u8>, u64>,
    names: Vec<Vec<u8>>,
}

impl Interner {
    pub fn id(&mut self, bytes: &[u8]) -> u64 {
        if let Some(&id) = self.ids.get(bytes) {
            return id;
        }
        let id = self.names.len() as u64;
        self.ids.insert(bytes.to_vec(), id);
        self.names.push(bytes.to_vec());
        id
    }

    /// The number of `bytes` if it has one.
    pub fn get(&self, bytes: &[u8]) -> Option<u64> {
        self.ids.get(bytes).copied()
    }

    pub fn name(&self, id: u64) -> Option<&[u8]> {
        self.names.get(usize::try_from(id).ok()?).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_reversible() {
        let mut i = Interner::default();
        assert_eq!(i.id(b"a"), 0);
        assert_eq!(i.id(b"b"), 1);
        assert_eq!(i.id(b"a"), 0);
        assert_eq!(i.get(b"b"), Some(1));
        assert_eq!(i.get(b"c"), None);
        assert_eq!(i.name(1), Some(&b"b"[..]));
        assert_eq!(i.name(2), None);
    }
}
