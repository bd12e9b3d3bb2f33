//! `urls.txt`: one IIIF Image API URL per line; the 0-based line number is the image id.

use std::fmt;

use super::{MAX_IMAGES, MetadataError, URLS_FILE, Warning, WarningKind, without_bom};

/// Parse urls.txt. A blank line keeps its id and has no URL (a warning); a line that is
/// not a URL the tool may fetch as written (see [`check_url`]) is an error. More than
/// [`MAX_IMAGES`] lines is an error too: each line, blank or not, becomes a record, so
/// the count bounds the memory a file of blank lines can take. A file with no URL at all
/// is an error: it would build an empty dataset.
pub(super) fn parse(text: &str) -> Result<(Vec<Option<String>>, Vec<Warning>), MetadataError> {
    let mut urls = Vec::new();
    let mut warnings = Vec::new();
    for (i, raw) in without_bom(text).lines().enumerate() {
        if i == MAX_IMAGES {
            return Err(MetadataError::invalid(
                URLS_FILE,
                i + 1,
                format!(
                    "more than {MAX_IMAGES} lines (image ids); KaoKore versions have about 10,000"
                ),
            ));
        }
        let line = raw.trim();
        if line.is_empty() {
            warnings.push(Warning {
                file: URLS_FILE,
                line: i + 1,
                kind: WarningKind::BlankUrlLine,
            });
            urls.push(None);
            continue;
        }
        check_url(line).map_err(|problem| {
            MetadataError::invalid(URLS_FILE, i + 1, format!("{problem}: '{}'", shorten(line)))
        })?;
        urls.push(Some(line.to_string()));
    }
    if urls.iter().all(Option::is_none) {
        return Err(MetadataError::invalid(
            URLS_FILE,
            urls.len().max(1),
            "no URL in the file: it would build an empty dataset",
        ));
    }
    Ok((urls, warnings))
}

/// Parse a URL as the fetch will (the `url` crate, which reqwest uses), so that the host
/// the provider is named from is the host that is asked. Refused: anything but http(s);
/// a backslash (parsers disagree on whether it ends the host); a user name or password
/// (credentials would be copied into every artifact and report); white space or control
/// characters (the parser drops or escapes them, so the URL fetched would not be the one
/// recorded).
pub(super) fn check_url(line: &str) -> Result<(), &'static str> {
    if line.contains('\\') {
        return Err("a backslash in a URL");
    }
    if line.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("white space or a control character in a URL");
    }
    let url = url::Url::parse(line).map_err(|_| "not an http(s) URL")?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("not an http(s) URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a user name or password in a URL");
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

/// The host of an http(s) URL (lower-cased, without port), or `None` for anything else,
/// as the fetch sees it: the `url` crate parses it (so `HTTP://` is http, and a
/// percent-encoded or internationalised host is normalised).
pub fn host_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.host_str().map(str::to_ascii_lowercase)
}

/// The organisation holding a work, as upstream's content-provider list names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Provider {
    /// codh.rois.ac.jp
    PreModernJapaneseText,
    /// iiif.lib.keio.ac.jp
    KeioUniversityLibraries,
    /// rmda.kulib.kyoto-u.ac.jp
    KyotoUniversityRareMaterials,
}

impl Provider {
    pub const ALL: [Provider; 3] = [
        Provider::PreModernJapaneseText,
        Provider::KeioUniversityLibraries,
        Provider::KyotoUniversityRareMaterials,
    ];

    /// The provider serving a URL, from its host as [`host_of`] parses it.
    pub fn from_url(url: &str) -> Option<Provider> {
        Self::from_host(&host_of(url)?)
    }

    /// The provider of a host (lower case, as a parsed URL has it).
    pub fn from_host(host: &str) -> Option<Provider> {
        match host {
            "codh.rois.ac.jp" => Some(Provider::PreModernJapaneseText),
            "iiif.lib.keio.ac.jp" => Some(Provider::KeioUniversityLibraries),
            "rmda.kulib.kyoto-u.ac.jp" => Some(Provider::KyotoUniversityRareMaterials),
            _ => None,
        }
    }

