//! A tokio chat server on netbuf: every message a client sends is
//! broadcast to every connected client, as one `SharedMessage` (one
//! allocation, a reference per recipient) in each session's byte-bounded
//! `SendQueue`, written by a `FrameWriter` task per connection.
//!
//! Frames are a 4-byte big-endian length, then the text. `cargo run -p
//! netbuf-tokio --example chat` starts the server on 127.0.0.1, connects
//! three clients, has each say hello, checks that every client hears all
//! three (each in its sender's order), then exits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use netbuf::framing::{HeaderBytes, LengthDelimited};
use netbuf::{Flusher, MessagePool, OutFrame, Outgoing, SendQueue};
use netbuf_tokio::{FrameReader, outbox};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

type Sessions = Arc<Mutex<HashMap<u64, Arc<SendQueue<OutFrame>>>>>;

async fn serve(listener: TcpListener, framing: LengthDelimited, pool: MessagePool) {
    let sessions: Sessions = Arc::default();
    for id in 0.. {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (rx, tx) = stream.into_split();
        // 256 KiB of queued frames per client; a slower client misses
        // messages (try_push below) instead of slowing the room down.
        let (queue, writer) = outbox(SendQueue::builder().limit(256 << 10));
        sessions.lock().unwrap().insert(id, queue.clone());
        tokio::spawn(writer.writer(tx, Flusher::new(Default::default())).run());
        let (sessions, pool) = (sessions.clone(), pool.clone());
        tokio::spawn(async move {
            let mut frames = FrameReader::linear(rx, framing, pool);
            while let Some(Ok((_, body))) = frames.next().await {
                let msg = body.freeze(); // shared by every recipient
                for q in sessions.lock().unwrap().values() {
                    let out = Outgoing::Shared(msg.clone());
                    let frame = OutFrame::encode(&framing, &HeaderBytes::EMPTY, out).unwrap();
                    let _ = q.try_push(frame); // full: this client misses it
                }
            }
            // Gone (or a bad frame): leave the room, send what is queued.
            sessions.lock().unwrap().remove(&id);
            queue.shutdown();
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let framing = LengthDelimited::default();
    let pool = MessagePool::new();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, framing, pool.clone()));

    // One after the other: a client is in the room once it hears itself,
    // so client i hears hellos i, i+1, ...
    let (mut clients, mut heard) = (Vec::new(), vec![Vec::new(); 3]);
    for (i, heard) in heard.iter_mut().enumerate() {
        let (rx, tx) = TcpStream::connect(addr).await?.into_split();
        clients.push((FrameReader::linear(rx, framing, pool.clone()), tx));
        let (reader, tx) = clients.last_mut().unwrap();
        let text = format!("hello from {i}");
        tx.write_all(&(text.len() as u32).to_be_bytes()).await?;
        tx.write_all(text.as_bytes()).await?;
        loop {
            let (_, body) = reader.next().await.ok_or("server closed")??;
            let said = String::from_utf8(body.to_vec())?;
            heard.push(said.clone());
            if said == text {
                break;
            }
        }
    }
    // Then every client hears the later hellos too, up to the end.
    for (i, (reader, tx)) in clients.iter_mut().enumerate() {
        tx.shutdown().await?; // done talking; the server finishes our queue
        while let Some(frame) = reader.next().await {
            heard[i].push(String::from_utf8(frame?.1.to_vec())?);
        }
    }
    for (i, h) in heard.iter().enumerate() {
        let want: Vec<String> = (i..3).map(|j| format!("hello from {j}")).collect();
        assert_eq!(h, &want, "client {i}");
        println!("client {i} heard {h:?}");
    }
    Ok(())
}
