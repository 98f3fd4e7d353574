//! Server configuration: every strategy the demo can swap, as command-line
//! flags (`clap`) and as a plain struct for tests and the main job.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use netbuf::{GatherThreshold, Transport};

/// Where message memory comes from (`--pool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolMode {
    /// Pooled 4 KiB blocks, heap beyond.
    Pooled,
    /// Every message from the global allocator.
    Heap,
}

/// How a publish reaches N subscribers (`--broadcast`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BroadcastMode {
    /// One `SharedMessage`, N refcount increments.
    Shared,
    /// One copy per subscriber.
    Copy,
}

/// How the flusher sends bodies (`--send`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SendMode {
    /// Copy everything into the linear send buffer.
    Linear,
    /// Every body by `write_vectored`.
    Gather,
    /// Gather from the threshold calibrated on this machine (or
    /// `--gather-threshold`).
    Auto,
}

/// The per-session send queue (`--queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueMode {
    /// netbuf's lock-free byte-bounded `SendQueue`.
    Mpsc,
    /// A `Mutex<VecDeque>` with the same byte bound.
    Mutex,
}

/// The receive buffer (`--recv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecvMode {
    /// Linear buffer with lazy compaction.
    Linear,
    /// Chain of pool blocks (no memory while idle).
    Chained,
}

/// The per-session transform (`--transform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransformMode {
    /// Plain bytes.
    None,
    /// ChaCha20 keystream per session, applied at flush time.
    Chacha20,
}

/// Strategy and limit flags shared by `serve` and the main job.
#[derive(Debug, Clone, Args)]
pub struct StrategyArgs {
    /// Message memory.
    #[arg(long, value_enum, default_value_t = PoolMode::Pooled)]
    pub pool: PoolMode,
    /// Broadcast strategy.
    #[arg(long, value_enum, default_value_t = BroadcastMode::Shared)]
    pub broadcast: BroadcastMode,
    /// Send path.
    #[arg(long, value_enum, default_value_t = SendMode::Auto)]
    pub send: SendMode,
    /// Gather bodies of at least this many bytes (overrides calibration in
    /// `auto` mode).
    #[arg(long)]
    pub gather_threshold: Option<usize>,
    /// Per-session send queue.
    #[arg(long, value_enum, default_value_t = QueueMode::Mpsc)]
    pub queue: QueueMode,
    /// Receive buffer.
    #[arg(long, value_enum, default_value_t = RecvMode::Linear)]
    pub recv: RecvMode,
    /// Per-session transform.
    #[arg(long, value_enum, default_value_t = TransformMode::None)]
    pub transform: TransformMode,
    /// IO threads (each runs a mio event loop).
    #[arg(long, default_value_t = 1)]
    pub io_threads: usize,
    /// Logic threads (handlers). 0 (the default) runs the handlers inline
    /// on the IO threads: no thread handoff per request (3 syscalls per
    /// 64 B round trip against 6.2 with one logic thread, 335 instructions
    /// per pipelined echo against 1,185, no futex), and a publish's
    /// deliveries are flushed by the thread that queued them, at most
    /// 1,024 per turn. Choose 1 or more when a handler may block or take
    /// long: an inline handler that stalls stalls every session of its IO
    /// thread, a logic thread only the requests queued behind it.
    #[arg(long, default_value_t = 0)]
    pub logic_threads: usize,
    /// Busy-poll: after the last event an IO thread polls this many more
    /// times without sleeping (each a non-blocking `epoll_wait`, about a
    /// microsecond; the thread yields between polls, so a peer on the same
    /// core runs first) before it blocks. 0 (the default) blocks at once.
    /// Lowers round-trip latency (no wakeup from sleep) when a core can be
    /// spared for each IO thread; costs that CPU while traffic lasts.
    #[arg(long, default_value_t = 0)]
    pub busy_poll: u32,
    /// Largest frame body accepted, in bytes (10 KiB by default; raise it
    /// for large transfers, e.g. 2097152).
    #[arg(long, default_value_t = crate::protocol::DEFAULT_MAX_BODY)]
    pub max_frame: usize,
    /// Per-session send queue bound in bytes of memory pinned: each
    /// message counts its whole block (a 64 B message in a 256 B block
    /// counts 288 B), plus the entry overhead.
    #[arg(long, default_value_t = 8 << 20)]
    pub send_queue_bytes: usize,
}

impl Default for StrategyArgs {
    fn default() -> Self {
        StrategyArgs {
            pool: PoolMode::Pooled,
            broadcast: BroadcastMode::Shared,
            send: SendMode::Auto,
            gather_threshold: None,
            queue: QueueMode::Mpsc,
            recv: RecvMode::Linear,
            transform: TransformMode::None,
            io_threads: 1,
            logic_threads: 0,
            busy_poll: 0,
            max_frame: crate::protocol::DEFAULT_MAX_BODY,
            send_queue_bytes: 8 << 20,
        }
    }
}

impl StrategyArgs {
    /// The flusher threshold these flags ask for, for a session on
    /// `transport`.
    pub fn gather_threshold_for(&self, transport: Transport) -> GatherThreshold {
        match (self.send, self.gather_threshold) {
            (SendMode::Linear, _) => GatherThreshold::Never,
            (SendMode::Gather, _) => GatherThreshold::ALWAYS,
            (SendMode::Auto, Some(n)) => GatherThreshold::Bytes(n),
            // The demo calibrates explicitly, once per process and transport.
            (SendMode::Auto, None) => netbuf::calibrated_threshold(transport),
        }
    }

    /// A short label for reports, e.g. `pool=heap`.
    pub fn label(&self) -> String {
        let d = StrategyArgs::default();
        let mut parts = Vec::new();
        if self.pool != d.pool {
            parts.push(format!("pool={:?}", self.pool).to_lowercase());
        }
        if self.broadcast != d.broadcast {
            parts.push(format!("broadcast={:?}", self.broadcast).to_lowercase());
        }
        if self.send != d.send || self.gather_threshold.is_some() {
            parts.push(format!("send={:?}", self.send).to_lowercase());
        }
        if self.queue != d.queue {
            parts.push(format!("queue={:?}", self.queue).to_lowercase());
        }
        if self.recv != d.recv {
            parts.push(format!("recv={:?}", self.recv).to_lowercase());
        }
        if self.transform != d.transform {
            parts.push(format!("transform={:?}", self.transform).to_lowercase());
        }
        if self.logic_threads != d.logic_threads {
            parts.push(format!("logic={}", self.logic_threads));
        }
        if parts.is_empty() {
            "default".to_string()
        } else {
            parts.join(",")
        }
    }
}

/// Where to listen.
#[derive(Debug, Clone, Default)]
pub struct Listen {
    /// TCP address (port 0 picks a free one).
    pub tcp: Option<SocketAddr>,
    /// Unix-domain socket path (removed first if it exists).
    pub unix: Option<PathBuf>,
}
