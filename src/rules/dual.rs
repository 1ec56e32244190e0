//! DP
