//! The connection negotiator (issue 7): which strategies can work for two nodes, in what
//! order, and the sans-IO machine that runs them with fallback.

pub mod strategy;

pub use strategy::{Strategy, UnknownStrategy};
