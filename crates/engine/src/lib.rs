//! Background work: each kind is a loop around a public single-step `tick(now)` that tests
//! call directly with any `now`, so nothing here needs a test to sleep.
//!
//! With several replicas on one PostgreSQL database, only the leader's loops tick (see
//! `Store::is_leader`); the work itself is claimed with conditional writes, so even an overlap
//! during a change of leader does nothing twice.

mod canaries;
mod checkpoints;
mod deliveries;
mod expiry;
mod freezes;
mod github;
mod probes;
mod soaks;

pub use canaries::CanaryRunner;
pub use checkpoints::CheckpointWriter;
pub use deliveries::DeliveryWorker;
pub use expiry::ExpiryWatcher;
pub use freezes::FreezeWatcher;
pub use github::GithubWatcher;
pub use probes::ProbeRunner;
pub use soaks::SoakRunner;

use deploy_safety_app::App;

/// Whether this replica should do the background work now.
fn leading(app: &App) -> bool {
    app.is_leader()
}
