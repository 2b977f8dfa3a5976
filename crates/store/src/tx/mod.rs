//! The operations a transaction offers, one trait per domain. [`Tx`] is all of them: use cases
//! take `&mut dyn Tx`. Every backend implements all of them with the same meaning; the
//! conformance suite in `tests/` holds them to it.

mod approvals;
mod audit;
mod canaries;
mod events;
mod freezes;
mod gate;
mod github;
mod incidents;
mod probes;
mod releases;
mod sessions;
mod soaks;
mod tokens;
mod validations;

pub use approvals::ApprovalTx;
pub use audit::AuditTx;
pub use canaries::CanaryTx;
pub use events::EventTx;
pub use freezes::{FreezeRecord, FreezeTx};
pub use gate::GateTx;
pub use github::GithubTx;
pub use incidents::IncidentTx;
pub use probes::ProbeTx;
pub use releases::ReleaseTx;
pub use sessions::SessionTx;
pub use soaks::SoakTx;
pub use tokens::TokenTx;
pub use validations::ValidationTx;

/// One transaction: every domain's operations. Reads see the transaction's own writes;
/// nothing is visible to others until the store commits.
pub trait Tx:
    GateTx
    + ApprovalTx
    + TokenTx
    + SessionTx
    + IncidentTx
    + ValidationTx
    + ProbeTx
    + CanaryTx
    + ReleaseTx
    + SoakTx
    + FreezeTx
    + GithubTx
    + EventTx
    + AuditTx
{
}

impl<
    T: ?Sized
        + GateTx
        + ApprovalTx
        + TokenTx
        + SessionTx
        + IncidentTx
        + ValidationTx
        + ProbeTx
        + CanaryTx
        + ReleaseTx
        + SoakTx
        + FreezeTx
        + GithubTx
        + EventTx
        + AuditTx,
> Tx for T
{
}
