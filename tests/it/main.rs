//! kaokore's integration tests: one binary (one compile, one link), a module per behaviour,
//! and one support module. Tests that fetch run against the fixture IIIF servers of the
//! kaokore-fixture crate, never the real hosts.

mod support;

mod build;
mod cli_docs;
mod cli_input_errors;
mod croissant;
mod fetch;
mod metadata;
#[cfg(unix)]
mod multi_size;
#[cfg(unix)]
mod out_commit;
#[cfg(unix)]
mod out_lock;
#[cfg(unix)]
mod out_ownership;
mod pack;
mod preview;
mod reference;
mod tfds;
mod verify;
mod webdataset;
