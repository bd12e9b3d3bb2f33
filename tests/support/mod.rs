//! Shared by the integration tests: the fixture IIIF server (the kaokore-fixture crate),
//! small real metadata and directory snapshots.
#![allow(dead_code)]

pub mod metadata;
pub mod tree;

pub use kaokore_fixture::*;
