//! An `allocator-api2` [`Allocator`] over any [`GlobalAlloc`].
//!
//! Lets a container use a specific allocator (the selected one, or mimalloc
//! in a binary whose global allocator is the system's) without changing the
//! process-wide choice:
//!
//! ```
//! use allocator_api2::vec::Vec;
//! let mut v: Vec<u8, _> = Vec::new_in(allocators::selected_handle());
//! v.extend_from_slice(b"hello");
//! assert_eq!(&v[..], b"hello");
//! ```

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};

use crate::selected::{SELECTED, Selected};

/// A handle that implements [`Allocator`] by calling a [`GlobalAlloc`].
///
/// Zero-sized requests never reach the allocator: they get a dangling,
/// well-aligned pointer, as `allocator-api2`'s own `Global` does.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalHandle<A>(pub A);

/// A handle on the allocator the cargo features select.
pub type SelectedHandle = GlobalHandle<Selected>;

/// A handle on the allocator the cargo features select.
pub const fn selected_handle() -> SelectedHandle {
    GlobalHandle(SELECTED)
}

#[inline]
fn dangling(layout: Layout) -> NonNull<[u8]> {
    // An address equal to the alignment is non-null and aligned; nothing is
    // ever read or written through a zero-length slice.
    let ptr = core::ptr::without_provenance_mut::<u8>(layout.align());
    // SAFETY: `layout.align()` is never zero, so `ptr` is non-null.
    let ptr = unsafe { NonNull::new_unchecked(ptr) };
    NonNull::slice_from_raw_parts(ptr, 0)
}

/// The block of `size` bytes at `p` that `A` returned, or `AllocError` if
/// it returned null.
#[inline]
fn block(p: *mut u8, size: usize) -> Result<NonNull<[u8]>, AllocError> {
    NonNull::new(p)
        .map(|p| NonNull::slice_from_raw_parts(p, size))
        .ok_or(AllocError)
}

// SAFETY: memory returned by `allocate` comes from `A::alloc` with the same
// layout and stays valid until `deallocate` hands it back to `A::dealloc`
// with that layout; zero-sized blocks never touch `A`. Copies of the handle
// call the same `A` (a `GlobalAlloc` is process-wide by contract).
unsafe impl<A: GlobalAlloc> Allocator for GlobalHandle<A> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_with(layout, false)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_with(layout, true)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: the caller guarantees `ptr` was allocated by this handle
            // with `layout`; non-zero sizes came from `A::alloc`.
            unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
        }
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded; see `resize`.
        unsafe { self.resize(ptr, old, new) }
    }

    #[inline]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded; see `resize`.
        unsafe { self.resize(ptr, old, new) }
    }
}

impl<A: GlobalAlloc> GlobalHandle<A> {
    /// `allocate` and (`zeroed`) `allocate_zeroed`: a dangling block for a
    /// zero size, otherwise `A::alloc` or (`zeroed`) `A::alloc_zeroed`.
    #[inline]
    fn allocate_with(&self, layout: Layout, zeroed: bool) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        // SAFETY: `layout` has a non-zero size, checked above.
        let p = unsafe {
            if zeroed {
                self.0.alloc_zeroed(layout)
            } else {
                self.0.alloc(layout)
            }
        };
        block(p, layout.size())
    }

    /// `realloc` when it is allowed (same alignment, both sizes non-zero),
    /// otherwise allocate + copy + free.
    ///
    /// # Safety
    /// `ptr` is allocated by this handle with `old`, as `Allocator::grow` and
    /// `Allocator::shrink` require.
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.align() == new.align() && old.size() != 0 && new.size() != 0 {
            // SAFETY: `ptr` came from `A::alloc` with `old` (non-zero size);
            // `new.size()` is non-zero and, being the size of a valid
            // `Layout` with the same alignment, does not overflow `isize`
            // when rounded up to it.
            let p = unsafe { self.0.realloc(ptr.as_ptr(), old, new.size()) };
            return block(p, new.size());
        }
        let fresh = self.allocate(new)?;
        let n = old.size().min(new.size());
        // SAFETY: both blocks are valid for `n` bytes and distinct (`fresh`
        // is a new allocation); `ptr` is then freed with its own layout.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.as_ptr().cast::<u8>(), n);
            self.deallocate(ptr, old);
        }
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocator_api2::vec::Vec;

    #[test]
    fn vec_grows_and_shrinks_through_handle() {
        let mut v: Vec<u32, _> = Vec::new_in(GlobalHandle(std::alloc::System));
        for i in 0..1000 {
            v.push(i);
        }
        v.truncate(3);
        v.shrink_to_fit();
        assert_eq!(&v[..], &[0, 1, 2]);
        let z: Vec<(), _> = Vec::with_capacity_in(10, selected_handle());
        assert_eq!(z.len(), 0);
    }

    #[test]
    fn zeroed_and_zero_sized_blocks() {
        let h = GlobalHandle(std::alloc::System);
        let layout = Layout::from_size_align(64, 16).unwrap();
        let p = h.allocate_zeroed(layout).unwrap();
        assert_eq!(p.len(), 64);
        // SAFETY: `p` is a live, zeroed block of 64 bytes, freed with its
        // own layout.
        unsafe {
            assert!(p.as_ref().iter().all(|&b| b == 0));
            h.deallocate(p.cast(), layout);
        }
        let empty = Layout::from_size_align(0, 32).unwrap();
        for z in [
            h.allocate(empty).unwrap(),
            h.allocate_zeroed(empty).unwrap(),
        ] {
            assert_eq!((z.len(), z.cast::<u8>().as_ptr() as usize), (0, 32));
            // SAFETY: allocated by `h` with `empty` (zero-sized: `System`
            // never sees it).
            unsafe { h.deallocate(z.cast(), empty) };
        }
    }

    #[test]
    fn alignment_change_copies() {
        let h = GlobalHandle(std::alloc::System);
        let old = Layout::from_size_align(8, 8).unwrap();
        let new = Layout::from_size_align(64, 64).unwrap();
        let p = h.allocate(old).unwrap().cast::<u8>();
        // SAFETY: `p` is valid for 8 bytes, then grown with its own layout
        // and freed with the new one.
        unsafe {
            p.as_ptr().copy_from(b"abcdefgh".as_ptr(), 8);
            let q = h.grow(p, old, new).unwrap().cast::<u8>();
            assert_eq!(q.as_ptr() as usize % 64, 0);
            assert_eq!(core::slice::from_raw_parts(q.as_ptr(), 8), b"abcdefgh");
            h.deallocate(q, new);
        }
    }
}
