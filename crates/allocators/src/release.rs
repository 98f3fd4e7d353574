//! [`release_free_memory`]: ask the selected allocator to give the memory it
//! holds free back to the operating system, whatever allocator it is.
//!
//! Every allocator keeps freed memory for reuse: glibc's malloc in its
//! arenas (trimmed only at the top of the main heap), mimalloc in its
//! segments and pages until their purge delay passes, jemalloc in dirty
//! pages until their decay time passes (10 s by default). A service that
//! goes idle after a burst calls this once to see its resident set drop
//! back to what it still uses.

/// What [`release_free_memory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// The allocator that was asked.
    pub allocator: crate::AllocatorKind,
    /// Whether the allocator reported that it returned memory (glibc's
    /// `malloc_trim` says so; mimalloc and jemalloc do not report it, so
    /// this is `true` when the call succeeded).
    pub released: bool,
}

/// Asks the selected allocator ([`active()`](crate::active)) to return
/// free memory to the operating system:
///
/// * system (glibc): `malloc_trim(0)`, every arena, including free pages
///   in the middle of a heap; on other C libraries, nothing;
/// * mimalloc: `mi_collect(true)` (the calling thread's heap and the
///   abandoned segments; other threads purge theirs after mimalloc's purge
///   delay on their own);
/// * jemalloc: flushes the calling thread's cache (`thread.tcache.flush`)
///   and purges every arena's dirty pages (`arena.<all>.purge`).
///
/// It costs a walk over the allocator's free memory (a few milliseconds on
/// a large heap): call it when a service goes idle, not on a hot path.
///
/// ```
/// let r = allocators::release_free_memory();
/// assert_eq!(r.allocator, allocators::active());
/// ```
pub fn release_free_memory() -> Released {
    Released {
        allocator: crate::active(),
        released: imp::release(),
    }
}

/// The calling thread's part of [`release_free_memory`], cheap enough for
/// a worker thread to call whenever it goes idle: what only the thread
/// itself can give back.
///
/// * mimalloc: `mi_collect(true)` on this thread's heap. mimalloc keeps a
///   heap per thread, and memory freed into it (by this thread or, later,
///   by others) is only purged by the owning thread, so one call from one
///   thread ([`release_free_memory`]) leaves every other worker's free
///   pages resident;
/// * jemalloc: flushes this thread's cache (`thread.tcache.flush`);
/// * system: nothing (glibc's arenas are trimmed process-wide by
///   [`release_free_memory`]); returns `false`.
///
/// ```
/// std::thread::spawn(|| {
///     drop(vec![0u8; 1 << 20]);
///     allocators::release_thread_memory();
/// })
/// .join()
/// .unwrap();
/// ```
pub fn release_thread_memory() -> bool {
    imp::release_thread()
}

#[cfg(feature = "jemalloc")]
mod imp {
    use core::ffi::c_char;

    fn ctl(name: &[u8]) -> bool {
        debug_assert_eq!(name.last(), Some(&0));
        // SAFETY: `name` is a NUL-terminated mallctl name of a void command
        // (no old or new value: null pointers and zero length).
        unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr() as *const c_char,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                0,
            ) == 0
        }
    }

    pub(super) fn release() -> bool {
        // MALLCTL_ARENAS_ALL is 4096.
        let flushed = release_thread();
        ctl(b"arena.4096.purge\0") && flushed
    }

    pub(super) fn release_thread() -> bool {
        ctl(b"thread.tcache.flush\0")
    }
}

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
mod imp {
    unsafe extern "C" {
        // Part of mimalloc's C API, linked by `libmimalloc-sys` (whose Rust
        // declaration sits behind its `extended` feature).
        fn mi_collect(force: bool);
    }

    pub(super) fn release() -> bool {
        // SAFETY: `mi_collect` takes no pointer and may be called from any
        // thread at any time.
        unsafe { mi_collect(true) };
        true
    }

    pub(super) fn release_thread() -> bool {
        // `mi_collect` works on the calling thread's heap (and reclaims
        // abandoned segments): the same call.
        release()
    }
}

#[cfg(not(any(feature = "mimalloc", feature = "jemalloc")))]
mod imp {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub(super) fn release() -> bool {
        // SAFETY: `malloc_trim` takes no pointer and is thread-safe (it
        // locks each arena in turn).
        unsafe { libc::malloc_trim(0) == 1 }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    pub(super) fn release() -> bool {
        false
    }

    pub(super) fn release_thread() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callable_under_the_selected_allocator() {
        // Free something sizeable first so there is memory to give back.
        let v: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 64 << 10]).collect();
        drop(v);
        let r = release_free_memory();
        assert_eq!(r.allocator, crate::active());
        if cfg!(any(feature = "mimalloc", feature = "jemalloc")) {
            assert!(r.released);
        }
        // A second call right after is harmless.
        release_free_memory();
    }

    #[test]
    fn thread_release_reports_what_the_allocator_does() {
        let r = std::thread::spawn(|| {
            drop((0..16).map(|_| vec![1u8; 64 << 10]).collect::<Vec<_>>());
            release_thread_memory()
        })
        .join()
        .unwrap();
        // Only mimalloc and jemalloc have a per-thread part to release.
        assert_eq!(r, cfg!(any(feature = "mimalloc", feature = "jemalloc")));
    }
}
