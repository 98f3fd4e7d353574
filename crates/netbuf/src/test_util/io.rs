//! Scripted socket doubles: a reader and a writer whose every call follows
//! a script (chunk sizes, `WouldBlock`, `Interrupted`, errors).

use std::borrow::Cow;
use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::ops::Range;

use crate::ReadUninit;

/// What one call of a [`ScriptedReader`] or [`ScriptedWriter`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Moves at most this many bytes (also capped by the caller's buffer
    /// and, for a reader, by the bytes left). `Take(0)` returns `Ok(0)`: an
    /// early end of stream from a reader, a zero-length write from a writer.
    Take(usize),
    /// Fails with [`io::ErrorKind::WouldBlock`], moving nothing.
    WouldBlock,
    /// Fails with [`io::ErrorKind::Interrupted`], moving nothing.
    Interrupted,
    /// Fails with this error kind, moving nothing.
    Fail(io::ErrorKind),
}

impl Step {
    /// Every byte the call can move.
    pub const ALL: Step = Step::Take(usize::MAX);

    /// The byte limit of this step, or its error.
    fn limit(self) -> io::Result<usize> {
        match self {
            Step::Take(n) => Ok(n),
            Step::WouldBlock => Err(io::ErrorKind::WouldBlock.into()),
            Step::Interrupted => Err(io::ErrorKind::Interrupted.into()),
            Step::Fail(kind) => Err(kind.into()),
        }
    }
}

/// The sequence of [`Step`]s a scripted reader or writer follows, one per
/// call: a list (cycled, or played once and then [`Step::ALL`]), or a
/// closure (for pseudo-random schedules).
///
/// ```
/// use netbuf::test_util::{Rng, Script, Step};
///
/// let mut s = Script::cycle(vec![Step::Take(3), Step::WouldBlock]);
/// assert_eq!(s.next_step(), Step::Take(3));
/// assert_eq!(s.next_step(), Step::WouldBlock);
/// assert_eq!(s.next_step(), Step::Take(3));
///
/// let mut s = Script::once(vec![Step::Interrupted]);
/// assert_eq!(s.next_step(), Step::Interrupted);
/// assert_eq!(s.next_step(), Step::ALL);
///
/// let mut rng = Rng::new(1);
/// let mut s = Script::from_fn(move || Step::Take(1 + rng.below(100)));
/// assert!(matches!(s.next_step(), Step::Take(1..=100)));
/// ```
pub struct Script<'a>(Source<'a>);

enum Source<'a> {
    Steps {
        steps: Cow<'a, [Step]>,
        next: usize,
        cycle: bool,
    },
    Fn(Box<dyn FnMut() -> Step + Send + 'a>),
}

impl<'a> Script<'a> {
    /// [`Step::ALL`] on every call: a well-behaved, fast peer.
    pub fn unlimited() -> Script<'a> {
        Script::cycle(Vec::new())
    }

    /// `steps` in order, over and over (an empty list: [`unlimited`](Self::unlimited)).
    pub fn cycle(steps: impl Into<Cow<'a, [Step]>>) -> Script<'a> {
        Script(Source::Steps {
            steps: steps.into(),
            next: 0,
            cycle: true,
        })
    }

    /// `steps` in order once, then [`Step::ALL`] on every call.
    pub fn once(steps: impl Into<Cow<'a, [Step]>>) -> Script<'a> {
        Script(Source::Steps {
            steps: steps.into(),
            next: 0,
            cycle: false,
        })
    }

    /// `Take(size)` for each of `sizes`, cycled (see [`Step::Take`] for a
    /// size of 0).
    pub fn chunks(sizes: &[usize]) -> Script<'a> {
        Script::cycle(sizes.iter().map(|&n| Step::Take(n)).collect::<Vec<_>>())
    }

    /// The step `f` returns, on every call.
    pub fn from_fn(f: impl FnMut() -> Step + Send + 'a) -> Script<'a> {
        Script(Source::Fn(Box::new(f)))
    }

    /// The step of the next call.
    pub fn next_step(&mut self) -> Step {
        match &mut self.0 {
            Source::Steps { steps, next, cycle } => {
                if steps.is_empty() || (!*cycle && *next >= steps.len()) {
                    return Step::ALL;
                }
                let s = steps[*next % steps.len()];
                *next += 1;
                s
            }
            Source::Fn(f) => f(),
        }
    }
}

impl Default for Script<'_> {
    fn default() -> Self {
        Script::unlimited()
    }
}

impl fmt::Debug for Script<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Steps { steps, next, cycle } => f
                .debug_struct("Script")
                .field("steps", steps)
                .field("next", next)
                .field("cycle", cycle)
                .finish(),
            Source::Fn(_) => f.write_str("Script(<fn>)"),
        }
    }
}

/// Fails every call after the first `calls` with `kind`.
#[derive(Debug, Clone, Copy)]
struct FailAfter {
    calls: u64,
    kind: io::ErrorKind,
}

