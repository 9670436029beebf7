//! What can go wrong with the spool, one enum for its whole API. `Full` is apart from the rest
//! because the caller answers it differently (503 with `Retry-After`: try again later) from a
//! broken spool (503 too, but an operator must look).

use std::fmt;
use std::path::{Path, PathBuf};

/// Why an append was refused at once. Each is temporary: done marks free segments, the writer
/// catches up, an operator frees disk space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullReason {
    /// The spool holds `spool.max_bytes` (live segments, done marks and appends in flight).
    MaxBytes { max_bytes: u64 },
    /// The file system has less free space than `spool.min_free_bytes`.
    LowDiskSpace {
        free_bytes: u64,
        min_free_bytes: u64,
    },
    /// The writer thread's queue is full: the disk is slower than the appends.
    WriterBacklog,
}

impl fmt::Display for FullReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MaxBytes { max_bytes } => {
                write!(f, "it holds spool.max_bytes ({max_bytes} bytes)")
            }
            Self::LowDiskSpace {
                free_bytes,
                min_free_bytes,
            } => write!(
                f,
                "its file system has {free_bytes} bytes free, below spool.min_free_bytes ({min_free_bytes})"
            ),
            Self::WriterBacklog => f.write_str("its writer is behind (the disk is too slow)"),
        }
    }
}

impl FullReason {
    /// The reason as a client may read it: which bound, never facts of the host (its free
    /// space), which only the operator's log carries.
    pub fn for_client(&self) -> &'static str {
        match self {
            Self::MaxBytes { .. } => "it holds spool.max_bytes",
            Self::LowDiskSpace { .. } => "its disk has less free space than spool.min_free_bytes",
            Self::WriterBacklog => "its writer is behind (the disk is too slow)",
        }
    }
}

/// Every spool failure. `Clone` because one failed group commit answers many waiting appends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full: {0}")]
    Full(FullReason),
    #[error("a spool entry of {size} bytes can never be written (at most {max} bytes)")]
    TooLarge { size: u64, max: u64 },
    #[error("spool directory {} is in use by another process ({})", dir.display(), holder(*pid))]
    Locked { dir: PathBuf, pid: Option<u32> },
    #[error("spool {op} failed on {}: {message}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        kind: std::io::ErrorKind,
        message: String,
    },
    #[error("{} is not a spool file this version can read: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error(
        "the spool stopped writing after an I/O error (restart to recover what is on disk): {0}"
    )]
    Failed(String),
    #[error("the spool is closed")]
    Closed,
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}, per its LOCK file"),
        None => "pid unknown".to_owned(),
    }
}

impl SpoolError {
    pub(super) fn io(op: &'static str, path: &Path, error: &std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}
