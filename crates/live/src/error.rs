use credns_sys::NsId;

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A read of /proc or of the host's files failed as a whole (not one process vanishing).
    #[error(transparent)]
    Sys(#[from] credns_sys::Error),
    /// The process does not exist, or exited while it was read.
    #[error("no process {0} (it does not exist, or it exited while credns read it)")]
    NoProcess(u32),
    /// An ancestor namespace has no process whose /proc files would show its maps.
    #[error("{0}, an ancestor of pid {1}'s user namespace, has no process in it: its maps cannot be read")]
    Unseen(NsId, u32),
    /// The process's namespace is not below the scanner's.
    #[error("pid {0} is not in a user namespace below credns's own")]
    Outside(u32),
    /// A path could not be read as the process sees it.
    #[error("{0}: {1}")]
    Path(String, String),
    /// The model could not be built from what was read.
    #[error("the model refused the snapshot: {0}")]
    Model(String),
}
