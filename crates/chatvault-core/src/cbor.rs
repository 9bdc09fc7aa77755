//! Canonical CBOR: the writer and strict reader behind trees, snapshot records and the
//! config, public so frontends encode their node `meta` the same way.
//!
//! The CBOR subset every core object uses: definite lengths, shortest integer heads, maps
//! with small integer keys in strictly ascending order.
//!
//! The writer is hand-rolled rather than `minicbor::Encoder` because writing into a `Vec`
//! cannot fail, and an infallible writer lets `encode` return bytes without an error path
//! that can never be taken; it is checked against minicbor byte for byte in the tests.
//! Reading goes through `minicbor::Decoder`, which bounds-checks every read.

use minicbor::Decoder;

use crate::error::{Error, Result};

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;

/// An infallible, canonical CBOR writer into a `Vec`.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// A head in its shortest form (RFC 8949 §4.2.1, "preferred serialization").
    fn head(&mut self, major: u8, n: u64) {
        let m = major << 5;
        if n < 24 {
            self.buf.push(m | n as u8);
        } else if let Ok(n) = u8::try_from(n) {
            self.buf.extend_from_slice(&[m | 24, n]);
        } else if let Ok(n) = u16::try_from(n) {
            self.buf.push(m | 25);
            self.buf.extend_from_slice(&n.to_be_bytes());
        } else if let Ok(n) = u32::try_from(n) {
            self.buf.push(m | 26);
            self.buf.extend_from_slice(&n.to_be_bytes());
        } else {
            self.buf.push(m | 27);
            self.buf.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// An unsigned integer.
    pub fn uint(&mut self, n: u64) {
        self.head(MAJOR_UNSIGNED, n);
    }

    /// A signed integer (major type 0 or 1).
    pub fn int(&mut self, n: i64) {
        match u64::try_from(n) {
            Ok(u) => self.head(MAJOR_UNSIGNED, u),
            // CBOR stores a negative n as -1 - n, which is !n in two's complement and
            // never overflows, unlike -1 - n itself for i64::MIN.
            Err(_) => self.head(MAJOR_NEGATIVE, !n as u64),
        }
    }

    /// A byte string.
    pub fn bytes(&mut self, b: &[u8]) {
        self.head(MAJOR_BYTES, b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    /// A UTF-8 text string.
    pub fn text(&mut self, s: &str) {
        self.head(MAJOR_TEXT, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// The head of an array of `len` items, which the caller writes next.
    pub fn array_head(&mut self, len: usize) {
        self.head(MAJOR_ARRAY, len as u64);
    }

    /// The head of a map whose entries the caller writes (for maps with non-integer keys).
    pub fn map_head(&mut self, len: usize) {
        self.head(MAJOR_MAP, len as u64);
    }

    /// Writes a map with integer keys whose entries `entries` writes; the entries are
    /// counted as they are written, so omitted fields need no separate tally.
    pub fn fields(&mut self, entries: impl FnOnce(&mut FieldWriter)) {
        let mut f = FieldWriter {
            body: Writer::new(),
            count: 0,
            last: None,
        };
        entries(&mut f);
        self.head(MAJOR_MAP, f.count);
        self.buf.extend_from_slice(&f.body.buf);
    }
}

/// Collects the entries of a map written by [`Writer::fields`].
#[derive(Debug)]
pub struct FieldWriter {
    body: Writer,
    count: u64,
    last: Option<u64>,
}

impl FieldWriter {
    /// Writes one entry. Keys must come in ascending order (a bug in the caller, not
    /// something input can cause, hence a debug assertion).
    pub fn field(&mut self, key: u64, value: impl FnOnce(&mut Writer)) {
        debug_assert!(self.last < Some(key), "field keys out of order");
        self.last = Some(key);
        self.count += 1;
        self.body.uint(key);
        value(&mut self.body);
    }
}

/// A reader over one object's bytes whose errors are `Corrupt { object }`.
#[derive(Debug)]
pub struct Reader<'a> {
    d: Decoder<'a>,
    object: &'a str,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`; `object` names the object in errors.
    pub fn new(bytes: &'a [u8], object: &'a str) -> Self {
        Self {
            d: Decoder::new(bytes),
            object,
        }
    }

    /// A `Corrupt` error naming this reader's object.
    pub fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::corrupt(self.object, reason)
    }

    fn cbor(&self, what: &str, e: minicbor::decode::Error) -> Error {
        self.corrupt(format!("{what}: {e}"))
    }

    fn remaining(&self) -> usize {
        self.d.input().len().saturating_sub(self.d.position())
    }

    /// Starts a map with integer keys.
    pub fn fields(&mut self) -> Result<Fields> {
        // A key and a value take at least a byte each.
        let left = self.map_len(2, "map")?;
        Ok(Fields { left, last: None })
    }

    /// Reads a definite map head, refusing a length the rest of the input cannot hold
    /// at `min_entry_len` bytes an entry (key and value).
    pub fn map_len(&mut self, min_entry_len: usize, what: &str) -> Result<u64> {
        let n = self
            .d
            .map()
            .map_err(|e| self.cbor(what, e))?
            .ok_or_else(|| self.corrupt(format!("{what}: indefinite-length map")))?;
        let fits = self.remaining() / min_entry_len.max(1);
        if n > fits as u64 {
            return Err(self.corrupt(format!("{what}: map longer than the object")));
        }
        Ok(n)
    }

    /// Reads key 0, the format version, which must come first: an unknown version is
    /// refused before anything else is read, since it may change what keys mean.
    pub fn version(&mut self, fields: &mut Fields, supported: u32) -> Result<()> {
        if fields.next_key(self)? != Some(0) {
            return Err(self.corrupt("no format version"));
        }
        let found = self.u64("format version")?;
        if found != u64::from(supported) {
            return Err(Error::UnsupportedFormat {
                object: self.object.into(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported,
            });
        }
        Ok(())
    }

    /// Reads a definite array head, refusing a length the rest of the input cannot
    /// hold at `min_item_len` bytes an item, so callers may pre-allocate it.
    pub fn array_len(&mut self, min_item_len: usize, what: &str) -> Result<usize> {
        let n = self
            .d
            .array()
            .map_err(|e| self.cbor(what, e))?
            .ok_or_else(|| self.corrupt(format!("{what}: indefinite-length array")))?;
        let fits = self.remaining() / min_item_len.max(1);
        match usize::try_from(n) {
            Ok(n) if n <= fits => Ok(n),
            _ => Err(self.corrupt(format!("{what}: array longer than the object"))),
        }
    }

    /// An unsigned integer.
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        self.d.u64().map_err(|e| self.cbor(what, e))
    }

    /// An unsigned integer that fits 32 bits.
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        self.d.u32().map_err(|e| self.cbor(what, e))
    }

    /// A signed integer.
    pub fn i64(&mut self, what: &str) -> Result<i64> {
        self.d.i64().map_err(|e| self.cbor(what, e))
    }

    /// A definite-length byte string.
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        self.d.bytes().map_err(|e| self.cbor(what, e))
    }

    /// A definite-length UTF-8 text string.
    pub fn text(&mut self, what: &str) -> Result<&'a str> {
        self.d.str().map_err(|e| self.cbor(what, e))
    }

    /// A byte string of exactly 32 bytes (an id or a key).
    pub fn id(&mut self, what: &str) -> Result<[u8; 32]> {
        let b = self.bytes(what)?;
        b.try_into()
            .map_err(|_| self.corrupt(format!("{what} is {} bytes, not 32", b.len())))
    }

    /// Skips one value of any shape (an unknown field). minicbor skips iteratively with
    /// a heap stack, so deep nesting cannot overflow ours.
    pub fn skip(&mut self) -> Result<()> {
        self.d.skip().map_err(|e| self.cbor("unknown field", e))
    }

    /// Refuses bytes after the object's top-level value.
    pub fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.corrupt(format!("{n} bytes after the end"))),
        }
    }
}

/// The keys of a map being read: integers, strictly ascending (no key twice).
#[derive(Debug)]
pub struct Fields {
    left: u64,
    last: Option<u64>,
}

impl Fields {
    /// The next key, or `None` after the last entry; the caller then reads its value.
    pub fn next_key(&mut self, r: &mut Reader<'_>) -> Result<Option<u64>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let key = r.u64("map key")?;
        if self.last >= Some(key) {
            return Err(r.corrupt(format!("map key {key} repeated or out of order")));
        }
        self.last = Some(key);
        Ok(Some(key))
    }
}
