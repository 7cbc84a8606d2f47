//! The real drivers on simulated hosts: faults, detection, determinism.

mod endpoint_faults;
