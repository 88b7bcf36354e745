//! Client-side validation of Secrets Manager paths and URL segments, so a bad path fails with a
//! clear message instead of a server 400 (or, worse, a different route).

/// Longest secret path Thalassa accepts, in characters.
pub const MAX_PATH_LEN: usize = 512;

/// Why a secret path was rejected; each message names the violated rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is the empty string.
    #[error("secret path must not be empty")]
    Empty,
    /// The path does not start with `/`.
    #[error("secret path must start with '/'")]
    MissingLeadingSlash,
    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("secret path is {len} characters long; at most {MAX_PATH_LEN} are allowed")]
    TooLong {
        /// Length of the rejected path.
        len: usize,
    },
    /// The path contains a character outside `A-Z a-z 0-9 / _ - . +`.
    #[error(
        "secret path contains {character:?} at position {position}; only A-Z a-z 0-9 / _ - . + are allowed"
    )]
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Its character position (0-based).
        position: usize,
    },
    /// A secret path ends with `/` (only browse paths may).
    #[error("secret path must not end with '/'")]
    TrailingSlash,
    /// The path contains an empty segment.
    #[error("secret path must not contain '//'")]
    DoubleSlash,
    /// A segment of the path is `.` or `..`, which URL handling would resolve to another path.
    #[error("secret path must not contain '.' or '..' segments")]
    DotSegment,
}

/// Validates the path of a secret (not a browse directory): leading `/`, 1–512 characters from
/// `A-Z a-z 0-9 / _ - . +`, no trailing `/`, no `//`, no `.` or `..` segment. `/` alone is therefore not a secret path.
pub fn validate_path(path: &str) -> Result<(), PathError> {
    validate_common(path)?;
    if path.ends_with('/') {
        return Err(PathError::TrailingSlash);
    }
    Ok(())
}

/// Validates a browse directory or list prefix: like [`validate_path`], but a trailing `/` (and the
/// root `/`) is allowed.
pub fn validate_browse_path(path: &str) -> Result<(), PathError> {
    validate_common(path)
}

fn validate_common(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if !path.starts_with('/') {
        return Err(PathError::MissingLeadingSlash);
    }
    let len = path.chars().count();
    if len > MAX_PATH_LEN {
        return Err(PathError::TooLong { len });
    }
    if let Some((position, character)) = path.chars().enumerate().find(|(_, c)| !is_path_char(*c)) {
        return Err(PathError::InvalidCharacter {
            character,
            position,
        });
    }
    if path.contains("//") {
        return Err(PathError::DoubleSlash);
    }
    // `/a/../b` would reach `/b`: the path in the request must be the path that was validated.
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(PathError::DotSegment);
    }
    Ok(())
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.' | '+')
}

/// Whether `segment` can be put into a URL path segment as is (region, key identity or slug):
/// non-empty, at most 255 characters of `A-Z a-z 0-9 _ - .`, and not `.` or `..`.
pub(crate) fn is_plain_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 255
        && segment != "."
        && segment != ".."
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_path_rules() {
        let cases: &[(&str, Result<(), PathError>)] = &[
            ("/app/prod/db/password", Ok(())),
            ("/a", Ok(())),
            ("/app/a+b/c_d-e.f", Ok(())),
            ("/A9", Ok(())),
            ("", Err(PathError::Empty)),
            ("app/x", Err(PathError::MissingLeadingSlash)),
            ("/", Err(PathError::TrailingSlash)),
            ("/app/", Err(PathError::TrailingSlash)),
            ("/app//x", Err(PathError::DoubleSlash)),
            ("/team-a/../team-b/db/password", Err(PathError::DotSegment)),
            ("/a/./b", Err(PathError::DotSegment)),
            ("/..", Err(PathError::DotSegment)),
            ("/.", Err(PathError::DotSegment)),
            ("/a/..", Err(PathError::DotSegment)),
            ("/app/.hidden", Ok(())),
            ("/app/..x/x..", Ok(())),
            ("/app/.../v", Ok(())),
            (
                "/app x",
                Err(PathError::InvalidCharacter {
                    character: ' ',
                    position: 4,
                }),
            ),
            (
                "/app/%2F",
                Err(PathError::InvalidCharacter {
                    character: '%',
                    position: 5,
                }),
            ),
            (
                "/app?x",
                Err(PathError::InvalidCharacter {
                    character: '?',
                    position: 4,
                }),
            ),
            (
                "/é",
                Err(PathError::InvalidCharacter {
                    character: 'é',
                    position: 1,
                }),
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(&validate_path(path), expected, "path {path:?}");
        }
    }

    #[test]
    fn length_limit_is_512_characters() {
        let ok = format!("/{}", "a".repeat(511));
        assert_eq!(validate_path(&ok), Ok(()));
        let long = format!("/{}", "a".repeat(512));
        assert_eq!(validate_path(&long), Err(PathError::TooLong { len: 513 }));
    }

    #[test]
    fn browse_paths_may_end_with_slash() {
        assert_eq!(validate_browse_path("/"), Ok(()));
        assert_eq!(validate_browse_path("/app/prod/"), Ok(()));
        assert_eq!(validate_browse_path("/app/pro"), Ok(()));
        assert_eq!(validate_browse_path("//"), Err(PathError::DoubleSlash));
        assert_eq!(validate_browse_path("/a/../"), Err(PathError::DotSegment));
        assert_eq!(validate_browse_path("/./"), Err(PathError::DotSegment));
        assert_eq!(validate_browse_path("/a/.."), Err(PathError::DotSegment));
        assert_eq!(validate_browse_path("/a/.b/"), Ok(()));
        assert_eq!(
            validate_browse_path("app/"),
            Err(PathError::MissingLeadingSlash)
        );
    }

    #[test]
    fn messages_name_the_rule() {
        assert!(
            PathError::TrailingSlash
                .to_string()
                .contains("end with '/'")
        );
        assert!(PathError::DoubleSlash.to_string().contains("'//'"));
        assert_eq!(
            PathError::DotSegment.to_string(),
            "secret path must not contain '.' or '..' segments"
        );
        assert!(
            PathError::TooLong { len: 600 }
                .to_string()
                .contains("at most 512")
        );
        assert!(
            PathError::InvalidCharacter {
                character: '*',
                position: 3
            }
            .to_string()
            .contains("'*' at position 3")
        );
    }

    #[test]
    fn plain_segments() {
        assert!(is_plain_segment("nl-01"));
        assert!(is_plain_segment("kms-abc123"));
        assert!(!is_plain_segment(""));
        assert!(!is_plain_segment(".."));
        assert!(!is_plain_segment("a/b"));
        assert!(!is_plain_segment("a?b"));
    }
}
