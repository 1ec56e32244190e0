//! Dense linear algebra helpers
