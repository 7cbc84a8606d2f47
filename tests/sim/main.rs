//! The real drivers on simulated hosts: faults, detection, determinism.

mod closed_form;
mod counters;
mod delivery;
mod determinism;
mod endpoint_faults;
mod engine;
mod judge;
mod link_rate;
mod long_intervals;
mod metrics;
mod network_faults;
