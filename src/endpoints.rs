//! The Thalassa API URLs a store may use: an allow-list set by whoever installs the operator
//! (`--allowed-api-urls`), checked before a store's connection is built, so a refused URL is
//! never sent anything (no token exchange, no ServiceAccount token, no request).
//!
//! An entry is an `http(s)` URL: a store URL matches it when scheme, host and port are equal
//! (the port the scheme implies when none is written; hosts compared case-insensitively, no
//! wildcards) and the store URL's path is the entry's path or below it, segment by segment
//! (`https://h/api` allows `https://h/api` and `https://h/api/v2`, not `https://h/apiv2`).
//! URLs are compared as they are sent: parsed and normalised first (dot segments resolved,
//! percent-encoding and case of scheme and host normalised), so `https://h/api/../admin` is
//! `https://h/admin`. URLs with user information, a query or a fragment are never allowed.

use std::fmt;

use reqwest::Url;

/// The public Thalassa API: allowed when `--allowed-api-urls` is not given.
pub(crate) const PUBLIC_API_URL: &str = "https://api.thalassa.cloud";

/// One allowed origin and path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    scheme: String,
    host: String,
    port: u16,
    /// Path without a trailing `/` (empty: every path).
    path: String,
    /// The entry as given, for messages.
    text: String,
}

/// The allow-list of Thalassa API URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllowedUrls {
    entries: Vec<Entry>,
}

/// The parts of a URL the allow-list compares, after normalising it.
struct Parts {
    url: Url,
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

fn parts(text: &str) -> Result<Parts, String> {
    let url = Url::parse(text.trim()).map_err(|_| "it is not a URL".to_string())?;
    let scheme = url.scheme().to_string();
    if scheme != "http" && scheme != "https" {
        return Err("only http and https URLs are allowed".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a URL with user information is never allowed".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a URL with a query or fragment is never allowed".into());
    }
    let host = url
        .host_str()
        .ok_or_else(|| "the URL has no host".to_string())?
        .to_ascii_lowercase();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "the URL has no port".to_string())?;
    let path = url.path().trim_end_matches('/').to_string();
    Ok(Parts {
        url,
        scheme,
        host,
        port,
        path,
    })
}

impl AllowedUrls {
    /// Parses the entries; an entry that is not an allowable `http(s)` URL is an error.
    pub(crate) fn new<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Result<Self, String> {
        let mut parsed = Vec::new();
        for text in entries {
            let text = text.as_ref().trim();
            if text.is_empty() {
                continue;
            }
            let p = parts(text).map_err(|why| format!("{text:?}: {why}"))?;
            let entry = Entry {
                scheme: p.scheme,
                host: p.host,
                port: p.port,
                path: p.path,
                text: text.to_string(),
            };
            let same = |e: &Entry| {
                (&e.scheme, &e.host, e.port, &e.path)
                    == (&entry.scheme, &entry.host, entry.port, &entry.path)
            };
            if !parsed.iter().any(same) {
                parsed.push(entry);
            }
        }
        Ok(AllowedUrls { entries: parsed })
    }

    /// The store URL, normalised as it is sent, when the list allows it; otherwise why not.
    pub(crate) fn check(&self, url: &str) -> Result<String, String> {
        let p = parts(url)?;
        let allowed = self.entries.iter().any(|e| {
            e.scheme == p.scheme
                && e.host == p.host
                && e.port == p.port
                && (e.path.is_empty()
                    || p.path == e.path
                    || p.path
                        .strip_prefix(&e.path)
                        .is_some_and(|rest| rest.starts_with('/')))
        });
        if allowed {
            Ok(p.url.as_str().to_string())
        } else {
            Err("it is not in the operator's allow-list of Thalassa API URLs".into())
        }
    }

    /// The entries as given.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.text.as_str())
    }
}

impl fmt::Display for AllowedUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<&str> = self.entries().collect();
        f.write_str(&list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowedUrls {
        AllowedUrls::new(entries).unwrap()
    }

    #[test]
    fn scheme_host_and_port_must_be_equal() {
        let allowed = list(&["https://api.thalassa.cloud", "http://127.0.0.1:8080"]);
        for ok in [
            "https://api.thalassa.cloud",
            "https://api.thalassa.cloud/",
            "https://API.Thalassa.Cloud:443",
            "https://api.thalassa.cloud/v2",
            "http://127.0.0.1:8080",
            "HTTP://127.0.0.1:8080/x",
        ] {
            assert!(allowed.check(ok).is_ok(), "{ok} should be allowed");
        }
        for refused in [
            "http://api.thalassa.cloud",
            "https://api.thalassa.cloud:8443",
            "https://api.thalassa.cloud.evil.example",
            "https://evil.example/api.thalassa.cloud",
            "https://x.api.thalassa.cloud",
            "http://127.0.0.1:8081",
            "http://127.0.0.1",
            "http://localhost:8080",
            "http://[::1]:8080",
            "https://api.thalassa.cloud@evil.example",
            "https://user:pw@api.thalassa.cloud",
            "https://api.thalassa.cloud/?q=1",
            "https://api.thalassa.cloud/#f",
            "ftp://api.thalassa.cloud",
            "not a url",
            "",
        ] {
            assert!(
                allowed.check(refused).is_err(),
                "{refused} should be refused"
            );
        }
    }

    #[test]
    fn paths_match_by_segment_after_normalising() {
        let allowed = list(&["https://gw.example/thalassa/"]);
        assert_eq!(
            allowed.check("https://gw.example/thalassa").unwrap(),
            "https://gw.example/thalassa"
        );
        assert!(allowed.check("https://gw.example/thalassa/v1").is_ok());
        for refused in [
            "https://gw.example/",
            "https://gw.example/thalassa2",
            "https://gw.example/thalassa/../admin",
            "https://gw.example/thalassa/%2e%2e/admin",
            "https://gw.example/thalassa\\..\\admin",
        ] {
            assert!(
                allowed.check(refused).is_err(),
                "{refused} should be refused"
            );
        }
    }

    #[test]
    fn entries_are_validated() {
        assert!(AllowedUrls::new(["ftp://x"]).is_err());
        assert!(AllowedUrls::new(["https://u@x"]).is_err());
        assert!(AllowedUrls::new(["x"]).is_err());
        let empty = AllowedUrls::new(["", " "]).unwrap();
        assert!(empty.check(PUBLIC_API_URL).is_err());
        let twice = list(&[PUBLIC_API_URL, "https://api.thalassa.cloud/"]);
        assert_eq!(twice.entries().count(), 1, "the same entry once");
    }
}
