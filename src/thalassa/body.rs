//! Reading response bodies under a cap and a process-wide byte budget.
//!
//! Every 2xx body the client reads goes into a [`BodySink`]: the plain [`BufferSink`] keeps the
//! bytes (for bodies that are decoded whole: reveals, metadata, tokens), the [`ListingSink`]
//! parses a listing (a JSON array of secrets) element by element as it arrives and keeps only
//! the entries under the requested prefix, so neither the raw listing nor the entries outside the
//! prefix are ever held. While a sink holds bytes, it holds as many permits of the
//! [`ByteBudget`]: the bytes of all bodies being read or decoded at once are bounded for the
//! whole process, whatever the servers send.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use super::types::ListedSecret;

/// Largest single element of a listing (one secret's metadata, with its labels, annotations and
/// description). A larger one makes the listing invalid.
pub const MAX_LISTED_ENTRY_BYTES: usize = 256 * 1024;

/// Most entries under the prefix one listing may hold. A listing that names more is refused (the
/// entries already parsed are dropped): a Secret could not hold that many keys anyway, and
/// explicit paths in such a directory are then checked one by one.
pub const MAX_LISTED_SECRETS: usize = 50_000;

/// The process-wide budget of response bytes held at once (one permit per byte).
#[derive(Clone, Debug)]
pub(crate) struct ByteBudget {
    semaphore: Arc<Semaphore>,
    total: usize,
}

impl ByteBudget {
    /// A budget of `bytes` (at least the largest single body any call reads).
    pub(crate) fn new(bytes: usize) -> Self {
        let total = bytes.min(Semaphore::MAX_PERMITS);
        ByteBudget {
            semaphore: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The budget's size.
    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Bytes not held by any body right now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Makes `held` cover exactly `bytes`: waits for more permits, or gives back the surplus.
    pub(crate) async fn hold(&self, held: &mut Option<OwnedSemaphorePermit>, bytes: usize) {
        let have = held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        // Never more than the whole budget (permits held here included), or it would wait for
        // itself.
        let want = bytes.min(self.total);
        if want > have {
            let more = u32::try_from(want - have).unwrap_or(u32::MAX);
            let permit = Arc::clone(&self.semaphore)
                .acquire_many_owned(more)
                .await
                .expect("the byte budget is never closed");
            match held {
                Some(held) => held.merge(permit),
                None => *held = Some(permit),
            }
        } else if bytes < have
            && let Some(permit) = held.as_mut()
        {
            drop(permit.split(have - bytes));
        }
    }
}

/// A body that keeps its share of the [`ByteBudget`] until it is dropped.
pub(crate) struct HeldBody {
    bytes: Zeroizing<Vec<u8>>,
    _held: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for HeldBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Why a sink refused a body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SinkError {
    /// More than the call's cap.
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// Not the expected shape; the detail quotes no content.
    Invalid(String),
}

/// Where a 2xx body goes as it is read.
pub(crate) trait BodySink: Send {
    /// What the sink yields at the end of the body.
    type Output: Send;

    /// The largest body it takes.
    fn limit(&self) -> usize;

    /// The bytes the sink would hold after taking `more` bytes (reserved from the budget
    /// before [`BodySink::push`]).
    fn held_after(&self, more: usize) -> usize;

    /// The bytes it holds now.
    fn held(&self) -> usize;

    /// Takes the next chunk.
    fn push(&mut self, chunk: &[u8]) -> Result<(), SinkError>;

    /// The end of the body; `held` is the budget the sink's bytes hold.
    fn finish(self, held: Option<OwnedSemaphorePermit>) -> Result<Self::Output, SinkError>;
}

/// Keeps the whole body (up to `limit` bytes) in a zeroizing buffer.
pub(crate) struct BufferSink {
    limit: usize,
    body: Zeroizing<Vec<u8>>,
}

impl BufferSink {
    /// An empty buffer for a body of at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        BufferSink {
            limit,
            body: Zeroizing::new(Vec::new()),
        }
    }

    /// The capacity after taking `more` bytes: exactly what is needed, at least doubling, never
    /// past the limit.
    fn capacity_for(&self, more: usize) -> usize {
        let needed = self.body.len() + more;
        if self.body.capacity() >= needed {
            self.body.capacity()
        } else {
            needed
                .max(self.body.capacity() * 2)
                .min(self.limit.max(needed))
        }
    }
}

impl BodySink for BufferSink {
    type Output = HeldBody;

