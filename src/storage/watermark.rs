//! Wakers of tasks waiting for a partition's durable end offset to move (produce acks waiting for
//! durability, fetches waiting for data). Woken by flush completion, truncation, going offline
//! and close: no timers, no polling.
//!
//! Each waiting future owns one slot, refreshed on every poll and freed on drop, so waiting is
//! cancel-safe and the registry is bounded by the number of live waiting futures.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub(crate) struct Waiters {
    next_id: Cell<u64>,
    wakers: RefCell<HashMap<u64, Waker>>,
}

impl Waiters {
    /// Wakes every waiting future; each re-checks its condition and re-registers if needed.
    pub fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    pub fn len(&self) -> usize {
        self.wakers.borrow().len()
    }

    /// A future that resolves once `ready()` returns true.
    pub fn wait_until<F: Fn() -> bool>(&self, ready: F) -> WaitUntil<'_, F> {
        WaitUntil {
            waiters: self,
            ready,
            id: None,
        }
    }

    fn register(&self, id: &mut Option<u64>, waker: &Waker) {
        let key = *id.get_or_insert_with(|| {
            let next = self.next_id.get();
            self.next_id.set(next + 1);
            next
        });
        let mut wakers = self.wakers.borrow_mut();
        match wakers.get_mut(&key) {
            Some(existing) if existing.will_wake(waker) => {}
            Some(existing) => existing.clone_from(waker),
            None => {
                wakers.insert(key, waker.clone());
            }
        }
    }

    fn unregister(&self, id: Option<u64>) {
        if let Some(key) = id {
            self.wakers.borrow_mut().remove(&key);
        }
    }
}

pub(crate) struct WaitUntil<'a, F: Fn() -> bool> {
    waiters: &'a Waiters,
    ready: F,
    id: Option<u64>,
}

impl<F: Fn() -> bool + Unpin> Future for WaitUntil<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if (this.ready)() {
            this.waiters.unregister(this.id.take());
            return Poll::Ready(());
        }
        this.waiters.register(&mut this.id, context.waker());
        Poll::Pending
    }
}

impl<F: Fn() -> bool> Drop for WaitUntil<'_, F> {
    fn drop(&mut self) {
        self.waiters.unregister(self.id.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn dropped_waiters_leave_nothing_behind() {
        let waiters = Rc::new(Waiters::default());
        let flag = Rc::new(Cell::new(false));
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|context| {
            Poll::Ready(context.waker().clone())
        }));
        let mut context = Context::from_waker(&waker);
        {
            let flag = flag.clone();
            let mut future = Box::pin(waiters.wait_until(move || flag.get()));
            for _ in 0..3 {
                assert!(future.as_mut().poll(&mut context).is_pending());
            }
            assert_eq!(waiters.len(), 1);
        }
        assert_eq!(waiters.len(), 0);
        let flag_for_future = flag.clone();
        let mut future = Box::pin(waiters.wait_until(move || flag_for_future.get()));
        assert!(future.as_mut().poll(&mut context).is_pending());
        flag.set(true);
        waiters.wake_all();
        assert_eq!(waiters.len(), 0);
        assert!(future.as_mut().poll(&mut context).is_ready());
    }
}
