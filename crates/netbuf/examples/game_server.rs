//! A TCP game server on netbuf for a protocol with its own 6-byte header
//! (`u16` LE opcode, `u32` LE body length): echo (1, answered with 2 to the
//! sender) and broadcast (3, sent as 4 to every session, sender included).
//!
//! Per connection, a reader thread decodes frames (`LengthDelimited` in a
//! `LinearBuffer`, each body copied once into a `MessagePool` message) and
//! pushes replies into the target sessions' byte-bounded `SendQueue`s; a
//! broadcast is one `SharedMessage`, cloned per recipient. A writer thread
//! per session sleeps on a `CondvarNotify` and drains into a `Flusher`.
//!
//! `cargo run -p netbuf --example game_server` starts the server on
//! 127.0.0.1, runs three clients that check every reply byte for byte,
//! shuts down and exits.

use std::error::Error;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::{thread, time::Duration};

use netbuf::framing::{HeaderBytes, LengthDelimited};
use netbuf::{CondvarNotify, Flusher, GatherThreshold, LinearBuffer, MessagePool};
use netbuf::{OutFrame, Outgoing, SendQueue};

const ECHO: u16 = 1;
const ECHO_REPLY: u16 = 2;
const BROADCAST: u16 = 3;
const BROADCAST_MSG: u16 = 4;
static STOP: AtomicBool = AtomicBool::new(false);

/// One connection's outbox: any thread pushes, only its writer drains.
struct Session {
    queue: SendQueue<OutFrame>,
    wake: Arc<CondvarNotify>,
}

struct Server {
    framing: LengthDelimited,
    pool: MessagePool,
    sessions: Mutex<Vec<Arc<Session>>>,
}

impl Server {
    /// Serves connections until `STOP`; returns once every session ended.
    fn run(&self, listener: TcpListener) {
        thread::scope(|s| {
            for stream in listener.incoming().flatten() {
                if STOP.load(Ordering::Relaxed) {
                    break;
                }
                s.spawn(move || self.session(stream));
            }
        });
    }

    fn session(&self, stream: TcpStream) {
        let wake = Arc::new(CondvarNotify::new());
        let queue = SendQueue::builder().limit(256 << 10).notify(wake.clone());
        let queue = queue.build(); // 256 KiB of frames at most, then refused
        let me = Arc::new(Session { queue, wake });
        let out = stream.try_clone().expect("socket clone");
        // Registered before its first frame is read, so every client gets
        // each broadcast sent after its first reply.
        self.sessions.lock().unwrap().push(me.clone());
        thread::scope(|s| {
            s.spawn(|| write_frames(out, &me));
            if let Err(e) = self.read_frames(stream, &me) {
                eprintln!("server: session closed: {e}");
            }
            let others = |s: &Arc<Session>| !Arc::ptr_eq(s, &me);
            self.sessions.lock().unwrap().retain(others);
            me.queue.close(); // the peer is gone: drop the rest, wake the writer
        });
    }

    /// Decodes frames until the peer closes; any error ends this session only.
    fn read_frames(&self, mut stream: TcpStream, me: &Session) -> Result<(), Box<dyn Error>> {
        // Sized for one maximal frame (header + the 10 KiB default limit).
        let mut buf = LinearBuffer::with_framing(self.framing);
        while buf.read_from(&mut stream)? > 0 {
            // One copy out of the receive buffer, into a pooled message.
            while let Some((header, body)) = buf.next_message(&self.pool)? {
                let h = header.as_slice();
                match u16::from_le_bytes([h[0], h[1]]) {
                    ECHO => self.send(me, ECHO_REPLY, body.into()),
                    BROADCAST => {
                        let news = body.freeze(); // one allocation for all
                        for s in self.sessions.lock().unwrap().iter() {
                            self.send(s, BROADCAST_MSG, news.clone().into());
                        }
                    }
                    op => return Err(format!("unknown opcode {op}").into()),
                }
            }
        }
        Ok(buf.finish()?) // EOF inside a frame is an error too
    }