    fn limit(&self) -> usize {
        self.limit
    }

    fn held_after(&self, more: usize) -> usize {
        if self.body.len() + more > self.limit {
            self.body.capacity()
        } else {
            self.capacity_for(more)
        }
    }

    fn held(&self) -> usize {
        self.body.capacity()
    }

    fn push(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        if self.body.len() + chunk.len() > self.limit {
            return Err(SinkError::TooLarge { limit: self.limit });
        }
        // Grow by hand so no reallocation leaves an unzeroized copy behind.
        let capacity = self.capacity_for(chunk.len());
        if capacity > self.body.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(capacity));
            bigger.extend_from_slice(&self.body);
            self.body = bigger;
        }
        self.body.extend_from_slice(chunk);
        Ok(())
    }

    fn finish(self, held: Option<OwnedSemaphorePermit>) -> Result<HeldBody, SinkError> {
        Ok(HeldBody {
            bytes: self.body,
            _held: held,
        })
    }
}

/// Where the listing parser is in the JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the `[`.
    Start,
    /// After `[` or `,`: an element (or, right after `[`, the `]`).
    Element { first: bool },
    /// Inside an element.
    InElement,
    /// After an element: `,` or `]`.
    AfterElement,
    /// After the `]`.
    Done,
}

/// Parses a listing (a JSON array of secret metadata) as it arrives: each element is decoded
/// once it is complete and kept only when its path is under `prefix`. Holds at most one
/// element's bytes ([`MAX_LISTED_ENTRY_BYTES`]) besides the entries kept (at most
/// [`MAX_LISTED_SECRETS`]); the total body is capped at `limit` bytes.
pub(crate) struct ListingSink {
    prefix: String,
    limit: usize,
    read: usize,
    at: At,
    element: Vec<u8>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    kept: Vec<ListedSecret>,
    /// Bytes of the kept entries' strings (what they hold, roughly).
    kept_bytes: usize,
    /// Entries under the prefix counted past [`MAX_LISTED_SECRETS`] (none are then kept).
    overflow: Option<usize>,
}

/// The result of a streamed listing.
#[derive(Debug)]
pub enum Listed {
    /// Every entry under the prefix.
    Entries(Vec<ListedSecret>),
    /// More than [`MAX_LISTED_SECRETS`] entries under the prefix (at least this many).
    TooMany(usize),
}

impl ListingSink {
    /// A parser keeping entries under `prefix`, of a body of at most `limit` bytes.
    pub(crate) fn new(prefix: &str, limit: usize) -> Self {
        ListingSink {
            prefix: prefix.to_owned(),
            limit,
            read: 0,
            at: At::Start,
            element: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            kept: Vec::new(),
            kept_bytes: 0,
            overflow: None,
        }
    }

    /// Adds bytes of the element being read, up to [`MAX_LISTED_ENTRY_BYTES`].
    fn append(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        if self.element.len() + bytes.len() > MAX_LISTED_ENTRY_BYTES {
            return Err(Self::invalid(&format!(
                "an entry is larger than {MAX_LISTED_ENTRY_BYTES} bytes"
            )));
        }
        // Doubling, but never past the entry cap.
        let needed = self.element.len() + bytes.len();
        if needed > self.element.capacity() {
            let target = needed
                .max(self.element.capacity() * 2)
                .min(MAX_LISTED_ENTRY_BYTES);
            self.element.reserve_exact(target - self.element.len());
        }
        self.element.extend_from_slice(bytes);
        Ok(())
    }

