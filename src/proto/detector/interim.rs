//! Stand-in k-miss detector used until the real detectors land; removed then.
use std::collections::VecDeque;
use std::time::Duration;

use super::{Detector, DetectorEvent, Verdict};
use crate::proto::Time;

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub enum DetectorConfig {
    #[default]
    KMiss,
}

impl DetectorConfig {
    pub fn build(&self, now: Time, interval: Duration, k: u32) -> AnyDetector {
        AnyDetector { last: now, interval, k, suspect: false, events: VecDeque::new() }
    }
}

#[derive(Debug)]
pub struct AnyDetector {
    last: Time,
    interval: Duration,
    k: u32,
    suspect: bool,
    events: VecDeque<DetectorEvent>,
}

impl Detector for AnyDetector {
    fn handle_heartbeat(&mut self, now: Time) {
        self.last = now;
        if self.suspect {
            self.suspect = false;
            self.events.push_back(DetectorEvent::Trust);
        }
    }
    fn handle_timeout(&mut self, now: Time) {
        if !self.suspect && now >= self.last + self.interval * self.k {
            self.suspect = true;
            self.events.push_back(DetectorEvent::Suspect { silent: now - self.last });
        }
    }
    fn poll_timeout(&self) -> Option<Time> {
        (!self.suspect).then(|| self.last + self.interval * self.k)
    }
    fn poll_event(&mut self) -> Option<DetectorEvent> {
        self.events.pop_front()
    }
    fn verdict(&self) -> Verdict {
        if self.suspect { Verdict::Suspect } else { Verdict::Trust }
    }
    fn set_params(&mut self, now: Time, interval: Duration, k: u32) {
        self.interval = interval;
        self.k = k;
        self.last = now;
    }
}
