//! The background workers: adapters that take their work from the database instead of a
//! request. Each runs on every node, and any node may take over another's work.

pub mod maintenance;
pub mod queue;
