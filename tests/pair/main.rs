//! Protocol behaviour: a client and a server session over a fake link with a fake clock.

mod harness;

mod errors;
mod health;
mod heartbeats;
mod resume;
mod window;
