//! The upstream metadata files of every version, compiled into the binary.

use std::fmt;
use std::str::FromStr;

use super::MetadataFiles;

/// A published KaoKore version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DatasetVersion {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

impl DatasetVersion {
    pub const ALL: [DatasetVersion; 4] = [Self::V1_0, Self::V1_1, Self::V1_2, Self::V1_3];
    pub const LATEST: DatasetVersion = Self::V1_3;

    /// `1.0` .. `1.3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
            Self::V1_2 => "1.2",
            Self::V1_3 => "1.3",
        }
    }
}

impl fmt::Display for DatasetVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DatasetVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl FromStr for DatasetVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix('v').unwrap_or(s);
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown dataset version '{s}' (expected 1.0, 1.1, 1.2 or 1.3)"))
    }
}

macro_rules! embed {
    ($dir:literal, $version:expr) => {
        MetadataFiles {
            origin: format!("embedded v{}", $version),
            urls: include_str!(concat!("../../data/kaokore-metadata/", $dir, "/urls.txt")).into(),
            labels: include_str!(concat!("../../data/kaokore-metadata/", $dir, "/labels.csv"))
                .into(),
            original_tags: include_str!(concat!(
                "../../data/kaokore-metadata/",
                $dir,
                "/original_tags.txt"
            ))
            .into(),
            class_names_en: include_str!(concat!(
                "../../data/kaokore-metadata/",
                $dir,
                "/labels.metadata.en.txt"
            ))
            .into(),
            class_names_ja: include_str!(concat!(
                "../../data/kaokore-metadata/",
                $dir,
                "/labels.metadata.ja.txt"
            ))
            .into(),
        }
    };
}

pub(super) fn files(version: DatasetVersion) -> MetadataFiles {
    match version {
        DatasetVersion::V1_0 => embed!("v1.0", version),
        DatasetVersion::V1_1 => embed!("v1.1", version),
        DatasetVersion::V1_2 => embed!("v1.2", version),
        DatasetVersion::V1_3 => embed!("v1.3", version),
    }
}
