//! kaokore: turn the KaoKore dataset (IIIF image URLs + expert labels, published by CODH)
//! into machine-learning release artifacts: MNIST-style idx, NumPy npz and Parquet by
//! default, and every other format of the registry ([`pack::format`]) on request.
//!
//! The pipeline is `metadata -> fetch -> normalize -> encode -> pack -> verify`; each stage
//! is one module, and [`pipeline`] is the only place that knows their order. The modules
//! form layers (README, "Code layout"): each imports only from its own layer or below.

pub mod config;
pub mod decode;
pub(crate) mod digest;
pub mod encode;
pub mod error;
pub mod fetch;
pub mod fs;
pub mod info;
pub mod layout;
pub mod metadata;
pub mod normalize;
pub mod out;
pub mod pack;
pub mod pipeline;
pub(crate) mod process;
pub mod progress;
pub mod report;
pub mod verify;

pub use config::{BuildConfig, FetchOptions, Formats, PackOptions, Rewrite, default_cache_dir};
pub use error::Error;
pub use metadata::{Dataset, DatasetVersion, ImageId, Split};

/// The attribution every output carries, as upstream asks.
pub const ATTRIBUTION: &str =
    "\"KaoKore Dataset\" (collected by CODH from multiple organizations), doi:10.20676/00000353";
pub const DOI: &str = "10.20676/00000353";
pub const LICENSE: &str = "CC BY-SA 4.0";
pub const LICENSE_URL: &str = "https://creativecommons.org/licenses/by-sa/4.0/";
/// Upstream's request, repeated wherever image data is written.
pub const REDISTRIBUTION_REQUEST: &str = "The KaoKore image data is intentionally not distributed by its publishers, so that image providers can see which images are used. Please do not redistribute a derived dataset that includes the image data: build it yourself with this tool.";
pub const CITATION: &str = "Yingtao Tian, Chikahiko Suzuki, Tarin Clanuwat, Mikel Bober-Irizar, Alex Lamb, Asanobu Kitamoto. \"KaoKore: A Pre-modern Japanese Art Facial Expression Dataset\". Proceedings of the International Conference on Computational Creativity (ICCC), 2020, pages 415-422. arXiv:2002.08595.";
