//! Live endpoint sets and load-balancing policies as tower services.
//!
//! Work in progress: see the project's issues.
