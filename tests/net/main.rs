//! The real drivers over loopback TCP: heartbeats, detection, restart and resume, hostile peers.

mod support;

mod detection;
mod hostile;
mod long_intervals;
mod restart;
mod spec;
mod traffic;
mod versus_sim;
