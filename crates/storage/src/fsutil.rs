//! Directory durability and space. fdatasync on a file makes its contents durable, but not its
//! name: after creating, renaming or deleting a file the directory itself must be synced, or a
//! crash can bring back the old set of names.

use crate::error::StorageError;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io(dir, "sync directory"))
}

/// A directory kept open, so syncing it after a create or delete needs no new file
/// descriptor: with the process's descriptor table full, the log can still rotate and compact.
#[derive(Debug)]
pub struct DirHandle {
    path: PathBuf,
    file: File,
}

impl DirHandle {
    pub fn open(path: &Path) -> Result<DirHandle, StorageError> {
        let file = File::open(path).map_err(StorageError::io(path, "open directory"))?;
        Ok(DirHandle {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sync(&self) -> Result<(), StorageError> {
        self.file
            .sync_all()
            .map_err(StorageError::io(&self.path, "sync directory"))
    }
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

/// Gives `file` `len` bytes of reserved, zero-reading space (fallocate), so that writing into it
/// later cannot fail for lack of space and the file's size never changes while it is written.
/// File systems without fallocate get a sparse file of that size instead: it reads as zeros too.
pub fn allocate(file: &File, path: &Path, len: u64) -> Result<(), StorageError> {
    use rustix::fs::{fallocate, FallocateFlags};
    match fallocate(file, FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => file
            .set_len(len)
            .map_err(StorageError::io(path, "extend segment")),
        Err(e) => Err(StorageError::Io {
            path: path.to_path_buf(),
            op: "allocate segment",
            source: e.into(),
        }),
    }
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