    fn invalid(detail: &str) -> SinkError {
        SinkError::Invalid(format!("listing: {detail}"))
    }

    /// Decodes the element just completed and keeps it when it is under the prefix.
    fn complete_element(&mut self) -> Result<(), SinkError> {
        let entry: ListedSecret = serde_json::from_slice(&self.element).map_err(|e| {
            SinkError::Invalid(format!(
                "listing entry: {}",
                super::types::json_error_detail(&e)
            ))
        })?;
        self.element.clear();
        if self.element.capacity() > 64 * 1024 {
            self.element.shrink_to(64 * 1024);
        }
        if !entry.path.starts_with(&self.prefix) {
            return Ok(());
        }
        if let Some(count) = self.overflow.as_mut() {
            *count += 1;
        } else if self.kept.len() == MAX_LISTED_SECRETS {
            // Past the cap: stop holding, keep counting.
            self.kept = Vec::new();
            self.kept_bytes = 0;
            self.overflow = Some(MAX_LISTED_SECRETS + 1);
        } else {
            self.kept_bytes += entry.path.len()
                + entry.kms_key.as_ref().map_or(0, |k| k.identity.len())
                + std::mem::size_of::<ListedSecret>();
            self.kept.push(entry);
        }
        Ok(())
    }
}

impl BodySink for ListingSink {
    type Output = Listed;

    fn limit(&self) -> usize {
        self.limit
    }

    fn held_after(&self, more: usize) -> usize {
        self.held() + more
    }

    fn held(&self) -> usize {
        self.element.capacity() + self.kept_bytes
    }

