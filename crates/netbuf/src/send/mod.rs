//! The send path: a per-session [`SendQueue`] that logic threads push to
//! and the IO thread drains (woken through a [`Notify`]), and a per-session
//! [`Flusher`] that turns frames into as few writes as possible (small ones
//! copied into one buffer, large ones gathered without a copy), with an
//! optional per-session [`Transform`]; [`calibrate()`] measures where
//! gathering starts to pay on this machine. How to drive a queue and a
//! flusher from an event loop without extra wakeups is in [`event_loop`].

mod calibrate;
pub mod event_loop;
mod flush;
mod notify;
mod queue;
mod transform;

pub use calibrate::{Calibration, calibrate, calibrated, calibrated_threshold};
pub use flush::{
    DEFAULT_GATHER_THRESHOLD, FlushError, FlushMetrics, Flushed, Flusher, GatherThreshold, MAX_IOV,
    OutFrame, Transport,
};
pub use notify::{CondvarNotify, FnNotify, Notify, WakerNotify};
pub use queue::{
    BatchError, Drained, MAX_LIMIT, PushError, QueueItem, SendFuture, SendQueue, SendQueueBuilder,
};
#[cfg(feature = "chacha20")]
pub use transform::ChaCha20Transform;
pub use transform::Transform;
