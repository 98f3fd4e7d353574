//! Unit tests of the linear buffer (compaction, growth, direct bodies).

use super::*;
use crate::framing::{HeaderBytes, encode_frame_into};
use crate::test_util::{Script, ScriptedReader, Step};

/// An 8-byte header: u32 LE length, then 4 bytes of the protocol's own.
fn eight(max_body: usize) -> LengthDelimited {
    LengthDelimited::builder()
        .little_endian()
        .header_len(8)
        .max_body(max_body)
        .build()
        .unwrap()
}

fn frames(sizes: &[usize]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &s) in sizes.iter().enumerate() {
        let body: Vec<u8> = (0..s).map(|j| (i + j) as u8).collect();
        let h = HeaderBytes::new(&[0, 0, 0, 0, 5, 0, i as u8, 0]);
        encode_frame_into(&eight(usize::MAX), &mut v, &h, &body).unwrap();
    }
    v
}

#[test]
fn reset_is_free_and_lazy_moves_little() {
    let mut b = LinearBuffer::with_config(64, eight(40), Compaction::Lazy);
    assert_eq!(b.capacity(), 64);
    let wire = frames(&[10, 10]); // 36 bytes
    assert_eq!(b.fill_from_slice(&wire), 36);
    assert!(b.next_frame().unwrap().is_some());
    assert!(b.next_frame().unwrap().is_some());
    assert!(b.next_frame().unwrap().is_none());
    // all consumed: the next fill resets the cursors without moving
    let wire = frames(&[30, 30]); // 76 bytes
    assert_eq!(b.fill_from_slice(&wire), 64);
    assert_eq!(b.stats().compactions, 0);
    assert_eq!(b.stats().resets, 1);
    let f = b.next_frame().unwrap().unwrap();
    assert_eq!(f.body.len(), 30);
    // 26 bytes of the second frame at offset 38; it needs 38 bytes, the
    // tail from 38 has 26 -> compaction of exactly the 26 bytes.
    assert_eq!(b.fill_from_slice(&wire[64..]), 12);
    assert_eq!(b.stats().compactions, 1);
    assert_eq!(b.stats().bytes_moved, 26);
    assert_eq!(b.next_frame().unwrap().unwrap().body.len(), 30);
    assert!(b.finish().is_ok());
}

#[test]
fn every_read_compacts_whenever_consumed() {
    let mut b = LinearBuffer::compact_every_read(64, eight(40));
    let wire = frames(&[4, 4, 4]);
    b.fill_from_slice(&wire[..14]);
    b.next_frame().unwrap().unwrap();
    b.fill_from_slice(&wire[14..]);
    assert_eq!(b.stats().compactions, 1);
    assert_eq!(b.stats().bytes_moved, 2);
}

