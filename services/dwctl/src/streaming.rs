//! Server streams printed as they come: every element until the stream ends, Ctrl-C, or a limit.

use anyhow::Result;
use dw_proto::agentsessions::v1::AgentStatusView;
use dw_proto::distribution::v1::TaskUpdate;
use dw_proto::notifications::v1::AgentNotification;
use futures::{Stream, StreamExt as _};

/// An element of a live stream that may be a heartbeat: sent by the server on an idle stream to
/// keep proxies from cutting it, carrying nothing else.
pub trait MaybeHeartbeat {
    fn is_heartbeat(&self) -> bool;
}

impl MaybeHeartbeat for TaskUpdate {
    fn is_heartbeat(&self) -> bool {
        self.heartbeat
    }
}

impl MaybeHeartbeat for AgentStatusView {
    fn is_heartbeat(&self) -> bool {
        self.heartbeat
    }
}

impl MaybeHeartbeat for AgentNotification {
    fn is_heartbeat(&self) -> bool {
        self.heartbeat
    }
}

/// Hands every element of `stream` to `print` until the stream ends, Ctrl-C is pressed (both a
/// success), or `limit` elements were printed. Heartbeats are skipped (neither printed nor
/// counted). A stream or print error stops with that error.
pub async fn print_each<T, S>(mut stream: S, limit: Option<u64>, mut print: impl FnMut(T) -> Result<()>) -> Result<()>
where
    T: MaybeHeartbeat,
    S: Stream<Item = Result<T, tonic::Status>> + Unpin,
{
    let mut seen = 0_u64;
    loop {
        if limit.is_some_and(|limit| seen >= limit) {
            return Ok(());
        }
        let next = tokio::select! {
            next = stream.next() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(element) = next else {
            return Ok(());
        };
        let element = element?;
        if element.is_heartbeat() {
            continue;
        }
        print(element)?;
        seen += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In these tests, 0 stands for a heartbeat.
    impl MaybeHeartbeat for u32 {
        fn is_heartbeat(&self) -> bool {
            *self == 0
        }
    }

    fn stream(elements: Vec<Result<u32, tonic::Status>>) -> impl Stream<Item = Result<u32, tonic::Status>> + Unpin {
        futures::stream::iter(elements)
    }

    #[tokio::test]
    async fn elements_are_printed_until_the_end_or_the_limit() {
        let mut printed = Vec::new();
        print_each(stream(vec![Ok(1), Ok(2), Ok(3)]), None, |n| {
            printed.push(n);
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(printed, [1, 2, 3]);
        let mut printed = Vec::new();
        print_each(stream(vec![Ok(1), Ok(2), Ok(3)]), Some(2), |n| {
            printed.push(n);
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(printed, [1, 2]);
    }

    #[tokio::test]
    async fn heartbeats_are_neither_printed_nor_counted() {
        let mut printed = Vec::new();
        print_each(stream(vec![Ok(0), Ok(1), Ok(0), Ok(0), Ok(2), Ok(0), Ok(3)]), Some(2), |n| {
            printed.push(n);
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(printed, [1, 2]);

        let mut beat = TaskUpdate { heartbeat: true, ..Default::default() };
        assert!(beat.is_heartbeat());
        beat.heartbeat = false;
        assert!(!beat.is_heartbeat());
        assert!(AgentStatusView { heartbeat: true, ..Default::default() }.is_heartbeat());
        assert!(AgentNotification { heartbeat: true, ..Default::default() }.is_heartbeat());
    }

    #[tokio::test]
    async fn a_stream_error_stops_with_that_error() {
        let mut printed = Vec::new();
        let failing = stream(vec![Ok(1), Err(tonic::Status::unavailable("gone")), Ok(3)]);
        let err = print_each(failing, None, |n| {
            printed.push(n);
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(err.downcast_ref::<tonic::Status>().map(tonic::Status::code), Some(tonic::Code::Unavailable));
        assert_eq!(printed, [1]);
    }
}
