//! `std::io` views of a polled tokio I/O object, so netbuf's buffers and
//! flusher (written against `Read` / `Write`) run inside a `poll` function
//! unchanged: `Poll::Pending` becomes `ErrorKind::WouldBlock`, and the
//! object has registered the task's waker for its readiness.

use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An `AsyncRead` / `AsyncWrite` polled with `cx`, as a `Read` / `Write`.
pub(crate) struct Polled<'a, 'b, T: ?Sized> {
    pub(crate) io: Pin<&'a mut T>,
    pub(crate) cx: &'a mut Context<'b>,
}

fn would_block<T>(p: Poll<io::Result<T>>) -> io::Result<T> {
    match p {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl<T: AsyncRead + ?Sized> Read for Polled<'_, '_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        would_block(self.io.as_mut().poll_read(self.cx, &mut rb))?;
        Ok(rb.filled().len())
    }
}

impl<T: AsyncWrite + ?Sized> Write for Polled<'_, '_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        would_block(self.io.as_mut().poll_write(self.cx, buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        would_block(self.io.as_mut().poll_write_vectored(self.cx, bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        would_block(self.io.as_mut().poll_flush(self.cx))
    }
}
