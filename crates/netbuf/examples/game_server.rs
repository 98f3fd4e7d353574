//! A TCP game server for a 6-byte header (`u16` LE opcode, `u32` LE length):
//! echo (1, answered with 2) and broadcast (3, sent as 4 to all). A reader
//! thread per connection decodes frames into pooled messages and pushes
//! replies into byte-bounded `SendQueue`s (a broadcast: one `SharedMessage`);
//! a writer thread drains into a `Flusher`. Runs three checking clients.

use std::error::Error;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::{thread, time::Duration};

use netbuf::framing::{HeaderBytes, LengthDelimited};
use netbuf::{CondvarNotify, Flusher, GatherThreshold, LinearBuffer, MessagePool};
use netbuf::{OutFrame, Outgoing, SendQueue};

const ECHO: u16 = 1;
const ECHO_REPLY: u16 = 2;
const BROADCAST: u16 = 3;
const BROADCAST_MSG: u16 = 4;

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
    fn session(&self, stream: TcpStream) {
        let wake = Arc::new(CondvarNotify::new());
        let queue = SendQueue::builder().limit(256 << 10); // then pushes are refused
        let queue = queue.notify(wake.clone()).build();
        let me = Arc::new(Session { queue, wake });
        let out = stream.try_clone().expect("socket clone");
        self.sessions.lock().unwrap().push(me.clone()); // before its first read
        thread::scope(|s| {
            s.spawn(|| write_frames(out, &me));
            if let Err(e) = self.read_frames(stream, &me) {
                eprintln!("server: session closed: {e}"); // this session only
            }
            let mut sessions = self.sessions.lock().unwrap();
            sessions.retain(|s| !Arc::ptr_eq(s, &me));
            me.queue.close(); // the peer is gone: drop the rest, wake the writer
        });
    }

    fn read_frames(&self, mut stream: TcpStream, me: &Session) -> Result<(), Box<dyn Error>> {
        let mut buf = LinearBuffer::with_framing(self.framing); // 16 KiB at first read
        while buf.read_from(&mut stream)? > 0 {
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

    /// Queues a frame; `encode` fills in the length field.
    fn send(&self, to: &Session, opcode: u16, body: Outgoing) {
        let [lo, hi] = opcode.to_le_bytes();
        let header = HeaderBytes::from([lo, hi, 0, 0, 0, 0]);
        let frame = OutFrame::encode(&self.framing, &header, body).expect("body under the limit");
        // Full (a reader too slow for 256 KiB) or closed (leaving): dropped.
        let _ = to.queue.try_push(frame);
    }
}

/// Drains the session's queue into a flusher until the queue is closed.
fn write_frames(mut stream: TcpStream, me: &Session) {
    // Bodies of 4 KiB and more go to write_vectored without a copy.
    let mut flusher = Flusher::new(GatherThreshold::Bytes(4096));
    loop {
        let drained = me.queue.drain_each(64, |frame| flusher.push(frame));
        if flusher.flush(&mut stream).is_err() || me.queue.is_closed() {
            return; // (a blocking socket: flush returns once all is written)
        }
        if drained.idle {
            me.wake.wait(); // until the next push into the empty queue
        }
    }
}

/// A frame built by hand, as a client in another language would.
fn frame(opcode: u16, body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_le_bytes();
    [&opcode.to_le_bytes()[..], &len, body].concat()
}

fn check(client: &mut TcpStream, want: &[u8]) {
    let mut got = vec![0; want.len()];
    client.read_exact(&mut got).unwrap(); // or the 2 s timeout
    assert_eq!(got, want);
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut framing = LengthDelimited::builder();
    let framing = framing.length_field_offset(2).little_endian().header_len(6);
    let (framing, sessions) = (framing.build()?, Mutex::default());
    let pool = MessagePool::new();
    let server = Server {
        framing,
        sessions,
        pool: pool.clone(),
    };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let acceptor = thread::spawn(move || {
        thread::scope(|s| {
            // Three connections here; a real server serves all of them.
            for stream in listener.incoming().take(3).flatten() {
                s.spawn(|| server.session(stream));
            }
        })
    });

    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(Duration::from_secs(2)))?; // never hang
        let hello = format!("hello from client {i}");
        c.write_all(&frame(ECHO, hello.as_bytes()))?;
        check(&mut c, &frame(ECHO_REPLY, hello.as_bytes()));
        clients.push(c);
    }
    // Three frames in one write; the 6000-byte body is past the 4 KiB pool
    // block (a heap message) and is gathered on send.
    let (echoes, c) = (
        |op| [frame(op, b"ping"), frame(op, b""), frame(op, &[7; 6000])],
        &mut clients[0],
    );
    c.write_all(&echoes(ECHO).concat())?;
    check(c, &echoes(ECHO_REPLY).concat());
    c.write_all(&frame(BROADCAST, b"round 1 starts"))?; // all 3 are registered
    for c in &mut clients {
        check(c, &frame(BROADCAST_MSG, b"round 1 starts"));
        c.shutdown(Shutdown::Write)?; // the session ends, the server closes:
        assert_eq!(c.read(&mut [0; 1])?, 0); // nothing stray was sent
    }
    acceptor.join().unwrap();

    // 7 frames received, 7 messages: the broadcast to 3 was one of them.
    let s = pool.stats();
    assert_eq!((s.pooled_allocs + s.heap_allocs, s.live_messages), (7, 0));
    let (pooled, heap) = (s.pooled_allocs, s.heap_allocs);
    println!("3 clients: 6 echoes and 1 broadcast (to 3) checked byte for byte");
    println!("pool: {pooled} pooled + {heap} heap messages, none alive at the end");
    Ok(())
}
