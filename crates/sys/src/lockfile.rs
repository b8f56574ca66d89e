//! An exclusive lock on a file (`flock(2)`), waited for with a bound: the registry store is
//! held by one process per transaction, and others wait their turn.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation, Mode, OFlags};

use crate::{Errno, Error};

/// A held `flock(LOCK_EX)`; released when dropped (the descriptor closes).
#[derive(Debug)]
pub struct FileLock {
    _fd: OwnedFd,
    path: PathBuf,
}

impl FileLock {
    /// Open (creating it, mode 0600) and lock `path`, waiting at most `timeout` for another
    /// holder to let go. `Ok(None)` when the wait timed out.
    #[doc(alias = "flock")]
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Option<Self>, Error> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|errno| Error::Path {
            op: "open lock file",
            path: path.to_path_buf(),
            errno,
        })?;
        let t0 = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    return Ok(Some(FileLock {
                        _fd: fd,
                        path: path.to_path_buf(),
                    }))
                }
                Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {}
                Err(errno) => {
                    return Err(Error::Path {
                        op: "flock",
                        path: path.to_path_buf(),
                        errno,
                    })
                }
            }
            if t0.elapsed() >= timeout {
                return Ok(None);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// The locked file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