#[test]
fn full_buffer_of_frames_is_an_error_not_eof() {
    let mut b = LinearBuffer::with_config(16, eight(8), Compaction::Lazy);
    let wire = frames(&[8]);
    assert_eq!(b.fill_from_slice(&wire), 16);
    let err = b.read_from(&mut &b"x"[..]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
    assert!(b.next_frame().unwrap().is_some());
    assert_eq!(b.read_from(&mut &b"x"[..]).unwrap(), 1);
    assert_eq!(b.finish(), Err(DecodeError::Truncated { buffered: 1 }));
}

#[test]
fn direct_bodies_are_not_copied_past_the_short_read() {
    for uninit in [false, true] {
        let st = direct_bodies_with(uninit);
        // `read_from` zeroes each large body's bytes past those staged;
        // `read_from_uninit` zeroes none.
        if uninit {
            assert_eq!(st.bytes_zeroed, 0);
        } else {
            assert!(st.bytes_zeroed >= 300_000, "{st:?}");
        }
    }
}

fn direct_bodies_with(uninit: bool) -> RecvStats {
    let sizes = [100_000, 10, 70_000, 100_000, 0, 40_000];
    let wire = frames(&sizes);
    let pool = MessagePool::new();
    let mut b = LinearBuffer::with_config(16, eight(200_000), Compaction::Lazy);
    b.set_direct_threshold(32 << 10);
    // A WouldBlock right after the first body: the short read holds.
    let first_end = 8 + 100_000;
    let mut r = ScriptedReader::chunks(&wire[..], &[8 << 10]).pause_at([first_end]);
    let mut got = Vec::new();
    loop {
        while let Some((h, m)) = b.next_message(&pool).unwrap() {
            assert_eq!(h.as_slice()[6] as usize, got.len());
            let i = got.len();
            assert!(m.iter().enumerate().all(|(j, &x)| x == (i + j) as u8));
            got.push(m.len());
        }
        let read = if uninit {
            b.read_from_uninit(&mut r)
        } else {
            b.read_from(&mut r)
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, sizes);
    assert!(b.finish().is_ok());
    let st = b.stats();
    assert_eq!(st.direct_bodies, 4);
    // The small frames are copied whole; of the large bodies only the
    // first read's share of the first one and the short reads' share
    // of the others.
    assert!(st.bytes_copied <= (8 << 10) + 3 * DIRECT_HEAD_READ as u64 + 10);
    assert_eq!(st.bytes_read, wire.len() as u64);
    st
}

/// Large bodies over a real socket, read by `read(2)` straight into their
/// uninitialised messages (under valgrind, a byte claimed initialised that
/// was not would be reported when the bodies are checked): nothing zeroed;
/// and mixed with `read_from` reads, which zero what is left of a body:
/// the two keep one account of what is initialised.
#[test]
fn direct_bodies_from_a_socket_are_not_zeroed() {
    assert_eq!(from_socket(None).bytes_zeroed, 0);
    assert!(from_socket(Some(3)).bytes_zeroed > 0);
}

/// Reads frames from a Unix socket with `read_from_uninit`, and with
/// `read_from` every `zero_every`-th read.
fn from_socket(zero_every: Option<u32>) -> RecvStats {
    use std::io::Write;
    let sizes = [256 << 10, 7, 100_000, 256 << 10, 40_000];
    let wire = frames(&sizes);
    let (mut tx, mut rx) = std::os::unix::net::UnixStream::pair().unwrap();
    let writer = std::thread::spawn(move || tx.write_all(&wire));
    let pool = MessagePool::new();
    let mut b = LinearBuffer::with_config(4096, eight(1 << 20), Compaction::Lazy);
    b.set_direct_threshold(32 << 10);
    let (mut got, mut reads) = (Vec::new(), 0u32);
    loop {
        while let Some((h, m)) = b.next_message(&pool).unwrap() {
            let i = got.len();
            assert_eq!(h.as_slice()[6] as usize, i);
            assert!(m.iter().enumerate().all(|(j, &x)| x == (i + j) as u8));
            got.push(m.len());
        }
        reads += 1;
        let n = if zero_every.is_some_and(|k| reads % k == 0) {
            b.read_from(&mut rx).unwrap()
        } else {
            b.read_from_uninit(&mut rx).unwrap()
        };
        if n == 0 {
            break;
        }
    }
    writer.join().unwrap().unwrap();
    assert_eq!(got, sizes);
    assert!(b.finish().is_ok());
    assert_eq!(b.stats().direct_bodies, 4);
    b.stats()
}

#[test]
fn direct_body_views_and_truncation() {
    let wire = frames(&[50_000]);
    let pool = MessagePool::new();
    let mut b = LinearBuffer::with_config(128, eight(60_000), Compaction::Lazy);
    b.set_direct_threshold(1000);
    b.fill_from_slice(&wire[..100]);
    assert!(b.next_message(&pool).unwrap().is_none()); // staged
    assert_eq!(b.buffered(), 92);
    assert!(matches!(b.finish(), Err(DecodeError::Truncated { .. })));
    let mut rest = &wire[100..];
    while b.read_from(&mut rest).unwrap() > 0 {}
    let f = b.next_frame().unwrap().unwrap();
    assert_eq!((f.body.len(), f.body[1]), (50_000, 1));
    assert!(b.next_frame().unwrap().is_none());
    assert!(b.finish().is_ok());
    assert_eq!(b.stats().bytes_copied, 92);
}

#[test]
fn raising_the_limit_grows_and_keeps_bytes() {
    let mut b = LinearBuffer::with_config(16, eight(8), Compaction::Lazy);
    let wire = frames(&[100]);
    b.fill_from_slice(&wire[..10]);
    assert!(matches!(
        b.next_frame(),
        Err(DecodeError::FrameTooLarge { len: 100, max: 8 })
    ));
    b.set_framing(eight(100));
    assert_eq!(b.allocated(), 16);
    b.fill_from_slice(&wire[10..]);
    assert_eq!(b.allocated(), 108); // grown for the frame being received
    let f = b.next_frame().unwrap().unwrap();
    assert_eq!(f.body, &wire[8..]);
}

/// With no storage, a read goes to the stack first: `WouldBlock` and end
/// of stream take nothing; bytes take the storage and decode as usual, and
/// after a release the next read probes again.
#[test]
fn reads_without_storage_allocate_only_when_bytes_come() {
    let wire = frames(&[3, 700, 5]);
    let mut b = LinearBuffer::with_config(1024, eight(800), Compaction::Lazy);
    let mut r = ScriptedReader::new(&wire[..]).with_script(Script::cycle(vec![Step::WouldBlock]));
    let e = b.read_from(&mut r).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert_eq!((b.allocated(), b.stats().probe_reads), (0, 1));
    r.set_script(Script::unlimited());
    // The probe read brings PROBE_READ bytes: the first frame whole and the
    // start of the second; the storage is taken for them.
    assert_eq!(b.read_from(&mut r).unwrap(), PROBE_READ);
    assert_eq!(b.allocated(), 1024);
    assert_eq!(b.next_frame().unwrap().unwrap().body, &[0u8, 1, 2][..]);
    assert!(b.next_frame().unwrap().is_none());
    let mut bodies = Vec::new();
    while b.read_from(&mut r).unwrap() > 0 {
        while let Some(f) = b.next_frame().unwrap() {
            bodies.push(f.body.len());
        }
    }
    assert_eq!(bodies, [700, 5]);
    assert_eq!(b.stats().probe_reads, 2);
    assert_eq!(b.stats().bytes_read, wire.len() as u64);
    assert_eq!(b.release_if_empty(), 1024);
    // End of stream with no storage: nothing taken.
    assert_eq!(b.read_from(&mut r).unwrap(), 0);
    assert_eq!((b.allocated(), b.stats().probe_reads), (0, 3));
    assert!(b.finish().is_ok());
}

/// A first read that brings fewer bytes than the probe (a hello, a join)
/// takes storage of the probe's size, not the capacity; the next read
/// takes the capacity, keeping what is buffered, and frames that span the
/// two decode whole.
#[test]
fn a_short_first_read_takes_small_storage_until_more_comes() {
    let wire = frames(&[3, 700, 5]);
    let mut b = LinearBuffer::with_config(4096, eight(800), Compaction::Lazy);
    // 11 bytes of the first frame, then 20 of the second frame's 708.
    let mut r = ScriptedReader::chunks(&wire[..31], &[11]);
    assert_eq!(b.read_from(&mut r).unwrap(), 11);
    assert_eq!(b.allocated(), PROBE_READ);
    assert_eq!(b.next_frame().unwrap().unwrap().body, &[0u8, 1, 2][..]);
    // Storage stays small while empty; the next read takes the capacity.
    assert_eq!(b.allocated(), PROBE_READ);
    assert_eq!(b.read_from(&mut r).unwrap(), 11);
    assert_eq!(b.allocated(), 4096);
    assert!(b.next_frame().unwrap().is_none());
    let mut r = ScriptedReader::new(&wire[22..]);
    let mut bodies = Vec::new();
    while b.read_from(&mut r).unwrap() > 0 {
        while let Some(f) = b.next_frame().unwrap() {
            bodies.push(f.body.len());
        }
    }
    assert_eq!(bodies, [700, 5]);
    assert_eq!(b.stats().probe_reads, 1);
    assert_eq!(b.release_if_empty(), 4096);

    // A partial frame in small storage: the next read grows and keeps it.
    let mut r = ScriptedReader::chunks(&wire[11..], &[100]);
    assert_eq!(b.read_from(&mut r).unwrap(), 100);
    assert_eq!(b.allocated(), PROBE_READ);
    while b.read_from(&mut r).unwrap() > 0 {}
    let mut bodies = Vec::new();
    while let Some(f) = b.next_frame().unwrap() {
        bodies.push(f.body.len());
    }
    assert_eq!(bodies, [700, 5]);
}

/// With `min_read` 0, small storage grows only when full: by doubling or
/// to the pending frame, as a frame larger than the capacity does.
#[test]
fn small_storage_with_a_strict_min_read_grows_to_the_frame() {
    let wire = frames(&[700]);
    let mut b = LinearBuffer::with_config(4096, eight(800), Compaction::Lazy);
    b.set_min_read(0);
    let mut r = ScriptedReader::chunks(&wire, &[300]);
    assert_eq!(b.read_from(&mut r).unwrap(), 300);
    assert_eq!(b.allocated(), PROBE_READ);
    while b.read_from(&mut r).unwrap() > 0 {}
    assert_eq!(b.next_frame().unwrap().unwrap().body.len(), 700);
    assert!(
        b.allocated() >= 708 && b.allocated() <= 4096,
        "{}",
        b.allocated()
    );
}

/// A probe read that claims more bytes than the stack buffer is an error,
/// not a panic.
#[test]
fn probe_read_rejects_a_lying_reader() {
    let mut liar = ScriptedReader::new(&[][..]).overclaim(1);
    let mut b = LinearBuffer::new();
    let e = b.read_from(&mut liar).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert_eq!(b.allocated(), 0);
}
