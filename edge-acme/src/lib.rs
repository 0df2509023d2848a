//! ACME HTTP-01 certificates shared by an HA pair: storage, challenge responder, rustls resolver.
//!
//! Work in progress: see the project's issues.
