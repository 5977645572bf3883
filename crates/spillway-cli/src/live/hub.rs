//! One producer, many subscribers: the latest frame for `/snapshot`, and a bounded broadcast of
//! every frame for `/events`.

use std::convert::Infallible;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::broadcast::{self, error::RecvError};

use super::lock;

/// Frames a subscriber may fall behind before it is dropped: about three seconds of ticks. The
/// broadcast keeps no more than this for anyone (a power of two: tokio's broadcast rounds its
/// capacity up to one).
pub(crate) const LAG_LIMIT: usize = 16;

/// The frames of one producer.
#[derive(Debug)]
pub(crate) struct Hub {
    latest: Mutex<Option<Published>>,
    /// `None` once closed: the streams end after their last frame.
    sender: Mutex<Option<broadcast::Sender<Bytes>>>,
    /// Streams open now.
    pub(crate) subscribers: Gauge,
    /// Streams dropped for falling [`LAG_LIMIT`] frames behind.
    pub(crate) dropped: Counter,
}

/// A frame as JSON, and as the Server-Sent Event that carries it.
#[derive(Debug, Clone)]
struct Published {
    json: Bytes,
    event: Bytes,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            latest: Mutex::new(None),
            sender: Mutex::new(Some(broadcast::channel(LAG_LIMIT).0)),
            subscribers: Gauge::default(),
            dropped: Counter::default(),
        }
    }
}

impl Hub {
    /// Publishes one frame, serialised once for every subscriber.
    pub(crate) fn publish(&self, frame: &impl serde::Serialize) {
        let json = match serde_json::to_vec(frame) {
            Ok(json) => json,
            Err(err) => {
                eprintln!("live view: cannot serialise a frame: {err}");
                return;
            }
        };
        let mut event = Vec::with_capacity(json.len() + 8);
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(&json);
        event.extend_from_slice(b"\n\n");
        let published = Published {
            json: Bytes::from(json),
            event: Bytes::from(event),
        };
        if let Some(sender) = lock(&self.sender).as_ref() {
            // An error only says that nobody subscribes.
            let _ = sender.send(published.event.clone());
        }
        *lock(&self.latest) = Some(published);
    }

    /// The latest frame as JSON, once one was published.
    pub(crate) fn latest(&self) -> Option<Bytes> {
        lock(&self.latest).as_ref().map(|p| p.json.clone())
    }

    /// Ends every stream after the frames already published; later subscribers get the latest
    /// frame and an end.
    pub(crate) fn close(&self) {
        lock(&self.sender).take();
    }

    /// A stream of Server-Sent Events: the latest frame at once, then every frame published,
    /// until the hub closes or the subscriber falls [`LAG_LIMIT`] frames behind.
    pub(crate) fn subscribe(
        self: &std::sync::Arc<Self>,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
        let receiver = lock(&self.sender)
            .as_ref()
            .map(broadcast::Sender::subscribe);
        let first = lock(&self.latest).as_ref().map(|p| p.event.clone());
        let subscription = Subscription::new(std::sync::Arc::clone(self));
        stream::unfold(
            (first, receiver, subscription),
            |(first, receiver, subscription)| async move {
                if let Some(event) = first {
                    return Some((Ok(event), (None, receiver, subscription)));
                }
                let mut receiver = receiver?;
                match receiver.recv().await {
                    Ok(event) => Some((Ok(event), (None, Some(receiver), subscription))),
                    Err(RecvError::Lagged(_)) => {
                        subscription.hub.dropped.inc();
                        None
                    }
                    Err(RecvError::Closed) => None,
                }
            },
        )
    }
}

/// Counts one open stream while it lives.
#[derive(Debug)]
struct Subscription {
    hub: std::sync::Arc<Hub>,
}

impl Subscription {
    fn new(hub: std::sync::Arc<Hub>) -> Self {
        hub.subscribers.inc();
        Subscription { hub }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.subscribers.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::StreamExt as _;

    use super::*;

    fn text(item: Option<Result<Bytes, Infallible>>) -> Option<String> {
        item.map(|event| String::from_utf8(event.unwrap().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_latest_frame_then_each_new_one_then_the_end() {
        let hub = Arc::new(Hub::default());
        hub.publish(&1);
        let mut events = Box::pin(hub.subscribe());
        assert_eq!(hub.subscribers.get(), 1);
        assert_eq!(text(events.next().await).as_deref(), Some("data: 1\n\n"));
        hub.publish(&2);
        hub.publish(&3);
        hub.close();
        assert_eq!(text(events.next().await).as_deref(), Some("data: 2\n\n"));
        assert_eq!(text(events.next().await).as_deref(), Some("data: 3\n\n"));
        assert_eq!(text(events.next().await), None);
        drop(events);
        assert_eq!(hub.subscribers.get(), 0);
        assert_eq!(hub.latest().as_deref(), Some(&b"3"[..]));
        assert_eq!(hub.dropped.get(), 0);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_too_far_behind_is_dropped() {
        let hub = Arc::new(Hub::default());
        let mut slow = Box::pin(hub.subscribe());
        let mut keeping_up = Box::pin(hub.subscribe());
        for n in 0..=LAG_LIMIT {
            hub.publish(&n);
            assert!(keeping_up.next().await.is_some());
        }
        assert_eq!(text(slow.next().await), None, "dropped, not buffered");
        assert_eq!(hub.dropped.get(), 1);
        hub.publish(&"still served");
        assert_eq!(
            text(keeping_up.next().await).as_deref(),
            Some("data: \"still served\"\n\n")
        );
    }

    #[tokio::test]
    async fn a_subscriber_after_the_close_gets_the_last_frame_and_an_end() {
        let hub = Arc::new(Hub::default());
        assert_eq!(hub.latest(), None);
        hub.publish(&"last");
        hub.close();
        let mut events = Box::pin(hub.subscribe());
        assert!(events.next().await.is_some());
        assert_eq!(text(events.next().await), None);
    }
}
