//! The network's faults between hosts, as [`Links`] for [`super::net::SimNet`].
//!
//! Each directed host pair (`clients → server`, `server → clients`) is one [`Direction`] shared
//! by every connection between them, so a partition or a loss burst hits all of them at once,
//! as on a real link; so does its queue when it has a rate: one session's bulk transfer delays
//! the packets of every other session on the same direction. Each connection direction draws
//! its own per-segment randomness from its own stream, so adding a connection does not shift
//! the draws of the others.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use rand::RngCore;

use super::fault::{
    ConnectOutcome, Direction, FaultError, Latency, LinkRate, Loss, LossProcess, Path,
    RandomOutages, TcpConfig, Timeline,
};
use super::net::{Links, PathModel};
use super::synthetic::{Purpose, stream};
use super::tcp::Wire;

/// The faults of one direction between two hosts.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirectionSpec {
    pub latency: Latency,
    #[serde(default = "no_loss")]
    pub loss: Loss,
    /// Random outages (link flapping, short partitions), sampled over the run.
    #[serde(default)]
    pub outages: Option<RandomOutages>,
    /// The link's bandwidth and queue; `None` = infinitely fast (no queueing at all).
    #[serde(default)]
    pub rate: Option<LinkRate>,
}

fn no_loss() -> Loss {
    Loss::None
}

impl DirectionSpec {
    /// A fixed one-way delay, nothing else.
    pub fn constant(latency: Duration) -> DirectionSpec {
        DirectionSpec {
            latency: Latency::constant(latency),
            loss: Loss::None,
            outages: None,
            rate: None,
        }
    }
}

/// A latency episode: `[start, end)` and the distribution in force then.
pub type Episode = (Range<Duration>, Latency);

/// The whole network: a default for every direction, overrides per `(from, to)`, scheduled
/// outages per direction, and the kernels' TCP settings.
#[derive(Clone, Debug)]
pub struct NetworkSpec {
    pub default: DirectionSpec,
    pub directions: BTreeMap<(String, String), DirectionSpec>,
    /// Scheduled outages (partitions) per direction, `[start, end)`.
    pub partitions: BTreeMap<(String, String), Vec<Range<Duration>>>,
    /// Scheduled latency episodes (spikes, a slow peer) per direction.
    pub episodes: BTreeMap<(String, String), Vec<Episode>>,
    pub tcp: TcpConfig,
}

impl NetworkSpec {
    pub fn constant(latency: Duration) -> NetworkSpec {
        NetworkSpec {
            default: DirectionSpec::constant(latency),
            directions: BTreeMap::new(),
            partitions: BTreeMap::new(),
            episodes: BTreeMap::new(),
            tcp: TcpConfig::default(),
        }
    }

    /// Whether any direction has a finite rate.
    pub fn has_rate(&self) -> bool {
        self.default.rate.is_some() || self.directions.values().any(|d| d.rate.is_some())
    }

    fn mentions(&self, key: &(String, String)) -> bool {
        self.directions.contains_key(key)
            || self.partitions.contains_key(key)
            || self.episodes.contains_key(key)
    }
}

/// Every direction of the network, built on first use, and the kernels' TCP settings: what a
/// connection's packets cross. The event engine owns one outright and lends it to each
/// connection's TCP ([`ConnWire`]); the turmoil runner shares one behind a lock
/// ([`FaultLinks`]).
pub(crate) struct LinkTable {
    spec: NetworkSpec,
    seed: u64,
    horizon: Duration,
    /// Directions in order of first use, and their index by `(from, to)`.
    dirs: Vec<Direction>,
    index: BTreeMap<(String, String), usize>,
}

impl LinkTable {
    /// Validates the spec; random outages are sampled up to `horizon`. A link with a rate turns
    /// on the kernels' segmentation and congestion window ([`TcpConfig::window`]): bulk data
    /// then crosses it in MSS-sized packets at the pace the window allows.
    pub(crate) fn new(
        mut spec: NetworkSpec,
        seed: u64,
        horizon: Duration,
    ) -> Result<LinkTable, FaultError> {
        for d in std::iter::once(&spec.default).chain(spec.directions.values()) {
            d.latency.validate()?;
            d.loss.validate()?;
            if let Some(r) = &d.rate {
                r.validate()?;
            }
        }
        if spec.has_rate() {
            spec.tcp.window = true;
        }
        Ok(LinkTable {
            spec,
            seed,
            horizon,
            dirs: Vec::new(),
            index: BTreeMap::new(),
        })
    }

