//! The spool directory: file names, the lock file that keeps a second process out, directory
//! fsyncs (a new or deleted file is durable only once its directory is) and free space.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, fstatvfs, FlockOperation};

use super::error::SpoolError;

const LOCK_FILE: &str = "LOCK";
const SEGMENT_SUFFIX: &str = ".seg";
const DONE_SUFFIX: &str = ".done";

/// Zero-padded to 20 digits, so names sort as their ids do.
pub(super) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

pub(super) fn done_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{DONE_SUFFIX}"))
}

/// The spool's files found in `dir`: segment bases and done-file bases, each sorted.
pub(super) fn list(dir: &Path) -> Result<(Vec<u64>, Vec<u64>), SpoolError> {
    let mut segments = Vec::new();
    let mut dones = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| SpoolError::io("listing", dir, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::io("listing", dir, &e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let base = |suffix: &str| {
            name.strip_suffix(suffix)
                .filter(|digits| digits.len() == 20)
                .and_then(|digits| digits.parse::<u64>().ok())
        };
        if let Some(base) = base(SEGMENT_SUFFIX) {
            segments.push(base);
        } else if let Some(base) = base(DONE_SUFFIX) {
            dones.push(base);
        }
    }
    segments.sort_unstable();
    dones.sort_unstable();
    Ok((segments, dones))
}

/// Takes the directory's lock: `flock` on `LOCK`, held as long as the returned file is open.
/// `flock` belongs to the open file, not the process, so a second open in the same process is
/// refused too. The file then holds our pid, for the message the next one gets.
pub(super) fn lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| SpoolError::io("opening the lock file", &path, &e))?;
    if let Err(errno) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
        if errno == rustix::io::Errno::WOULDBLOCK {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(SpoolError::Locked {
                dir: dir.to_owned(),
                pid,
            });
        }
        return Err(SpoolError::io("locking", &path, &errno.into()));
    }
    // Best effort: the pid only improves the other process's message.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

/// The directory itself, opened to fsync it and to ask its file system for free space.
pub(super) fn open_dir(dir: &Path) -> Result<File, SpoolError> {
    File::open(dir).map_err(|e| SpoolError::io("opening the directory", dir, &e))
}

pub(super) fn sync_dir(dir_file: &File, dir: &Path) -> Result<(), SpoolError> {
    dir_file
        .sync_all()
        .map_err(|e| SpoolError::io("fsyncing the directory", dir, &e))
}

/// Bytes an unprivileged writer can still use on the directory's file system.
pub(super) fn free_bytes(dir_file: &File) -> Option<u64> {
    let stat = fstatvfs(dir_file).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Logs when the free space crosses `spool.min_free_bytes`, either way. The figure starts at
/// "plenty" and is first read at open, so a disk already too full is a warning at startup
/// rather than a silent 503 on every write; the figures are for the operator's log only.
pub(super) fn log_space_change(shared: &super::shared::Shared, before: u64, free: u64) {
    let min_free_bytes = shared.settings.min_free_bytes;
    let dir = shared.dir.display();
    match (before < min_free_bytes, free < min_free_bytes) {
        (false, true) => tracing::warn!(
            %dir,
            free_bytes = free,
            min_free_bytes,
            "spool: its file system has less free space than spool.min_free_bytes; events of disk-acknowledged streams are refused (503 spool_full) and /readyz answers 503 until space is freed or the setting lowered"
        ),
        (true, false) => tracing::info!(
            %dir,
            free_bytes = free,
            min_free_bytes,
            "spool: free space is back above spool.min_free_bytes; appends are taken again"
        ),
        _ => {}
    }
}