/// A socket double that serves a byte stream as its [`Script`] says: at
/// most `n` bytes a read, `WouldBlock`, `Interrupted`, errors; then
/// `Ok(0)` (end of stream) once every byte is served. Implements
/// [`Read`] and [`ReadUninit`].
///
/// ```
/// use std::io::{ErrorKind, Read};
/// use netbuf::test_util::{Script, ScriptedReader, Step};
///
/// let mut r = ScriptedReader::new(&b"hello world"[..])
///     .with_script(Script::cycle(vec![Step::Take(4), Step::WouldBlock]))
///     .pause_at([6]);
/// let mut buf = [0u8; 16];
/// assert_eq!(r.read(&mut buf).unwrap(), 4); // "hell"
/// assert_eq!(r.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
/// assert_eq!(r.read(&mut buf).unwrap(), 2); // "o ": never past a pause
/// assert_eq!(r.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock); // the pause
/// assert_eq!(r.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock); // the script
/// assert_eq!(r.read(&mut buf).unwrap(), 4); // "worl"
///
/// // A reader that claims more than the buffer it was given.
/// let mut liar = ScriptedReader::new(&b""[..]).overclaim(1);
/// assert_eq!(liar.read(&mut buf).unwrap(), 17);
/// ```
#[derive(Debug)]
pub struct ScriptedReader<'a> {
    data: Cow<'a, [u8]>,
    pos: usize,
    script: Script<'a>,
    /// Offsets a read never crosses, ascending; reaching one, the next read
    /// is a `WouldBlock` (which removes it).
    pauses: Vec<usize>,
    fail_after: Option<FailAfter>,
    overclaim: Option<usize>,
    calls: u64,
}

impl<'a> ScriptedReader<'a> {
    /// A reader of `data` (borrowed or owned) that serves all it can on
    /// every read, until a script is set.
    pub fn new(data: impl Into<Cow<'a, [u8]>>) -> ScriptedReader<'a> {
        ScriptedReader {
            data: data.into(),
            pos: 0,
            script: Script::unlimited(),
            pauses: Vec::new(),
            fail_after: None,
            overclaim: None,
            calls: 0,
        }
    }

    /// A reader of `data` in chunks of `sizes` (cycled): [`Script::chunks`].
    pub fn chunks(data: impl Into<Cow<'a, [u8]>>, sizes: &[usize]) -> ScriptedReader<'a> {
        ScriptedReader::new(data).with_script(Script::chunks(sizes))
    }

    /// Follows `script` from the next read on.
    pub fn with_script(mut self, script: Script<'a>) -> ScriptedReader<'a> {
        self.script = script;
        self
    }

    /// Replaces the script (a socket that was blocked becomes readable).
    pub fn set_script(&mut self, script: Script<'a>) {
        self.script = script;
    }

    /// No read crosses any of `offsets`; when the stream position reaches
    /// one, the next read is a `WouldBlock` (once), before the script's step.
    pub fn pause_at(mut self, offsets: impl IntoIterator<Item = usize>) -> ScriptedReader<'a> {
        self.pauses.extend(offsets);
        self.pauses.sort_unstable();
        self.pauses.dedup();
        self
    }

    /// Every read after the first `calls` fails with `kind`.
    pub fn fail_after(mut self, calls: u64, kind: io::ErrorKind) -> ScriptedReader<'a> {
        self.fail_after = Some(FailAfter { calls, kind });
        self
    }

    /// Lies: every successful [`Read::read`] copies what the script allows
    /// but returns the buffer's length plus `extra`. (The [`ReadUninit`]
    /// impl never lies: its contract forbids it.)
    pub fn overclaim(mut self, extra: usize) -> ScriptedReader<'a> {
        self.overclaim = Some(extra);
        self
    }

    /// Bytes served so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not served yet.
    pub fn remaining(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    /// Calls so far (`read` and `read_uninit`, errors included).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// The range of `data` the next call serves, into a buffer of `room`.
    fn next_range(&mut self, room: usize) -> io::Result<Range<usize>> {
        self.calls += 1;
        if let Some(f) = self.fail_after
            && self.calls > f.calls
        {
            return Err(f.kind.into());
        }
        if self.pauses.first() == Some(&self.pos) {
            self.pauses.remove(0);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let limit = self.script.next_step().limit()?;
        let end = self.pauses.first().copied().unwrap_or(self.data.len());
        let n = limit.min(room).min(end - self.pos);
        self.pos += n;
        Ok(self.pos - n..self.pos)
    }
}

impl Read for ScriptedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let range = self.next_range(buf.len())?;
        let n = range.len();
        buf[..n].copy_from_slice(&self.data[range]);
        Ok(match self.overclaim {
            Some(extra) => buf.len() + extra,
            None => n,
        })
    }
}

