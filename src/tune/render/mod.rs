//! A [`super::TuneReport`] written out for people and tools.
