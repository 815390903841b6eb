//! First-come-first-served turns, shard-local. Used twice to keep Kafka's ordering promise
//! ("batches sent to a partition over one connection are appended in the order sent") while
//! requests are handled concurrently:
//! - per connection, produce requests dispatch their appends in request order;
//! - per partition, appends happen in the order the owner shard received them, even when one of
//!   them has to wait for write-behind space.
//!
//! A ticket is taken synchronously (no `.await` between arrival and `take`), waits for its turn,
//! and hands the turn on when dropped — also if it is dropped before its turn came (the waiter
//! was cancelled), so a lost ticket never stalls the ones behind it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct AppendOrder {
    next_ticket: Cell<u64>,
    serving: Cell<u64>,
    /// Tickets dropped before their turn: skipped when the turn reaches them.
    abandoned: RefCell<BTreeSet<u64>>,
    waiters: RefCell<Vec<Waker>>,
}

pub struct Ticket {
    order: Rc<AppendOrder>,
    number: u64,
}

impl AppendOrder {
    pub fn new() -> Rc<AppendOrder> {
        Rc::new(AppendOrder::default())
    }

    pub fn take(self: &Rc<Self>) -> Ticket {
        let number = self.next_ticket.get();
        self.next_ticket.set(number + 1);
        Ticket {
            order: self.clone(),
            number,
        }
    }

    fn advance(&self) {
        let mut serving = self.serving.get() + 1;
        {
            let mut abandoned = self.abandoned.borrow_mut();
            while abandoned.remove(&serving) {
                serving += 1;
            }
        }
        self.serving.set(serving);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }
}

impl Ticket {
    /// Resolves when every earlier ticket has been dropped.
    pub async fn turn(&self) {
        std::future::poll_fn(|context| {
            if self.order.serving.get() == self.number {
                Poll::Ready(())
            } else {
                self.order
                    .waiters
                    .borrow_mut()
                    .push(context.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let serving = self.order.serving.get();
        assert!(
            self.number >= serving,
            "ticket {} dropped twice",
            self.number
        );
        if self.number == serving {
            self.order.advance();
        } else {
            self.order.abandoned.borrow_mut().insert(self.number);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_follow_ticket_order_and_skip_abandoned() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(512 << 10)
            .spawn(|| async {
                let order = AppendOrder::new();
                let log = Rc::new(RefCell::new(Vec::new()));
                let first = order.take();
                let second = order.take();
                let abandoned = order.take();
                let fourth = order.take();
                let mut tasks = Vec::new();
                for (name, ticket) in [(4, fourth), (2, second)] {
                    let log = log.clone();
                    tasks.push(glommio::spawn_local(async move {
                        ticket.turn().await;
                        log.borrow_mut().push(name);
                    }));
                }
                drop(abandoned);
                glommio::yield_if_needed().await;
                assert!(log.borrow().is_empty(), "nobody goes before ticket 1");
                first.turn().await;
                log.borrow_mut().push(1);
                drop(first);
                for task in tasks {
                    task.await;
                }
                assert_eq!(*log.borrow(), vec![1, 2, 4]);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
