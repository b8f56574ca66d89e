//! Text and JSON formats of ID maps and subordinate-id files.
