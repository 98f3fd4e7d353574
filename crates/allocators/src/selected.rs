//! Global allocator selection by cargo feature.
//!
//! | feature      | allocator                         |
//! |--------------|-----------------------------------|
//! | *(none)*     | the system allocator (glibc malloc on Linux) |
//! | `mimalloc`   | [mimalloc](https://docs.rs/mimalloc) |
//! | `jemalloc`   | [jemalloc](https://docs.rs/tikv-jemallocator) |
//!
//! Cargo features are additive, so `--all-features` turns several on at
//! once. Instead of refusing to build, a fixed precedence picks one:
//! **jemalloc > mimalloc > system**. [`active()`] reports the winner at run
//! time, so a report can always name the allocator that produced it.
//!
//! Only a binary installs a global allocator, with [`global_allocator!`](crate::global_allocator).

use core::fmt;

/// The allocator the enabled features select (see the module docs for the
/// precedence). A zero-sized type implementing [`GlobalAlloc`](core::alloc::GlobalAlloc).
#[cfg(feature = "jemalloc")]
pub type Selected = tikv_jemallocator::Jemalloc;
/// The allocator the enabled features select (see the module docs for the
/// precedence). A zero-sized type implementing [`GlobalAlloc`](core::alloc::GlobalAlloc).
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
pub type Selected = mimalloc::MiMalloc;
/// The allocator the enabled features select (see the module docs for the
/// precedence). A zero-sized type implementing [`GlobalAlloc`](core::alloc::GlobalAlloc).
#[cfg(not(any(feature = "mimalloc", feature = "jemalloc")))]
pub type Selected = std::alloc::System;

/// A value of the [`Selected`] allocator, usable in `const` and `static`
/// initialisers.
#[cfg(feature = "jemalloc")]
pub const SELECTED: Selected = tikv_jemallocator::Jemalloc;
/// A value of the [`Selected`] allocator, usable in `const` and `static`
/// initialisers.
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
pub const SELECTED: Selected = mimalloc::MiMalloc;
/// A value of the [`Selected`] allocator, usable in `const` and `static`
/// initialisers.
#[cfg(not(any(feature = "mimalloc", feature = "jemalloc")))]
pub const SELECTED: Selected = std::alloc::System;

/// Which allocator implementation a [`Selected`] is.
///
/// ```
/// let kind = allocators::active();
/// assert!(["system", "mimalloc", "jemalloc"].contains(&kind.name()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllocatorKind {
    /// The platform allocator (`std::alloc::System`).
    System,
    /// Microsoft's mimalloc.
    Mimalloc,
    /// jemalloc, through `tikv-jemallocator`.
    Jemalloc,
}

impl AllocatorKind {
    /// Every kind, in precedence order (highest first).
    pub const ALL: [AllocatorKind; 3] = [
        AllocatorKind::Jemalloc,
        AllocatorKind::Mimalloc,
        AllocatorKind::System,
    ];

    /// The lowercase name, as used by the cargo feature (`system` has none).
    pub const fn name(self) -> &'static str {
        match self {
            AllocatorKind::System => "system",
            AllocatorKind::Mimalloc => "mimalloc",
            AllocatorKind::Jemalloc => "jemalloc",
        }
    }

    /// Whether this crate was built with the feature that provides this
    /// allocator (the system allocator is always available).
    pub const fn is_compiled_in(self) -> bool {
        match self {
            AllocatorKind::System => true,
            AllocatorKind::Mimalloc => cfg!(feature = "mimalloc"),
            AllocatorKind::Jemalloc => cfg!(feature = "jemalloc"),
        }
    }
}

impl fmt::Display for AllocatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The allocator the enabled features select, by the precedence
/// jemalloc > mimalloc > system.
///
/// This names what [`global_allocator!`](crate::global_allocator) installs;
/// whether a binary actually used the macro can be seen from
/// [`global_stats()`](crate::global_stats) counting anything.
pub const fn active() -> AllocatorKind {
    if cfg!(feature = "jemalloc") {
        AllocatorKind::Jemalloc
    } else if cfg!(feature = "mimalloc") {
        AllocatorKind::Mimalloc
    } else {
        AllocatorKind::System
    }
}

/// Installs the [`Selected`] allocator as the process's global allocator.
///
/// Use it once, at the top level of a binary (or a test/bench target), never
/// in a library.
///
/// * `global_allocator!()` installs it wrapped in [`Counting`](crate::Counting),
///   reporting to [`GLOBAL_COUNTERS`](crate::GLOBAL_COUNTERS), so
///   [`global_stats()`](crate::global_stats) and
///   [`thread_stats()`](crate::thread_stats) work. This is what the demo and
///   the benchmarks use; the overhead is measured by the `allocators` bench.
/// * `global_allocator!(uncounted)` installs the bare allocator.
///
/// ```
/// allocators::global_allocator!();
/// fn main() {
///     let _v = vec![0u8; 10];
///     assert!(allocators::global_stats().allocations >= 1);
/// }
/// ```
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static ALLOCATORS_GLOBAL: $crate::Counting<$crate::Selected> =
            $crate::Counting::global($crate::SELECTED);
    };
    (uncounted) => {
        #[global_allocator]
        static ALLOCATORS_GLOBAL: $crate::Selected = $crate::SELECTED;
    };
}
