//! The kernel layer.