    /// Queues a frame; the length field (0 here) is filled in by `encode`.
    fn send(&self, to: &Session, opcode: u16, body: Outgoing) {
        let [lo, hi] = opcode.to_le_bytes();
        let header = HeaderBytes::from([lo, hi, 0, 0, 0, 0]);
        let frame = OutFrame::encode(&self.framing, &header, body).expect("body under the limit");
        // Full (a client too slow to read) or closed (leaving): dropped.
        if let Err(e) = to.queue.try_push(frame) {
            eprintln!("server: frame dropped: {e}");
        }
    }
}

/// Drains the session's queue into a flusher until the queue is closed.
fn write_frames(mut stream: TcpStream, me: &Session) {
    // Bodies of 4 KiB and more go to write_vectored without a copy.
    let mut flusher = Flusher::new(GatherThreshold::Bytes(4096));
    loop {
        let drained = me.queue.drain_each(64, |frame| flusher.push(frame));
        // Blocking socket: flush returns once everything is written.
        if flusher.flush(&mut stream).is_err() || me.queue.is_closed() {
            return;
        }
        if drained.idle {
            me.wake.wait(); // until the next push into the empty queue
        }
    }
}

/// A frame built by hand, as a client in another language would, so the
/// checks do not rely on netbuf's encoder.
fn frame(opcode: u16, body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_le_bytes();
    [&opcode.to_le_bytes()[..], &len, body].concat()
}

fn check(client: &mut TcpStream, want: &[u8]) {
    let mut got = vec![0; want.len()];
    client.read_exact(&mut got).expect("reply before timeout");
    assert_eq!(got, want);
}

fn main() -> Result<(), Box<dyn Error>> {
    let framing = LengthDelimited::builder()
        .length_field_offset(2)
        .little_endian()
        .header_len(6)
        .build()?;
    let pool = MessagePool::new();
    let server = Server {
        framing,
        pool: pool.clone(),
        sessions: Mutex::default(),
    };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let acceptor = thread::spawn(move || server.run(listener));

    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(Duration::from_secs(2)))?; // never hang
        let hello = format!("hello from client {i}");
        c.write_all(&frame(ECHO, hello.as_bytes()))?;
        check(&mut c, &frame(ECHO_REPLY, hello.as_bytes()));
        clients.push(c);
    }
    // Three frames in two writes cut inside the second header. The 6000-byte
    // body is past the 4 KiB pool block (a heap message), gathered on send.
    let echoes = |op| [frame(op, b"ping"), frame(op, b""), frame(op, &[7; 6000])].concat();
    let (wire, c) = (echoes(ECHO), &mut clients[0]);
    c.write_all(&wire[..13])?;
    thread::sleep(Duration::from_millis(20)); // so the server reads a part
    c.write_all(&wire[13..])?;
    check(c, &echoes(ECHO_REPLY));
    // Every client has had a reply, so all three are registered.
    c.write_all(&frame(BROADCAST, b"round 1 starts"))?;
    for c in &mut clients {
        check(c, &frame(BROADCAST_MSG, b"round 1 starts"));
    }
    // Half-close: the server closes its side when the session ends, so an
    // empty EOF also shows that nothing stray was sent.
    for c in &mut clients {
        c.shutdown(Shutdown::Write)?;
        assert_eq!(c.read(&mut [0; 1])?, 0);
    }
    STOP.store(true, Ordering::Relaxed);
    drop(TcpStream::connect(addr)?); // wakes accept() to see STOP
    acceptor.join().unwrap();

    // 7 frames received, 7 messages: the broadcast to 3 was one of them.
    let stats = pool.stats();
    let (pooled, heap) = (stats.pooled_allocs, stats.heap_allocs);
    assert_eq!((pooled + heap, stats.live_messages), (7, 0));
    println!("3 clients: 6 echoes and 1 broadcast (to 3) checked byte for byte");
    println!("pool: {pooled} pooled + {heap} heap messages, none alive at the end");
    Ok(())
}
