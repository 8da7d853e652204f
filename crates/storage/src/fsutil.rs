//! Directory durability. fdatasync on a file makes its contents durable, but not its name:
//! after creating, renaming or deleting a file the directory itself must be synced, or a crash
//! can bring back the old set of names.

use crate::error::StorageError;
use std::fs::{self, File};
use std::path::Path;

pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io(dir, "sync directory"))
}

/// Creates `dir` if missing, and makes its name durable in its parent.
pub fn ensure_dir(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(StorageError::io(dir, "create directory"))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    sync_dir(dir)
}

/// The names of the files in `dir` (skipping anything that is not valid UTF-8, which this
/// crate never creates).
pub fn file_names(dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(StorageError::io(dir, "list directory"))? {
        let entry = entry.map_err(StorageError::io(dir, "list directory"))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Parses `<prefix><16 hex digits><suffix>`, the shape of every file name this crate writes.
pub fn parse_hex_name(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let hex = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}