    /// The direction for `key`: a host pair, or a session and a host when faults name the
    /// session. A session's direction has the host pair's spec unless it has its own, and both
    /// the host pair's and its own partitions and episodes.
    fn direction(
        &mut self,
        key: (String, String),
        hosts: (String, String),
    ) -> Result<usize, FaultError> {
        if let Some(i) = self.index.get(&key) {
            return Ok(*i);
        }
        // Keyed by the direction's names, not by the order of first use.
        let key_hash = names_key(&key.0, &key.1);
        let spec = self
            .spec
            .directions
            .get(&key)
            .or(self.spec.directions.get(&hosts));
        let spec = spec.unwrap_or(&self.spec.default).clone();
        spec.latency.validate()?;
        let loss = LossProcess::seeded(&spec.loss, self.seed, &[key_hash])?;
        let mut timeline = Timeline::new(both(&self.spec.partitions, &key, &hosts));
        if let Some(o) = &spec.outages {
            timeline = timeline.union(&o.sample_seeded(self.horizon, self.seed, &[key_hash])?);
        }
        let episodes = both(&self.spec.episodes, &key, &hosts);
        let dir = Direction::new(spec.latency, loss, timeline)?
            .with_episodes(episodes)?
            .with_rate(spec.rate)?;
        self.dirs.push(dir);
        self.index.insert(key, self.dirs.len() - 1);
        Ok(self.dirs.len() - 1)
    }

    /// The path of data from host `from` to host `to` on connection `conn`, opened by the
    /// client session `client.1` on host `client.0` (faults may name the session).
    pub(crate) fn conn_path(
        &mut self,
        from: &str,
        to: &str,
        conn: u64,
        client: (&str, &str),
    ) -> ConnPath {
        let (client_host, session) = client;
        let hosts = (from.to_string(), to.to_string());
        let back = (to.to_string(), from.to_string());
        // Faults may name the session instead of its host: then it gets directions of its own.
        let name = |h: &str| {
            if h == client_host {
                session.to_string()
            } else {
                h.to_string()
            }
        };
        let named = (name(from), name(to));
        let named_back = (named.1.clone(), named.0.clone());
        let (fwd_key, back_key) = if self.spec.mentions(&named) || self.spec.mentions(&named_back) {
            (named, named_back)
        } else {
            (hosts.clone(), back.clone())
        };
        // Specs were validated in `new`, so building a direction cannot fail here.
        let forward = self.direction(fwd_key, hosts).expect("validated direction");
        let reverse = self.direction(back_key, back).expect("validated direction");
        let rng = stream(self.seed, Purpose::Segments, &[names_key(from, to), conn]);
        let wheel = stream(self.seed, Purpose::Timers, &[names_key(from, to), conn]).next_u64();
        ConnPath {
            forward,
            reverse,
            rng,
            wheel,
        }
    }

