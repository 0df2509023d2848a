//! VRRPv2/v3 (RFC 3768, RFC 9568) protocol core and tokio driver, interoperable with keepalived.
//!
//! Work in progress: see the project's issues.
