//! Sans-IO TLS ClientHello parser (SNI, ALPN, JA4), tokio adapter and SNI router.
//!
//! Work in progress: see the project's issues.
