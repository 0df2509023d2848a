//! Runnable examples for the edge crates; see `cargo run -p edge-examples --example NAME`.
