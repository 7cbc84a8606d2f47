//! The real drivers over loopback TCP: heartbeats, detection, restart and resume, hostile peers.

mod support;

mod detection;
mod hostile;
mod restart;
mod traffic;
