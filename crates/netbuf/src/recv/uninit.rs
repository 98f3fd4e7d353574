//! [`ReadUninit`]: readers that fill uninitialised memory, so a receive
//! buffer does not have to zero a large body's message before each read.

use core::mem::MaybeUninit;
use std::io::{self, Read};

/// A reader that can read into uninitialised memory (`std`'s
/// `Read::read_buf` is not stable yet).
///
/// [`Read::read`] takes `&mut [u8]`, so a receive buffer reading into a
/// fresh message's spare capacity must zero it first: a 256 KiB memset for
/// a 256 KiB body. A `ReadUninit` reader is handed the spare capacity as it
/// is; [`LinearBuffer::read_from_uninit`](crate::LinearBuffer::read_from_uninit)
/// (and [`FrameSource::read_from_uninit`](crate::FrameSource::read_from_uninit))
/// use it for direct bodies (see
/// [`LinearBuffer::set_direct_threshold`](crate::LinearBuffer::set_direct_threshold)).
///
/// Implemented for `&[u8]`, `&mut R`, and on Unix for
/// [`std::net::TcpStream`] and [`std::os::unix::net::UnixStream`] (by
/// `read(2)`, see [`read_fd`]). Another socket type (mio's, tokio's std
/// half) implements it with [`read_fd`] on its file descriptor; any other
/// reader can implement it soundly with [`read_zeroed`] (which zeroes, as
/// `read_from` would).
///
/// # Safety
///
/// When [`read_uninit`](Self::read_uninit) returns `Ok(n)`: `n <=
/// buf.len()` and the first `n` bytes of `buf` were written (initialised)
/// by this call. It never reads a byte of `buf` it did not write (they may
/// be uninitialised), and never writes an uninitialised value into `buf`
/// (callers rely on bytes initialised before the call staying so). On
/// `Err` nothing is assumed about `buf`'s new contents beyond that.
pub unsafe trait ReadUninit: Read {
    /// Reads once into `buf`, as [`Read::read`] would, and returns the
    /// bytes written at its front (`0` at end of stream).
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize>;
}

/// [`ReadUninit::read_uninit`] for any [`Read`]: zeroes `buf`, then reads
/// into it. For readers with no way to fill uninitialised memory, so they
/// can still be passed where a `ReadUninit` is expected.
///
/// ```
/// use std::mem::MaybeUninit;
/// struct Zeros;
/// impl std::io::Read for Zeros {
///     fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
///         buf.fill(0);
///         Ok(buf.len())
///     }
/// }
/// // SAFETY: `read_zeroed` keeps the contract (it initialises all of `buf`
/// // and checks the count the reader returned).
/// unsafe impl netbuf::ReadUninit for Zeros {
///     fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> std::io::Result<usize> {
///         netbuf::read_zeroed(self, buf)
///     }
/// }
/// let mut buf = [MaybeUninit::uninit(); 8];
/// assert_eq!(netbuf::ReadUninit::read_uninit(&mut Zeros, &mut buf).unwrap(), 8);
/// ```
pub fn read_zeroed<R: Read + ?Sized>(r: &mut R, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    buf.fill(MaybeUninit::new(0));
    // SAFETY: every byte of `buf` was initialised just above, and
    // `MaybeUninit<u8>` has the layout of `u8`.
    let dst = unsafe { core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len()) };
    let n = r.read(dst)?;
    check_count(n, buf.len())
}

fn check_count(n: usize, room: usize) -> io::Result<usize> {
    if n > room {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "reader claimed more bytes than the buffer it was given",
        ));
    }
    Ok(n)
}

/// One `read(2)` on `fd` into `buf`, which may be uninitialised: the
/// [`ReadUninit`] of a socket. `EINTR` is returned as
/// [`io::ErrorKind::Interrupted`], `EAGAIN` as `WouldBlock`, as
/// [`Read::read`] on a std socket does.
///
/// ```
/// use std::io::Write;
/// use std::mem::MaybeUninit;
/// use std::os::fd::AsFd;
/// let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
/// a.write_all(b"hello").unwrap();
/// let mut buf = [MaybeUninit::uninit(); 64];
/// assert_eq!(netbuf::read_fd(b.as_fd(), &mut buf).unwrap(), 5);
/// ```
#[cfg(unix)]
pub fn read_fd(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // As std does: a count over `isize::MAX` is an error on some systems.
    let len = buf.len().min(isize::MAX as usize);
    // SAFETY: `fd` is a file descriptor open for the borrow's lifetime;
    // `buf` is valid for writes of `len <= buf.len()` bytes (its contents
    // need not be initialised: read(2) only writes to it, never reads it).
    let ret = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast::<libc::c_void>(), len) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // `ret >= 0` was checked; the kernel never returns more than `len`, but
    // the caller's `set_len` trusts this count, so it is checked anyway.
    check_count(ret as usize, len)
}

// SAFETY: `read_fd` returns `n <= buf.len()` after read(2) wrote `buf[..n]`,
// and read(2) never reads the buffer.
#[cfg(unix)]
unsafe impl ReadUninit for std::net::TcpStream {
    #[inline]
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        read_fd(std::os::fd::AsFd::as_fd(self), buf)
    }
}

// SAFETY: as for `TcpStream` (a `&TcpStream` reads the same socket).
#[cfg(unix)]
unsafe impl ReadUninit for &std::net::TcpStream {
    #[inline]
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        read_fd(std::os::fd::AsFd::as_fd(*self), buf)
    }
}

// SAFETY: as for `TcpStream`.
#[cfg(unix)]
unsafe impl ReadUninit for std::os::unix::net::UnixStream {
    #[inline]
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        read_fd(std::os::fd::AsFd::as_fd(self), buf)
    }
}

// SAFETY: as for `TcpStream`.
#[cfg(unix)]
unsafe impl ReadUninit for &std::os::unix::net::UnixStream {
    #[inline]
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        read_fd(std::os::fd::AsFd::as_fd(*self), buf)
    }
}

// SAFETY: copies `n = min(len, buf.len())` bytes from the slice into
// `buf[..n]` and returns `n`; never reads `buf`.
unsafe impl ReadUninit for &[u8] {
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        let n = self.len().min(buf.len());
        // SAFETY: `n` bytes are readable from `self` and writable in `buf`
        // (`n` is at most either length); a shared slice and an exclusive
        // one never overlap. `MaybeUninit<u8>` has the layout of `u8`.
        unsafe {
            core::ptr::copy_nonoverlapping(self.as_ptr(), buf.as_mut_ptr().cast::<u8>(), n);
        }
        *self = &self[n..];
        Ok(n)
    }
}

// SAFETY: forwards to `R`, which keeps the contract.
unsafe impl<R: ReadUninit + ?Sized> ReadUninit for &mut R {
    #[inline]
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        (**self).read_uninit(buf)
    }
}

// SAFETY: forwards to `R`, which keeps the contract.
unsafe impl<R: ReadUninit + ?Sized> ReadUninit for Box<R> {
    #[inline]
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        (**self).read_uninit(buf)
    }
}
