//! Per-tick scratch memory: a `bumpalo` arena that frees nothing until
//! [`FrameArena::reset`].
//!
//! Game servers and brokers do a lot of short-lived work per tick or per
//! batch (decode, sort, build replies). Bump allocation makes each of those
//! allocations a pointer increment, and the whole tick's memory is returned
//! at once by `reset`. `&FrameArena` implements `allocator-api2`'s
//! [`Allocator`], so any `allocator_api2` collection can live in it.
//!
//! ```
//! use allocators::FrameArena;
//! use allocator_api2::vec::Vec;
//!
//! let mut arena = FrameArena::new();
//! {
//!     let mut ids: Vec<u32, &FrameArena> = Vec::with_capacity_in(4, &arena);
//!     ids.extend([4, 1, 3, 2]);
//!     ids.sort_unstable();
//!     assert_eq!(&ids[..], &[1, 2, 3, 4]);
//! } // dropping `ids` frees nothing ...
//! assert_eq!(arena.bytes_in_use(), 16);
//! let r = arena.reset(); // ... the tick's end does
//! assert_eq!(r.bytes_released, 16);
//! assert_eq!(arena.bytes_in_use(), 0);
//! ```

use core::alloc::Layout;
use core::cell::Cell;
use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use bumpalo::Bump;

/// A bump arena for per-tick or per-frame scratch allocations.
///
/// Not `Sync`: one thread owns it, as a tick loop does.
#[derive(Debug, Default)]
pub struct FrameArena {
    bump: Bump,
    in_use: Cell<usize>,
    ignored_frees: Cell<u64>,
    resets: u64,
}

/// What [`FrameArena::reset`] gave back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaReset {
    /// Bytes handed out since the previous reset (all of them are released).
    pub bytes_released: usize,
    /// Deallocation requests since the previous reset, which the arena
    /// ignored: memory only comes back at reset.
    pub frees_deferred: u64,
    /// Bytes of chunk memory the arena keeps for the next tick.
    pub capacity_kept: usize,
}

impl FrameArena {
    /// An empty arena; its first allocation reserves the first chunk.
    pub fn new() -> Self {
        Self::default()
    }

    /// An arena whose first chunk holds at least `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        FrameArena {
            bump: Bump::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Bytes handed out since the last reset, whether or not they were
    /// "freed" since (an arena frees nothing until reset).
    pub fn bytes_in_use(&self) -> usize {
        self.in_use.get()
    }

    /// Chunk memory the arena holds from the global allocator.
    pub fn capacity(&self) -> usize {
        self.bump.allocated_bytes()
    }

    /// How many times the arena was reset.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// The underlying `bumpalo` arena, for `bumpalo`'s own collections.
    pub fn bump(&self) -> &Bump {
        &self.bump
    }

    /// Releases everything allocated since the last reset. Needs `&mut self`,
    /// so no allocation from this arena can still be alive.
    pub fn reset(&mut self) -> ArenaReset {
        self.bump.reset();
        self.resets += 1;
        ArenaReset {
            bytes_released: self.in_use.replace(0),
            frees_deferred: self.ignored_frees.replace(0),
            capacity_kept: self.bump.allocated_bytes(),
        }
    }
}

// SAFETY: every block comes from `self.bump` and stays valid until the arena
// is reset or dropped, both of which need `&mut FrameArena` and so cannot
// happen while a `&FrameArena` (this allocator) is alive. Copies of the
// reference are the same arena.
unsafe impl Allocator for &FrameArena {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let p = (&self.bump).allocate(layout)?;
        self.in_use.set(self.in_use.get() + layout.size());
        Ok(p)
    }

    #[inline]
    unsafe fn deallocate(&self, _ptr: NonNull<u8>, _layout: Layout) {
        // Deliberately nothing: the block is reclaimed by `reset`.
        self.ignored_frees.set(self.ignored_frees.get() + 1);
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `ptr` was allocated by this arena with `old` (caller's
        // guarantee), so by `self.bump`; bumpalo grows in place when it is
        // the last allocation and copies otherwise.
        let p = unsafe { (&self.bump).grow(ptr, old, new) }?;
        // bumpalo grows the last allocation within its own chunk space (in
        // place, or by bumping down `new - old` bytes and moving the data
        // over the old block): the new block overlaps the old one and only
        // the extension is new. Otherwise it copies to a fresh block, and
        // the old one stays handed out until reset: the new one counts whole.
        let (old_start, new_start) = (ptr.as_ptr() as usize, p.cast::<u8>().as_ptr() as usize);
        let overlaps = new_start < old_start + old.size() && old_start < new_start + new.size();
        let added = if overlaps || old.size() == 0 {
            new.size() - old.size()
        } else {
            new.size()
        };
        self.in_use.set(self.in_use.get() + added);
        Ok(p)
    }

    #[inline]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: as in `grow`; the caller guarantees `new.size() <= old.size()`.
        unsafe { (&self.bump).shrink(ptr, old, new) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocator_api2::vec::Vec;

    /// `grow` that cannot extend in place copies to a new block; the old one
    /// stays handed out until reset, so both count.
    #[test]
    fn grow_that_moves_counts_the_new_block_whole() {
        let arena = FrameArena::with_capacity(1 << 16);
        let mut a: Vec<u8, &FrameArena> = Vec::with_capacity_in(16, &arena);
        a.extend_from_slice(&[1; 16]);
        // Not the last allocation any more: growing `a` must move it.
        let b: Vec<u8, &FrameArena> = Vec::with_capacity_in(8, &arena);
        let before = a.as_ptr();
        a.reserve_exact(48); // 16 -> 64 bytes, moved
        assert_ne!(a.as_ptr(), before, "the test needs a moving grow");
        assert_eq!(arena.bytes_in_use(), 16 + 8 + 64);
        // The last allocation grows over its own space: only the extension
        // is new.
        let mut c: Vec<u8, &FrameArena> = Vec::with_capacity_in(8, &arena);
        c.reserve_exact(24); // len 0: 8 -> 24 bytes
        assert_eq!(c.capacity(), 24);
        assert_eq!(arena.bytes_in_use(), 16 + 8 + 64 + 24);
        drop((a, b, c));
    }
}
