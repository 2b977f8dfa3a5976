//! Background work: each kind is a loop around a public single-step `tick(now)` that tests
//! call directly with any `now`, so nothing here needs a test to sleep.

mod canaries;
mod deliveries;
mod probes;

pub use canaries::CanaryRunner;
pub use deliveries::DeliveryWorker;
pub use probes::ProbeRunner;