    fn with_path<T>(
        &mut self,
        path: &mut ConnPath,
        f: impl FnOnce(&mut Path<'_>, &mut ChaCha8Rng) -> T,
    ) -> T {
        let (fwd, rev) = two_mut(&mut self.dirs, path.forward, path.reverse);
        let mut path_now = Path::new(fwd, rev, &self.spec.tcp);
        f(&mut path_now, &mut path.rng)
    }

    /// [`PathModel::carry`] on `path`.
    pub(crate) fn carry(
        &mut self,
        path: &mut ConnPath,
        at: Duration,
        payload: usize,
    ) -> Option<Duration> {
        // Only the forward direction: what `Path::carry_sized` does, without lending both.
        self.dirs[path.forward].carry_packet(at, payload, &mut path.rng)
    }

    /// [`PathModel::connect`] on `path`.
    pub(crate) fn connect(&mut self, path: &mut ConnPath, at: Duration) -> ConnectOutcome {
        self.with_path(path, |p, rng| p.syn(at, rng))
    }

    /// Packets dropped so far by full queues, over every direction.
    pub(crate) fn queue_drops(&self) -> u64 {
        self.dirs.iter().map(Direction::queue_drops).sum()
    }

    /// The kernels' TCP settings.
    pub(crate) fn tcp(&self) -> TcpConfig {
        self.spec.tcp
    }
}

/// The entries for the host pair, and for the session's own key if it differs.
fn both<T: Clone>(
    m: &BTreeMap<(String, String), Vec<T>>,
    key: &(String, String),
    hosts: &(String, String),
) -> Vec<T> {
    let mut v = m.get(hosts).cloned().unwrap_or_default();
    if key != hosts {
        v.extend(m.get(key).cloned().unwrap_or_default());
    }
    v
}

/// A stable number for a direction's names (FNV-1a), to key its random streams.
fn names_key(from: &str, to: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in from.bytes().chain([0u8]).chain(to.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// [`Links`] built from a [`NetworkSpec`] and a seed: one table of the network's directions
/// (`LinkTable`, which the event engine owns outright), shared by the paths it hands out.
#[derive(Clone)]
pub struct FaultLinks {
    inner: Arc<Mutex<LinkTable>>,
}

impl FaultLinks {
    /// Validates the spec; random outages are sampled up to `horizon`. A link with a rate turns
    /// on the kernels' segmentation and congestion window ([`TcpConfig::window`]).
    pub fn new(spec: NetworkSpec, seed: u64, horizon: Duration) -> Result<FaultLinks, FaultError> {
        Ok(FaultLinks {
            inner: Arc::new(Mutex::new(LinkTable::new(spec, seed, horizon)?)),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, LinkTable> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Links for FaultLinks {
    fn path(
        &mut self,
        from: &str,
        to: &str,
        conn: u64,
        client: (&str, &str),
    ) -> Box<dyn PathModel> {
        let path = self.table().conn_path(from, to, conn, client);
        Box::new(SharedPath {
            table: self.inner.clone(),
            path,
        })
    }

    fn queue_drops(&self) -> u64 {
        self.table().queue_drops()
    }

    fn tcp(&self) -> TcpConfig {
        self.table().tcp()
    }
}

/// One direction of one connection: which directions of the [`LinkTable`] it crosses, and its
/// own stream of per-segment draws.
pub(crate) struct ConnPath {
    forward: usize,
    reverse: usize,
    rng: ChaCha8Rng,
    /// Where the sending kernel's jiffy counter stands (see `sim::tcp`).
    wheel: u64,
}

impl ConnPath {
    pub(crate) fn wheel_seed(&self) -> u64 {
        self.wheel
    }
}

/// A [`ConnPath`] with the table it crosses, behind its lock: what [`FaultLinks`] hands out.
struct SharedPath {
    table: Arc<Mutex<LinkTable>>,
    path: ConnPath,
}

impl PathModel for SharedPath {
    fn carry(&mut self, at: Duration, payload: usize) -> Option<Duration> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.carry(&mut self.path, at, payload)
    }
    fn wheel_seed(&self) -> u64 {
        self.path.wheel
    }
    fn connect(&mut self, at: Duration) -> ConnectOutcome {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.connect(&mut self.path, at)
    }
}

/// A connection's two paths and the table they cross, as its TCP's [`Wire`]: `paths[i]`
/// carries what side `i` sends.
pub(crate) struct ConnWire<'a> {
    table: &'a mut LinkTable,
    paths: &'a mut [ConnPath; 2],
}

impl<'a> ConnWire<'a> {
    pub(crate) fn new(table: &'a mut LinkTable, paths: &'a mut [ConnPath; 2]) -> ConnWire<'a> {
        ConnWire { table, paths }
    }
}

impl Wire for ConnWire<'_> {
    fn carry(&mut self, from: usize, at: Duration, payload: usize) -> Option<Duration> {
        self.table.carry(&mut self.paths[from], at, payload)
    }
}

/// Two distinct elements of a slice, mutably.
fn two_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b, "a direction is not its own reverse");
    if a < b {
        let (l, r) = v.split_at_mut(b);
        (&mut l[a], &mut r[0])
    } else {
        let (l, r) = v.split_at_mut(a);
        (&mut r[0], &mut l[b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    #[test]
    fn connections_between_the_same_hosts_share_one_queue_and_a_session_named_by_a_fault_its_own() {
        // 1 Mbit/s, 5 ms: a full segment takes 12 ms to send. Two connections' segments offered
        // at once leave one after the other; a third session, given a direction of its own by a
        // partition aimed at it, does not wait for them.
        let mut spec = NetworkSpec::constant(ms(5));
        spec.default.rate = Some(LinkRate {
            bits_per_s: 1_000_000,
            queue: 1000,
        });
        spec.partitions.insert(
            ("client-2".to_string(), "server".to_string()),
            vec![ms(60_000)..ms(61_000)],
        );
        let mut links = FaultLinks::new(spec, 1, ms(120_000)).unwrap();
        assert!(links.tcp().window, "a rate turns the congestion window on");
        let mut a = links.path("clients", "server", 1, ("clients", "client-0"));
        let mut b = links.path("clients", "server", 2, ("clients", "client-1"));
        let mut c = links.path("clients", "server", 3, ("clients", "client-2"));
        assert_eq!(a.carry(ms(0), 1448), Some(ms(17)));
        assert_eq!(b.carry(ms(0), 1448), Some(ms(29)));
        assert_eq!(c.carry(ms(0), 1448), Some(ms(17)));
        // The other way is a queue of its own.
        let mut back = links.path("server", "clients", 1, ("clients", "client-0"));
        assert_eq!(back.carry(ms(0), 1448), Some(ms(17)));
        assert_eq!(links.queue_drops(), 0);
    }

    #[test]
    fn without_a_rate_the_window_stays_off() {
        let links = FaultLinks::new(NetworkSpec::constant(ms(5)), 1, ms(1000)).unwrap();
        assert!(!links.tcp().window);
    }
}
