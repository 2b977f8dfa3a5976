//! Background work: each kind is a loop around a public single-step `tick(now)` that tests
//! call directly with any `now`, so nothing here needs a test to sleep.

mod probes;

pub use probes::ProbeRunner;
