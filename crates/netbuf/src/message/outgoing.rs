//! [`Outgoing`]: one outgoing message of a session, owned or shared.

use core::ops::Deref;

use super::Message;
use super::shared::SharedMessage;

/// One outgoing message of a session: owned (sent once) or shared
/// (a broadcast, one refcount per recipient). The default item type of
/// [`SendQueue`](crate::SendQueue).
///
/// ```
/// let pool = netbuf::MessagePool::new();
/// let owned: netbuf::Outgoing = pool.message_from(b"reply").unwrap().into();
/// let shared: netbuf::Outgoing = pool.message_from(b"news").unwrap().freeze().into();
/// assert_eq!((&owned[..], &shared[..]), (&b"reply"[..], &b"news"[..]));
/// ```
#[derive(Debug)]
pub enum Outgoing {
    /// A message for this session only.
    Owned(Message),
    /// A shared (broadcast) message.
    Shared(SharedMessage),
}

impl Deref for Outgoing {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Outgoing::Owned(m) => m,
            Outgoing::Shared(m) => m,
        }
    }
}

impl AsRef<[u8]> for Outgoing {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Message> for Outgoing {
    fn from(m: Message) -> Self {
        Outgoing::Owned(m)
    }
}

impl From<SharedMessage> for Outgoing {
    fn from(m: SharedMessage) -> Self {
        Outgoing::Shared(m)
    }
}
