//! Benchmarks only: this crate holds the criterion bench `stun` (`benches/stun.rs`), which
//! compares p2pd's STUN codec with peer crates side by side. It has no library code; its
//! peer-crate dependencies are dev-dependencies, and its lib target opts out of tests, so
//! `cargo test --workspace` never builds them. Run it with
//! `cargo bench -p p2pd-bench --bench stun`.
