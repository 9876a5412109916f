//! The paged-KV transformer engine (work in progress).
