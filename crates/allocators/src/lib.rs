//! Allocator selection layer for network services.
//!
//! Three things, one concept per module:
//!
//! * [`selected`]: pick the process-wide allocator with a cargo feature
//!   (`system` by default, `mimalloc`, `jemalloc`) and install it from a
//!   binary with one line, [`global_allocator!`]. Libraries never install a
//!   global allocator; [`active()`] names the one the features selected.
//! * [`counting`]: [`Counting<A>`] wraps any [`GlobalAlloc`](core::alloc::GlobalAlloc)
//!   and counts allocations, deallocations, reallocations, bytes, live and
//!   peak live bytes, process-wide and per thread, so a benchmark can say
//!   "0 allocations in this loop" or "3.0 allocations per message";
//!   [`counted()`] measures a future (an async task) across the threads it
//!   is polled on.
//! * [`handle`] and `arena`: per-container allocators through
//!   `allocator-api2`'s [`Allocator`](allocator_api2::alloc::Allocator) trait:
//!   a handle on any global allocator, a counting adapter for any `Allocator`,
//!   and a per-tick `FrameArena` over `bumpalo` (the `arena` feature, on by
//!   default).
//! * [`release`]: [`release_free_memory()`] asks whichever allocator is
//!   selected to return its free memory to the operating system.
//!
//! # Example
//!
//! A binary installs the selected allocator, counted, and measures a loop:
//!
//! ```
//! allocators::global_allocator!();
//!
//! fn main() {
//!     let before = allocators::thread_stats();
//!     let mut total = 0usize;
//!     for i in 0..100 {
//!         let v = vec![i as u8; 64]; // one allocation per iteration
//!         total += v.len();
//!     }
//!     let delta = allocators::thread_stats().since(&before);
//!     assert_eq!(delta.allocations, 100);
//!     assert_eq!(delta.allocations_per(100), 1.0);
//!     println!("{} allocator, {} bytes, {:?}", allocators::active(), total, delta);
//! }
//! ```
//!
//! A per-tick scratch vector that is thrown away wholesale at the end of the
//! tick (the `arena` feature):
//!
//! ```
//! # #[cfg(feature = "arena")] {
//! use allocators::FrameArena;
//! use allocator_api2::vec::Vec;
//!
//! let mut arena = FrameArena::new();
//! for tick in 0..3u8 {
//!     let mut scratch: Vec<u8, &FrameArena> = Vec::new_in(&arena);
//!     scratch.extend_from_slice(&[tick; 128]);
//!     assert_eq!(scratch.len(), 128);
//!     drop(scratch);
//!     let released = arena.reset();
//!     assert!(released.bytes_released >= 128);
//! }
//! # }
//! ```
//!
//! # Cargo features
//!
//! * `arena` (**on by default**): the `arena` module, `FrameArena` and
//!   `ArenaReset`, and the re-export of `bumpalo`. Turn it off
//!   (`default-features = false`) when you only select or count the global
//!   allocator and do not want the `bumpalo` dependency.
//! * `mimalloc`: the global allocator is mimalloc (builds its C sources).
//! * `jemalloc`: the global allocator is jemalloc through
//!   `tikv-jemallocator` (builds jemalloc's C sources).
//!
//! With neither allocator feature the system allocator is selected. The
//! allocator features are additive: when both are on, jemalloc wins (see
//! [`selected`]). They change which allocator [`Selected`] is, not the API.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "arena")]
#[cfg_attr(docsrs, doc(cfg(feature = "arena")))]
pub mod arena;
pub mod counting;
pub mod handle;
pub mod release;
pub mod selected;

pub use allocator_api2;
#[cfg(feature = "arena")]
#[cfg_attr(docsrs, doc(cfg(feature = "arena")))]
pub use bumpalo;

#[cfg(feature = "arena")]
#[cfg_attr(docsrs, doc(cfg(feature = "arena")))]
pub use arena::{ArenaReset, FrameArena};
pub use counting::{
    AllocDelta, AllocStats, CountedFuture, Counters, Counting, CountingAllocator, GLOBAL_COUNTERS,
    ThreadStats, counted, global_stats, thread_stats,
};
pub use handle::{GlobalHandle, SelectedHandle, selected_handle};
pub use release::{Released, release_free_memory, release_thread_memory};
pub use selected::{AllocatorKind, SELECTED, Selected, active};
