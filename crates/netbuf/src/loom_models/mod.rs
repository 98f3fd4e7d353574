//! Loom models of crate-private protocols, beside the code they check (as
//! `tokio`'s `sync/tests/loom_*.rs`). Run them with `scripts/loom.sh`,
//! which builds with `--cfg loom -C debug-assertions=on`.
//!
//! `loom-tests/` keeps the models that go through the public API only.

mod pool;
mod send_queue;