    fn push(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        self.read += chunk.len();
        if self.read > self.limit {
            return Err(SinkError::TooLarge { limit: self.limit });
        }
        let mut start = None;
        for (i, &byte) in chunk.iter().enumerate() {
            match self.at {
                At::InElement => {
                    if self.in_string {
                        if self.escaped {
                            self.escaped = false;
                        } else if byte == b'\\' {
                            self.escaped = true;
                        } else if byte == b'"' {
                            self.in_string = false;
                        }
                        continue;
                    }
                    match byte {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == 0 {
                                let from = start.take().unwrap_or(0);
                                self.append(&chunk[from..=i])?;
                                self.complete_element()?;
                                self.at = At::AfterElement;
                            }
                        }
                        _ => {}
                    }
                }
                _ if byte.is_ascii_whitespace() => {}
                At::Start if byte == b'[' => self.at = At::Element { first: true },
                At::Element { first: true } if byte == b']' => self.at = At::Done,
                At::Element { .. } if byte == b'{' => {
                    self.at = At::InElement;
                    self.depth = 1;
                    start = Some(i);
                }
                At::Element { .. } => return Err(Self::invalid("an entry is not an object")),
                At::AfterElement if byte == b',' => self.at = At::Element { first: false },
                At::AfterElement if byte == b']' => self.at = At::Done,
                At::Start => return Err(Self::invalid("not a JSON array")),
                _ => return Err(Self::invalid("unexpected content between entries")),
            }
        }
        if self.at == At::InElement {
            let from = start.unwrap_or(0);
            self.append(&chunk[from..])?;
        }
        Ok(())
    }

    fn finish(self, held: Option<OwnedSemaphorePermit>) -> Result<Listed, SinkError> {
        drop(held);
        if self.at != At::Done {
            return Err(Self::invalid("the body ended inside the array"));
        }
        Ok(match self.overflow {
            Some(count) => Listed::TooMany(count),
            None => Listed::Entries(self.kept),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> String {
        format!(
            r#"{{"path":"{path}","currentVersion":3,"labels":{{"a":"}}]\"x"}},"kmsKey":{{"identity":"k","status":"active"}}}}"#
        )
    }

    /// Feeds `body` in chunks of `size` bytes.
    fn feed(prefix: &str, body: &str, size: usize) -> Result<Listed, SinkError> {
        let mut sink = ListingSink::new(prefix, 1 << 20);
        for chunk in body.as_bytes().chunks(size) {
            sink.push(chunk)?;
            assert!(
                sink.held() <= MAX_LISTED_ENTRY_BYTES + sink.kept_bytes,
                "{} {}",
                sink.element.capacity(),
                sink.element.len()
            );
        }
        sink.finish(None)
    }

    fn paths(listed: Listed) -> Vec<String> {
        match listed {
            Listed::Entries(entries) => entries.into_iter().map(|e| e.path).collect(),
            Listed::TooMany(n) => panic!("too many: {n}"),
        }
    }

    #[test]
    fn a_listing_keeps_only_entries_under_the_prefix_whatever_the_chunking() {
        let body = format!(
            " [ {} , {},{}\n,{} ] ",
            entry("/app/a"),
            entry("/other/x"),
            entry("/app/sub/b"),
            entry("/ap")
        );
        for size in [1, 2, 3, 7, 64, body.len()] {
            assert_eq!(
                paths(feed("/app/", &body, size).unwrap()),
                ["/app/a", "/app/sub/b"],
                "chunks of {size}"
            );
        }
        assert!(paths(feed("/app/", "[]", 1).unwrap()).is_empty());
        assert!(paths(feed("/app/", " [ ] ", 1).unwrap()).is_empty());
    }

    #[test]
    fn malformed_or_truncated_listings_are_refused_without_quoting_them() {
        for body in [
            "{}",
            "[1]",
            "[{\"path\":\"/app/a\"} {\"path\":\"/app/b\"}]",
            "[{\"path\":\"/app/a\"}",
            "[{\"path\":\"/app/a\"},",
            "[{\"path\":\"/app/a\"}] x",
            "[{\"nopath\":\"secret-ish\"}]",
        ] {
            match feed("/app/", body, 3) {
                Err(SinkError::Invalid(detail)) => {
                    assert!(!detail.contains("secret-ish"), "{detail}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        // One entry larger than its cap.
        let huge = format!(
            "[{{\"path\":\"/app/a\",\"d\":\"{}\"}}]",
            "x".repeat(MAX_LISTED_ENTRY_BYTES)
        );
        assert!(matches!(
            feed("/app/", &huge, 4096),
            Err(SinkError::Invalid(_))
        ));
        // The body's cap.
        let mut sink = ListingSink::new("/app/", 10);
        assert_eq!(
            sink.push(b"[   ]      "),
            Err(SinkError::TooLarge { limit: 10 })
        );
    }

    #[test]
    fn past_the_entry_cap_a_listing_counts_but_holds_nothing() {
        let mut sink = ListingSink::new("/app/", usize::MAX);
        sink.push(b"[").unwrap();
        for i in 0..=MAX_LISTED_SECRETS + 10 {
            let comma = if i == 0 { "" } else { "," };
            sink.push(format!("{comma}{{\"path\":\"/app/{i}\"}}").as_bytes())
                .unwrap();
        }
        sink.push(b"]").unwrap();
        assert_eq!(sink.kept_bytes, 0);
        assert!(matches!(
            sink.finish(None),
            Ok(Listed::TooMany(n)) if n == MAX_LISTED_SECRETS + 11
        ));
    }

    #[tokio::test]
    async fn the_budget_follows_what_is_held() {
        let budget = ByteBudget::new(100);
        let mut held = None;
        budget.hold(&mut held, 60).await;
        assert_eq!(budget.available(), 40);
        budget.hold(&mut held, 10).await;
        assert_eq!(budget.available(), 90);
        budget.hold(&mut held, 100).await;
        assert_eq!(budget.available(), 0);
        drop(held);
        assert_eq!(budget.available(), 100);
    }
}
