//! Application traffic on the engine: each stream's generator ([`Pacer`], the sans-IO core of
//! `sim::traffic::Generator::run`) paced by events, feeding the same one-message queue the
//! drivers read. A message is made when its flow is due and handed over as soon as the queue
//! has room (the generator's back-pressure); the end holding the queue takes it when its
//! session has room, in its next turn.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::queue::{Queue, Timer};
use super::{Ev, wake_at};
use crate::net::conn::Outgoing;
use crate::sim::delivery::StreamId;
use crate::sim::traffic::{Generator, Pacer, SharedLog};

/// The run's streams by id. A stream's feed goes once its generator is done or its queue's
/// receiver is gone, as the runner's generator task returns then (dropping its sender, so the
/// queue's holder reads what is left and then finds it closed); its id is not reused, and
/// events still filed for it find nothing.
#[derive(Default)]
pub(crate) struct Feeds {
    slots: Vec<Option<Box<Feed>>>,
    live: usize,
}

impl Feeds {
    /// Starts `generator`'s feed into `tx` at `now`, handing over what is due: its id.
    pub fn start(
        &mut self,
        generator: &Generator,
        tx: mpsc::Sender<Outgoing>,
        now: Duration,
        queue: &mut Queue<Ev>,
    ) -> u32 {
        let id = u32::try_from(self.slots.len()).expect("fewer than 2^32 streams");
        let mut feed = Feed::new(generator, tx, now);
        feed.pace(id, now, queue);
        let done = feed.done;
        self.slots.push(Some(Box::new(feed)));
        self.live += 1;
        if done {
            self.free(id);
        }
        id
    }

    /// Stream `f`'s feed, unless it is done with.
    pub fn get_mut(&mut self, f: u32) -> Option<&mut Feed> {
        self.slots
            .get_mut(f as usize)
            .and_then(Option::as_deref_mut)
    }

    /// Stream `f`'s queue has no holder any more.
    pub fn let_go(&mut self, f: u32) {
        if let Some(feed) = self.get_mut(f) {
            feed.consumer = None;
        }
    }

    /// Stream `f` hands over what is due at `now`: the end holding its queue, if it got a
    /// message. A feed that is done goes.
    pub fn pace(&mut self, f: u32, now: Duration, queue: &mut Queue<Ev>) -> Option<(u64, usize)> {
        let feed = self.get_mut(f)?;
        let gave = feed.pace(f, now, queue);
        let consumer = feed.consumer.filter(|_| gave);
        if feed.done {
            self.free(f);
        }
        consumer
    }

    fn free(&mut self, f: u32) {
        if let Some(slot) = self.slots.get_mut(f as usize)
            && slot.take().is_some()
        {
            self.live -= 1;
        }
    }

    /// Streams started so far, and those whose feed is not done with yet.
    pub fn counts(&self) -> (usize, usize) {
        (self.slots.len(), self.live)
    }
}

/// One stream's sender.
pub(crate) struct Feed {
    pacer: Pacer,
    tx: mpsc::Sender<Outgoing>,
    stream: StreamId,
    log: SharedLog,
    /// A message made when due that the full queue has not taken yet: its flow and size.
    waiting: Option<(usize, usize, Outgoing)>,
    timer: Timer,
    done: bool,
    /// The connection end holding the queue's receiver: `(connection id, side)`.
    pub consumer: Option<(u64, usize)>,
}

impl Feed {
    /// The feed of `generator` into `tx`, starting `now`.
    pub fn new(generator: &Generator, tx: mpsc::Sender<Outgoing>, now: Duration) -> Feed {
        Feed {
            pacer: generator.pacer_at(now),
            tx,
            stream: generator.stream,
            log: generator.log.clone(),
            waiting: None,
            timer: Timer::default(),
            done: false,
            consumer: None,
        }
    }

    /// Hands over whatever is due at `now` while the queue has room, and files the next due
    /// message as an event. Whether the queue got a message.
    pub fn pace(&mut self, id: u32, now: Duration, queue: &mut Queue<Ev>) -> bool {
        let mut gave = false;
        while !self.done {
            let (i, size, message) = match self.waiting.take() {
                Some(w) => w,
                None => {
                    let Some((i, at)) = self.pacer.next_due() else {
                        self.done = true;
                        break;
                    };
                    if at > now {
                        // The generator sleeps until then: tokio wakes it on the millisecond.
                        if let Some((at, generation)) = self.timer.arm(Some(wake_at(at))) {
                            queue.push(
                                at,
                                Ev::Feed {
                                    feed: id,
                                    generation,
                                },
                            );
                        }
                        break;
                    }
                    let (message, size) = self.pacer.message(i);
                    (i, size, message)
                }
            };
            let (index, channel) = (self.pacer.index, message.channel);
            match self.tx.try_send(message) {
                Ok(()) => {
                    crate::sim::traffic::lock(&self.log).sent(self.stream, index, channel, now);
                    self.pacer.handed(i, size, now);
                    gave = true;
                }
                Err(TrySendError::Full(message)) => {
                    self.waiting = Some((i, size, message));
                    break;
                }
                // The session is gone (its process died, or it ended): nothing more is sent.
                Err(TrySendError::Closed(_)) => self.done = true,
            }
        }
        gave
    }

    /// Its timer's entry of `generation` popped at `now`: whether it is due.
    pub fn fire(&mut self, generation: u32, now: Duration, queue: &mut Queue<Ev>, id: u32) -> bool {
        let (due, again) = self.timer.fire(generation, now);
        if let Some((at, generation)) = again {
            queue.push(
                at,
                Ev::Feed {
                    feed: id,
                    generation,
                },
            );
        }
        due
    }
}
