//! The idiomatic tokio peer: what a Rust user would write for this wire
//! format following tokio's documentation.
//!
//! * A multi-thread runtime, an accept loop, one task per connection.
//! * `Framed<TcpStream, LengthDelimitedCodec>` split into a sink and a
//!   stream (`futures::{SinkExt, StreamExt}`). The codec is configured as
//!   `server_demo::protocol` documents: little-endian 4-byte length field,
//!   `length_adjustment(4)` (kind, flags and room follow the length and are
//!   not counted in it), `num_skip(4)`, so a frame comes out as
//!   `kind, flags, room, body`; `max_frame_length` is compared with the raw
//!   length field, so the body limit is checked by hand.
//! * Echo: the request's buffer, kind byte rewritten, frozen into `Bytes`
//!   and fed to the sink. Rooms: a `tokio::sync::broadcast::Sender<Bytes>`
//!   per room; a session subscribes through a `tokio_stream::StreamMap` of
//!   `BroadcastStream`s (the pattern of tokio's own docs for "subscribe to
//!   several channels"). A lagging member is closed as a slow consumer.
//! * Writes are batched the usual way: frames are `feed`-ed, and the sink is
//!   flushed once nothing else is ready (a `biased` `select!`).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::{PeerConfig, PeerHandle, Request, classify, spawn_server};

/// Starts the peer on `cfg.addr` (default `127.0.0.1:0`) in its own
/// runtime; returns once it listens.
pub fn start(cfg: PeerConfig) -> io::Result<PeerHandle> {
    let shared = Arc::new(Shared {
        rooms: Mutex::new(HashMap::new()),
        cfg: cfg.clone(),
    });
    spawn_server("tokio-peer", &cfg, move |listener| {
        accept_loop(listener, shared)
    })
}

/// The codec of the wire format, configured as `server_demo::protocol` describes.
pub fn codec(max_body: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .little_endian()
        .length_field_offset(0)
        .length_field_length(4)
        .length_adjustment(4)
        .num_skip(4)
        // Compared with the raw length field (the body) on decode and with
        // kind + flags + room + body on encode: the real limit is checked
        // by hand in `classify`.
        .max_frame_length(max_body.saturating_add(4))
        .new_codec()
}

struct Shared {
    rooms: Mutex<HashMap<u16, broadcast::Sender<Bytes>>>,
    cfg: PeerConfig,
}

impl Shared {
    fn subscribe(&self, room: u16) -> broadcast::Receiver<Bytes> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms
            .entry(room)
            .or_insert_with(|| broadcast::channel(self.cfg.room_capacity).0)
            .subscribe()
    }

    fn publish(&self, room: u16, frame: Bytes) {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = rooms.get(&room) {
            // No receivers: nobody to deliver to.
            let _ = tx.send(frame);
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = session(socket, &shared).await {
                        tracing_line(&e);
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing_line(&e);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

fn tracing_line(e: &dyn std::fmt::Display) {
    if std::env::var_os("PEER_LOG").is_some() {
        eprintln!("tokio-peer: session closed: {e}");
    }
}

fn closing(reason: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + reason.len());
    b.extend_from_slice(&[server_demo::protocol::Kind::Closing.as_u8(), 0, 0, 0]);
    b.extend_from_slice(reason.as_bytes());
    b.freeze()
}

async fn session(socket: TcpStream, shared: &Shared) -> io::Result<()> {
    socket.set_nodelay(true)?;
    let max_body = shared.cfg.max_body;
    let (mut sink, mut stream) = Framed::new(socket, codec(max_body)).split();
    let mut rooms: StreamMap<u16, BroadcastStream<Bytes>> = StreamMap::new();
    let mut dirty = false;
    let reason: String = loop {
        tokio::select! {
            biased;
            frame = stream.next() => match frame {
                None => {
                    // End of stream: whatever was fed still goes out.
                    let _ = sink.flush().await;
                    return Ok(());
                }
                Some(Err(e)) => break format!("bad frame: {e}"),
                Some(Ok(mut f)) => {
                    let room = u16::from_le_bytes([f[2], f[3]]);
                    match classify(f[0], f[1], room, f.len() - 4, max_body) {
                        Ok(Request::Echo) => {
                            f[0] = server_demo::protocol::Kind::EchoReply.as_u8();
                            sink.feed(f.freeze()).await?;
                            dirty = true;
                        }
                        Ok(Request::Join(room)) => {
                            rooms.insert(room, BroadcastStream::new(shared.subscribe(room)));
                        }
                        Ok(Request::Leave(room)) => {
                            rooms.remove(&room);
                        }
                        Ok(Request::Publish(room)) => {
                            f[0] = server_demo::protocol::Kind::Delivery.as_u8();
                            shared.publish(room, f.freeze());
                        }
                        Err(reason) => break reason,
                    }
                }
            },
            Some((_, delivery)) = rooms.next(), if !rooms.is_empty() => match delivery {
                Ok(frame) => {
                    sink.feed(frame).await?;
                    dirty = true;
                }
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    break format!("slow consumer: {n} deliveries lost");
                }
            },
            r = sink.flush(), if dirty => {
                r?;
                dirty = false;
            }
        }
    };
    // Bad input or a slow consumer: a closing frame with the reason, then close.
    sink.send(closing(&reason)).await?;
    Err(io::Error::new(io::ErrorKind::InvalidData, reason))
}
