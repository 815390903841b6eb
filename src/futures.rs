//! Small future combinators for shard-local code (no executor, no I/O): wait for all of a set of
//! futures, or for the first. Used by every layer that fans work out to several partitions or
//! shards.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A boxed future that stays on its shard.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Polls all futures concurrently; returns their outputs in order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|context: &mut Context<'_>| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every future completed"))
        .collect()
}

/// Resolves when the first of `futures` does (the rest are dropped).
pub async fn select_first<F: Future>(futures: Vec<F>) -> Option<F::Output> {
    if futures.is_empty() {
        return None;
    }
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let output = std::future::poll_fn(|context: &mut Context<'_>| {
        for future in futures.iter_mut() {
            if let Poll::Ready(value) = future.as_mut().poll(context) {
                return Poll::Ready(value);
            }
        }
        Poll::Pending
    })
    .await;
    Some(output)
}
