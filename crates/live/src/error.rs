/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A read of /proc or of the host's files failed as a whole (not one process vanishing).
    #[error(transparent)]
    Sys(#[from] credns_sys::Error),
}