// SAFETY: `&[u8]`'s `read_uninit` writes the chunk (at most `buf.len()`
// bytes, `next_range` caps it) at the front of `buf` and returns its
// length; `buf` is never read, and the count is never inflated.
unsafe impl ReadUninit for ScriptedReader<'_> {
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        let range = self.next_range(buf.len())?;
        let mut chunk = &self.data[range];
        chunk.read_uninit(buf)
    }
}

/// A socket double that accepts bytes as its [`Script`] says: at most `n`
/// bytes a call (across the slices of a vectored write), `WouldBlock`,
/// `Interrupted`, errors; it records every byte it accepted. It can fail
/// for good after some calls, and lie about the counts.
///
/// ```
/// use std::io::{ErrorKind, IoSlice, Write};
/// use netbuf::test_util::{Script, ScriptedWriter, Step};
///
/// let mut w = ScriptedWriter::new()
///     .with_script(Script::cycle(vec![Step::Take(3), Step::Interrupted]))
///     .fail_after(3, ErrorKind::BrokenPipe);
/// assert_eq!(w.write(b"hello").unwrap(), 3);
/// assert_eq!(w.write(b"lo").unwrap_err().kind(), ErrorKind::Interrupted);
/// let bufs = [IoSlice::new(b"l"), IoSlice::new(b"o!")];
/// assert_eq!(w.write_vectored(&bufs).unwrap(), 3);
/// assert_eq!(w.write(b"?").unwrap_err().kind(), ErrorKind::BrokenPipe);
/// assert_eq!(w.written(), b"hello!");
/// assert_eq!((w.calls(), w.vectored_calls()), (4, 1));
///
/// // A writer that claims 5 bytes more than it was given.
/// let mut liar = ScriptedWriter::new().overclaim(5);
/// assert_eq!(liar.write(b"abc").unwrap(), 8);
/// assert_eq!(liar.written(), b"abc");
/// ```
#[derive(Debug, Default)]
pub struct ScriptedWriter<'a> {
    written: Vec<u8>,
    script: Script<'a>,
    fail_after: Option<FailAfter>,
    overclaim: usize,
    calls: u64,
    vectored_calls: u64,
}

impl<'a> ScriptedWriter<'a> {
    /// A writer that accepts every byte, until a script is set.
    pub fn new() -> ScriptedWriter<'a> {
        ScriptedWriter::default()
    }

    /// A writer taking at most `limits[i]` bytes on call `i` (cycled), and
    /// `WouldBlock` where the limit is 0.
    pub fn limits(limits: &[usize]) -> ScriptedWriter<'a> {
        let steps: Vec<Step> = limits
            .iter()
            .map(|&l| {
                if l == 0 {
                    Step::WouldBlock
                } else {
                    Step::Take(l)
                }
            })
            .collect();
        ScriptedWriter::new().with_script(Script::cycle(steps))
    }

    /// Follows `script` from the next call on.
    pub fn with_script(mut self, script: Script<'a>) -> ScriptedWriter<'a> {
        self.script = script;
        self
    }

    /// Replaces the script.
    pub fn set_script(&mut self, script: Script<'a>) {
        self.script = script;
    }

    /// Every call after the first `calls` fails with `kind` (without a
    /// step of the script).
    pub fn fail_after(mut self, calls: u64, kind: io::ErrorKind) -> ScriptedWriter<'a> {
        self.fail_after = Some(FailAfter { calls, kind });
        self
    }

    /// Lies: every successful write returns `extra` bytes more than it
    /// accepted (and recorded).
    pub fn overclaim(mut self, extra: usize) -> ScriptedWriter<'a> {
        self.overclaim = extra;
        self
    }

    /// The bytes accepted so far, in order.
    pub fn written(&self) -> &[u8] {
        &self.written
    }

    /// The bytes accepted, taken out.
    pub fn into_written(self) -> Vec<u8> {
        self.written
    }

    /// Calls so far (`write` and `write_vectored`, errors included).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// `write_vectored` calls so far.
    pub fn vectored_calls(&self) -> u64 {
        self.vectored_calls
    }

    /// The byte limit of the next call, or its error.
    fn next_limit(&mut self) -> io::Result<usize> {
        self.calls += 1;
        if let Some(f) = self.fail_after
            && self.calls > f.calls
        {
            return Err(f.kind.into());
        }
        self.script.next_step().limit()
    }
}

impl Write for ScriptedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.next_limit()?.min(buf.len());
        self.written.extend_from_slice(&buf[..n]);
        Ok(n + self.overclaim)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.vectored_calls += 1;
        let mut limit = self.next_limit()?;
        let mut n = 0;
        for b in bufs {
            if limit == 0 {
                break;
            }
            let k = limit.min(b.len());
            self.written.extend_from_slice(&b[..k]);
            n += k;
            limit -= k;
        }
        Ok(n + self.overclaim)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
