//! Learning rules
pub mod optimizer;
