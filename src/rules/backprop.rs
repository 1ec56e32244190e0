//! Back-propagation
