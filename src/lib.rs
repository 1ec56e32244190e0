//! # dyadsim — an analog-crossbar hardware model and on-chip training emulator
//!
//! dyadsim emulates a chip that learns with **dual propagation** (DP) and its
//! adjoint variant **DP⊤** (Høier & Zach, *Two Tales of Single-Phase
//! Contrastive Hebbian Learning*, ICML 2024; Høier, Staudt & Zach, *Dual
//! Propagation*, ICML 2023).
//!
//! The modules are layers: each imports only the ones listed before it
//! (`tests/layers.rs` checks this; `docs/DESIGN.md` §6 draws the map).

pub mod numbers;
pub mod check;
pub mod kernels;
pub mod linalg;
pub mod random;
pub mod data;
pub mod devices;
pub mod substrate;
pub mod controller;
pub mod crossbar;
pub mod digital;
pub mod network;
pub mod rules;
pub mod circuit;
pub mod metrics;
pub mod experiment;
pub mod report;
