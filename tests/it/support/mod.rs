//! What the integration tests share: small real metadata, directory snapshots, and the
//! inline dataset and image files of the pack and verify tests.

pub mod inline;
pub mod metadata;
pub mod tree;
