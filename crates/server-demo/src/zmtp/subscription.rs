//! Topic subscriptions: prefix matching with libzmq's counting (a prefix
//! is forwarded upstream when its first subscriber arrives and cancelled
//! when its last one leaves), and the ZMTP 3.0 subscription message form.

use std::collections::{BTreeMap, HashMap};

/// A subscriber's id (its session id).
pub type SubscriberId = u64;

/// A ZMTP 3.0 subscription message part: first byte 1 (subscribe) or 0
/// (cancel), then the topic. `None` for any other part.
///
/// ```
/// use server_demo::zmtp::subscription::parse_message_form;
/// assert_eq!(parse_message_form(b"\x01news"), Some((true, &b"news"[..])));
/// assert_eq!(parse_message_form(b"\x00"), Some((false, &b""[..])));
/// assert_eq!(parse_message_form(b"hello"), None);
/// ```
pub fn parse_message_form(part: &[u8]) -> Option<(bool, &[u8])> {
    match part.split_first() {
        Some((1, topic)) => Some((true, topic)),
        Some((0, topic)) => Some((false, topic)),
        _ => None,
    }
}

/// Which subscribers want which prefixes.
///
/// Matching a topic costs one hash lookup per distinct prefix length in
/// use (not per subscription), so thousands of subscribers to a handful
/// of topics match in a few lookups.
///
/// ```
/// use server_demo::zmtp::subscription::Subscriptions;
/// let mut s = Subscriptions::default();
/// assert!(s.subscribe(1, b"news"));      // first subscriber: forward upstream
/// assert!(!s.subscribe(2, b"news"));     // already forwarded
/// assert!(s.subscribe(2, b""));          // everything
/// let mut who = Vec::new();
/// s.matches(b"news/today", &mut who);
/// assert_eq!(who, [1, 2]);               // 2 once, though two prefixes match
/// assert!(!s.cancel(1, b"news"));        // 2 still wants it
/// assert_eq!(s.remove_subscriber(2).len(), 2); // both prefixes now unwanted
/// ```
#[derive(Debug, Default)]
pub struct Subscriptions {
    by_prefix: HashMap<Vec<u8>, Vec<SubscriberId>>,
    /// Distinct prefix lengths in use, with how many prefixes have each.
    lengths: BTreeMap<usize, usize>,
    by_subscriber: HashMap<SubscriberId, Vec<Vec<u8>>>,
}

impl Subscriptions {
    /// Adds `prefix` for `id`; `true` if no one had it before (forward it
    /// upstream). Subscribing twice to the same prefix is one subscription,
    /// as in libzmq's trie.
    pub fn subscribe(&mut self, id: SubscriberId, prefix: &[u8]) -> bool {
        let ids = match self.by_prefix.get_mut(prefix) {
            Some(ids) => ids,
            None => {
                *self.lengths.entry(prefix.len()).or_default() += 1;
                self.by_prefix.entry(prefix.to_vec()).or_default()
            }
        };
        if ids.contains(&id) {
            return false;
        }
        ids.push(id);
        self.by_subscriber
            .entry(id)
            .or_default()
            .push(prefix.to_vec());
        ids.len() == 1
    }

    /// Removes `prefix` for `id`; `true` if it was the last subscriber of
    /// that prefix (cancel it upstream).
    pub fn cancel(&mut self, id: SubscriberId, prefix: &[u8]) -> bool {
        let Some(ids) = self.by_prefix.get_mut(prefix) else {
            return false;
        };
        let Some(pos) = ids.iter().position(|&i| i == id) else {
            return false;
        };
        ids.swap_remove(pos);
        if let Some(mine) = self.by_subscriber.get_mut(&id) {
            mine.retain(|p| p != prefix);
            if mine.is_empty() {
                self.by_subscriber.remove(&id);
            }
        }
        if !ids.is_empty() {
            return false;
        }
        self.by_prefix.remove(prefix);
        self.drop_length(prefix.len());
        true
    }

    /// Removes every subscription of `id`; returns the prefixes nobody
    /// wants any more.
    pub fn remove_subscriber(&mut self, id: SubscriberId) -> Vec<Vec<u8>> {
        let mine = self.by_subscriber.remove(&id).unwrap_or_default();
        let mut gone = Vec::new();
        for prefix in mine {
            let Some(ids) = self.by_prefix.get_mut(&prefix) else {
                continue;
            };
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_prefix.remove(&prefix);
                self.drop_length(prefix.len());
                gone.push(prefix);
            }
        }
        gone
    }

    /// Appends to `out` every subscriber with a prefix of `topic`, each
    /// once, in ascending id order.
    pub fn matches(&self, topic: &[u8], out: &mut Vec<SubscriberId>) {
        let start = out.len();
        for &len in self.lengths.keys() {
            if len > topic.len() {
                break;
            }
            if let Some(ids) = self.by_prefix.get(&topic[..len]) {
                out.extend_from_slice(ids);
            }
        }
        out[start..].sort_unstable();
        // Dedup the appended tail only.
        let mut w = start;
        for r in start..out.len() {
            if w == start || out[w - 1] != out[r] {
                out[w] = out[r];
                w += 1;
            }
        }
        out.truncate(w);
    }

    /// Every prefix somebody wants (what a new publisher is told).
    pub fn prefixes(&self) -> impl Iterator<Item = &[u8]> {
        self.by_prefix.keys().map(Vec::as_slice)
    }

    /// Distinct prefixes subscribed.
    pub fn len(&self) -> usize {
        self.by_prefix.len()
    }

    /// Whether nobody subscribes to anything.
    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    fn drop_length(&mut self, len: usize) {
        if let Some(n) = self.lengths.get_mut(&len) {
            *n -= 1;
            if *n == 0 {
                self.lengths.remove(&len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_like_libzmq() {
        let mut s = Subscriptions::default();
        assert!(s.subscribe(1, b"a"));
        assert!(!s.subscribe(1, b"a"));
        assert!(!s.subscribe(2, b"a"));
        assert!(!s.cancel(1, b"a"));
        assert!(!s.cancel(1, b"a")); // not subscribed any more
        assert!(s.cancel(2, b"a"));
        assert!(s.is_empty());
        assert!(!s.cancel(3, b"zzz"));
    }

    #[test]
    fn prefix_matching() {
        let mut s = Subscriptions::default();
        s.subscribe(1, b"ab");
        s.subscribe(2, b"abc");
        s.subscribe(3, b"b");
        let mut m = vec![99];
        s.matches(b"abcd", &mut m);
        assert_eq!(m, [99, 1, 2]);
        m.clear();
        s.matches(b"a", &mut m);
        assert!(m.is_empty());
        s.matches(b"", &mut m);
        assert!(m.is_empty());
        s.subscribe(4, b"");
        s.matches(b"", &mut m);
        assert_eq!(m, [4]);
        let gone = s.remove_subscriber(2);
        assert_eq!(gone, vec![b"abc".to_vec()]);
        m.clear();
        s.matches(b"abcd", &mut m);
        assert_eq!(m, [1, 4]);
        assert_eq!(s.len(), 3);
    }
}