    /// The provider's full entry in upstream's content-provider list.
    pub fn name(self) -> &'static str {
        match self {
            Provider::PreModernJapaneseText => {
                "Dataset of Pre-Modern Japanese Text (National Institute of Japanese Literature and ROIS-DS Center for Open Data in the Humanities)"
            }
            Provider::KeioUniversityLibraries => {
                "Digital Collection of Keio University Libraries (Keio University Media Center)"
            }
            Provider::KyotoUniversityRareMaterials => {
                "Kyoto University Rare Materials Digital Archive (Kyoto University Library Network)"
            }
        }
    }

    pub fn host(self) -> &'static str {
        match self {
            Provider::PreModernJapaneseText => "codh.rois.ac.jp",
            Provider::KeioUniversityLibraries => "iiif.lib.keio.ac.jp",
            Provider::KyotoUniversityRareMaterials => "rmda.kulib.kyoto-u.ac.jp",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `{size}` part of an IIIF Image API URL, as written (`256,`, `256,256`, `!200,200`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SizeRequest(pub String);

impl SizeRequest {
    /// `{server}/{identifier}/{region}/{size}/{rotation}/{quality}.{format}`: the size is the
    /// third segment from the end.
    pub fn of(url: &str) -> Option<SizeRequest> {
        let path = url.split(['?', '#']).next()?;
        let mut parts = path.rsplit('/');
        let _quality = parts.next()?;
        let _rotation = parts.next()?;
        parts.next().map(|s| SizeRequest(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_providers() {
        let u = "https://rmda.kulib.kyoto-u.ac.jp/iiif/RB1/x.ptif/1,2,3,4/256,256/0/default.jpg";
        assert_eq!(host_of(u).as_deref(), Some("rmda.kulib.kyoto-u.ac.jp"));
        assert_eq!(
            Provider::from_url(u),
            Some(Provider::KyotoUniversityRareMaterials)
        );
        assert_eq!(
            host_of("http://127.0.0.1:8080/a").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            host_of("HTTP://Example.ORG/a").as_deref(),
            Some("example.org")
        );
        assert_eq!(host_of("Https://a.b/c").as_deref(), Some("a.b"));
        assert_eq!(host_of("ftp://x/y"), None);
        assert_eq!(host_of("FILE:///etc/passwd"), None);
        assert_eq!(host_of("h"), None);
        assert_eq!(host_of("file:///etc/passwd"), None);
        assert_eq!(Provider::from_url("http://127.0.0.1/a"), None);
    }

    #[test]
    fn size_request_is_third_from_end() {
        let u = "http://codh.rois.ac.jp/iiif/a/b.tif/1,2,3,4/!200,200/0/default.jpg";
        assert_eq!(SizeRequest::of(u), Some(SizeRequest("!200,200".into())));
    }

    #[test]
    fn blank_lines_keep_their_number() {
        let (urls, warnings) = parse("http://a/1\n\nhttp://a/3\n").unwrap();
        assert_eq!(
            urls,
            vec![Some("http://a/1".into()), None, Some("http://a/3".into())]
        );
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 2);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_url() {
        let (urls, _) = parse("\u{feff}http://a/1\n").unwrap();
        assert_eq!(urls, vec![Some("http://a/1".into())]);
    }

    #[test]
    fn too_many_lines_is_an_error_at_the_first_line_too_many() {
        let text = "http://a/0".to_string() + &"\n".repeat(MAX_IMAGES);
        assert_eq!(parse(&text).unwrap().0.len(), MAX_IMAGES);
        let err = parse(&(text + "http://a/1\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "urls.txt:{}: more than {MAX_IMAGES} lines (image ids); KaoKore versions have about 10,000",
                MAX_IMAGES + 1
            )
        );
    }

    #[test]
    fn a_backslash_is_refused_with_its_line() {
        // Parsers disagree on where the host ends: 127.0.0.1 or the Kyoto host after `@`.
        let bad =
            r"http://127.0.0.1:8080\ok\@rmda.kulib.kyoto-u.ac.jp/iiif/a/full/256,/0/default.jpg";
        let err = parse(&format!("http://a/1\n\n{bad}\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("urls.txt:3: a backslash in a URL: '{}'", shorten(bad))
        );
    }

    #[test]
    fn a_user_name_or_password_is_refused_with_its_line() {
        for bad in [
            "https://user:secret@codh.rois.ac.jp/a.jpg",
            "https://user@codh.rois.ac.jp/a.jpg",
            "https://:secret@codh.rois.ac.jp/a.jpg",
            "http://127.0.0.1:8080@rmda.kulib.kyoto-u.ac.jp/a.jpg",
        ] {
            let err = parse(&format!("http://a/1\n{bad}\n")).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("urls.txt:2: a user name or password in a URL: '{bad}'")
            );
        }
        // An `@` after the host is part of the path, and harmless.
        assert!(parse("http://a/b@c.jpg\n").is_ok());
    }

    #[test]
    fn white_space_and_control_characters_inside_a_url_are_refused() {
        for bad in [
            "http://a/b c.jpg",
            "http://a/b\tc.jpg",
            "http://a/b\u{7f}.jpg",
        ] {
            let err = parse(&format!("{bad}\n")).unwrap_err();
            assert!(
                err.to_string().starts_with("urls.txt:1: white space"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_provider_is_named_from_the_host_the_fetch_asks() {
        // Whatever a URL looks like, the host named is the one reqwest would connect to.
        for u in [
            r"http://127.0.0.1:8080\ok\@rmda.kulib.kyoto-u.ac.jp/a.jpg",
            "http://rmda%2Ekulib.kyoto-u.ac.jp/a.jpg",
            "http://rmda.kulib.kyoto-u.ac.jp:80/a.jpg?x@codh.rois.ac.jp",
            "http://a@b@codh.rois.ac.jp/a.jpg",
        ] {
            let asked = reqwest::Url::parse(u).unwrap();
            assert_eq!(host_of(u).as_deref(), asked.host_str(), "{u}");
        }
        assert_eq!(
            Provider::from_url(r"http://127.0.0.1:8080\ok\@rmda.kulib.kyoto-u.ac.jp/a.jpg"),
            None
        );
        assert_eq!(
            Provider::from_url("http://rmda%2Ekulib.kyoto-u.ac.jp/a.jpg"),
            Some(Provider::KyotoUniversityRareMaterials)
        );
    }

    #[test]
    fn a_file_without_any_url_is_refused() {
        for text in ["", "\n", "\n \n\t\n", "\u{feff}\n\n"] {
            let err = parse(text).unwrap_err();
            assert!(
                err.to_string().contains("no URL in the file"),
                "{text:?}: {err}"
            );
        }
        assert_eq!(
            parse("\n\n\n").unwrap_err().to_string(),
            "urls.txt:3: no URL in the file: it would build an empty dataset"
        );
    }

    #[test]
    fn non_http_is_an_error_with_its_line() {
        let err = parse("http://a/1\nfile:///etc/passwd\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "urls.txt:2: not an http(s) URL: 'file:///etc/passwd'"
        );
    }
}
