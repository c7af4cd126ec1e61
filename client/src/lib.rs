//! Tally client library.
