//! Active health checks, rise/fall state machines and passive outlier detection.
//!
//! Work in progress: see the project's issues.
