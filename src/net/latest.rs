//! The latest value of something many tasks follow (a server's throttle and load figures, which
//! every connection applies to its session), with the followers woken in a fixed order when it
//! changes.
//!
//! `tokio::sync::watch` does the same job, but its receivers wait on one of eight `Notify`s
//! chosen by tokio's thread-local random generator, which is seeded from the operating system
//! unless tokio is built with `--cfg tokio_unstable`. Under the simulator the order in which a
//! change woke the connections, and so the order in which a saturated server's CPU served them,
//! then differed from one run of the same seed to the next. One `Notify` wakes its waiters in the
//! order of its list: the same order on every run.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The value and its followers' wake-up; the writing half.
pub struct Latest<T> {
    shared: Arc<Shared<T>>,
}

/// One follower's view: the value it saw last.
#[derive(Clone)]
pub struct Follower<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Notify,
}

struct State<T> {
    /// Counts the changes, so a follower knows whether it has seen the value.
    version: u64,
    value: T,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Clone> Latest<T> {
    /// Starts at `value`.
    pub fn new(value: T) -> Latest<T> {
        Latest {
            shared: Arc::new(Shared {
                state: Mutex::new(State { version: 0, value }),
                changed: Notify::new(),
            }),
        }
    }

    /// A follower that has seen the value as it is now.
    pub fn follow(&self) -> Follower<T> {
        Follower {
            shared: self.shared.clone(),
            seen: self.shared.lock().version,
        }
    }

    /// Lets `change` edit the value; the followers are woken when it says it changed it.
    pub fn modify(&self, change: impl FnOnce(&mut T) -> bool) -> bool {
        let changed = {
            let mut s = self.shared.lock();
            let changed = change(&mut s.value);
            if changed {
                s.version += 1;
            }
            changed
        };
        if changed {
            self.shared.changed.notify_waiters();
        }
        changed
    }
}

impl<T: Clone> Follower<T> {
    /// The value now, marked as seen.
    pub fn now(&mut self) -> T {
        let s = self.shared.lock();
        self.seen = s.version;
        s.value.clone()
    }

    /// Waits for a value this follower has not seen, and returns it. Cancel-safe: a wait
    /// dropped before it returns marks nothing as seen.
    pub async fn changed(&mut self) -> T {
        loop {
            let notified = self.shared.changed.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a change between the check and the wait wakes it.
            notified.as_mut().enable();
            {
                let s = self.shared.lock();
                if s.version != self.seen {
                    self.seen = s.version;
                    return s.value.clone();
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_follower_sees_a_change_made_before_it_waits() {
        let latest = Latest::new(1);
        let mut f = latest.follow();
        assert!(latest.modify(|v| {
            *v = 2;
            true
        }));
        assert_eq!(f.changed().await, 2);
    }

    #[tokio::test]
    async fn an_edit_that_changes_nothing_wakes_no_follower() {
        let latest = Latest::new(1);
        let mut f = latest.follow();
        assert!(!latest.modify(|_| false));
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), f.changed()).await;
        assert!(waited.is_err(), "woken without a change");
        assert_eq!(f.now(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn followers_are_woken_in_the_order_they_began_to_wait() {
        let latest = Latest::new(0u32);
        let order = Arc::new(Mutex::new(Vec::new()));
        let local = tokio::task::LocalSet::new();
        for i in 0..16 {
            let mut f = latest.follow();
            let order = order.clone();
            local.spawn_local(async move {
                f.changed().await;
                order.lock().unwrap().push(i);
            });
        }
        local
            .run_until(async {
                tokio::task::yield_now().await;
                latest.modify(|v| {
                    *v += 1;
                    true
                });
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            })
            .await;
        assert_eq!(*order.lock().unwrap(), (0..16).collect::<Vec<_>>());
    }
}
