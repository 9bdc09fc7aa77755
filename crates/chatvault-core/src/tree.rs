//! Trees: the generic, canonical container a snapshot's root points at, and the CBOR
//! helpers shared by every CBOR-encoded object of the core.
//!
//! Core knows nothing of files or chats. A tree is a list of named nodes; each may link a
//! subtree, reference content chunks, and carry `meta`, an opaque byte string the frontend
//! encodes (canonically) itself. Core reads only what it needs for garbage collection and
//! restore: names, subtree links and content references.
//!
//! # Encoding (docs/FORMAT.md, "Trees")
//!
//! A CBOR map with small integer keys:
//!
//! | key | field   | value                                                  | when absent  |
//! |-----|---------|--------------------------------------------------------|--------------|
//! | 0   | version | unsigned, `1`                                          | never        |
//! | 1   | nodes   | array of node maps, sorted by name bytes               | no nodes     |
//!
//! Node map:
//!
//! | key | field   | value                                                  | when absent  |
//! |-----|---------|--------------------------------------------------------|--------------|
//! | 0   | name    | byte string, non-empty (names need not be UTF-8)       | never        |
//! | 1   | subtree | byte string, 32-byte blob id                           | no subtree   |
//! | 2   | content | array of `[id: 32-byte byte string, len: unsigned u32]`| no content   |
//! | 3   | meta    | byte string, frontend-defined                          | empty meta   |
//!
//! Invariants:
//! - **Canonical.** Nodes are sorted strictly ascending by name bytes and names are
//!   non-empty, so there are no duplicates; the encoder writes definite lengths, shortest
//!   integer heads, map keys in ascending order and omits absent or empty fields. The same
//!   tree therefore always encodes to the same bytes, hence the same blob id, which is what
//!   lets an unchanged subtree be reused by reference.
//! - **Forward compatible.** The decoder skips map keys it does not know (a newer writer may
//!   add fields) but refuses a version it does not know before reading anything else, since
//!   a new version may change what known keys mean.
//! - **Hostile input.** Decoding never panics, refuses what would make the tree ambiguous
//!   (unsorted or duplicate names, repeated or descending map keys, ids that are not 32
//!   bytes, trailing bytes) and pre-allocates no more than the input can hold.
//! - Error reasons never quote names or meta: they are backup plaintext.

use crate::error::{Error, Result};
use crate::id::BlobId;

use self::cbor::{Reader, Writer};

/// The tree encoding version this build writes and reads.
const TREE_VERSION: u32 = 1;

/// Smallest possible encoding of a node: map head, key 0, byte-string head, one name byte.
const MIN_NODE_LEN: usize = 4;

/// Smallest possible encoding of a content reference: array head, 2-byte head of a 32-byte
/// string, the id, a one-byte length.
const MIN_CONTENT_REF_LEN: usize = 36;

/// A reference to one content chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRef {
    /// The chunk's blob id.
    pub id: BlobId,
    /// The chunk's raw plaintext length in bytes (before compression and sealing), so a
    /// restore can seek without fetching earlier chunks.
    pub len: u32,
}

/// One named entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The entry's name: raw bytes, since non-UTF-8 file names exist. Never empty. Core does
    /// not interpret it; restore refuses names that would escape its target.
    pub name: Vec<u8>,
    /// The tree this entry links to, if any.
    pub subtree: Option<BlobId>,
    /// The chunks of the entry's content, in order.
    pub content: Vec<ContentRef>,
    /// Frontend-defined metadata, encoded canonically by the frontend.
    pub meta: Vec<u8>,
}

/// A canonical list of nodes, sorted by name with no duplicates.
///
/// The only way to build one is [`Tree::new`] or [`Tree::decode`], which both check the
/// ordering, so every `Tree` has exactly one encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Builds a tree from nodes in any order, sorting them by name bytes.
    ///
    /// Fails with [`Error::InvalidArgument`] if a name is empty or appears twice.
    pub fn new(mut nodes: Vec<Node>) -> Result<Tree> {
        // Unstable sort is fine: equal names are refused just below.
        nodes.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        check_names(&nodes).map_err(|reason| Error::invalid("tree nodes", reason))?;
        Ok(Tree { nodes })
    }

    /// The nodes, sorted by name bytes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The nodes, sorted by name bytes.
    pub fn into_nodes(self) -> Vec<Node> {
        self.nodes
    }

    /// The node with exactly this name.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        let i = self
            .nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()?;
        self.nodes.get(i)
    }

    /// Every subtree link, in node order (for reachability and restore).
    pub fn subtrees(&self) -> impl Iterator<Item = BlobId> + '_ {
        self.nodes.iter().filter_map(|n| n.subtree)
    }

    /// Every content reference, in node order then chunk order.
    pub fn data_refs(&self) -> impl Iterator<Item = &ContentRef> + '_ {
        self.nodes.iter().flat_map(|n| n.content.iter())
    }

    /// The canonical encoding (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.fields(|f| {
            f.field(0, |w| w.uint(TREE_VERSION.into()));
            if !self.nodes.is_empty() {
                f.field(1, |w| {
                    w.array_head(self.nodes.len());
                    for node in &self.nodes {
                        encode_node(w, node);
                    }
                });
            }
        });
        w.into_bytes()
    }

    /// Decodes a tree; `object` names it in errors.
    ///
    /// Fails with [`Error::UnsupportedFormat`] for an unknown version and
    /// [`Error::Corrupt`] for anything else that is not a canonical tree.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Tree> {
        let mut r = Reader::new(bytes, object);
        let mut fields = r.fields()?;
        r.version(&mut fields, TREE_VERSION)?;
        let mut nodes = Vec::new();
        while let Some(key) = fields.next_key(&mut r)? {
            match key {
                1 => nodes = decode_nodes(&mut r)?,
                _ => r.skip()?,
            }
        }
        r.finish()?;
        Ok(Tree { nodes })
    }
}

/// Checks that sorted nodes have non-empty, strictly ascending names. The reason names the
/// position, never the name: names are backup plaintext and errors get logged.
fn check_names(nodes: &[Node]) -> std::result::Result<(), String> {
    if nodes.first().is_some_and(|n| n.name.is_empty()) {
        return Err("node 0 has an empty name".into());
    }
    for (i, pair) in nodes.windows(2).enumerate() {
        if pair[0].name >= pair[1].name {
            return Err(format!(
                "node {} has a name equal to or sorting before node {i}'s",
                i + 1
            ));
        }
    }
    Ok(())
}

fn encode_node(w: &mut Writer, node: &Node) {
    w.fields(|f| {
        f.field(0, |w| w.bytes(&node.name));
        if let Some(id) = &node.subtree {
            f.field(1, |w| w.bytes(id.as_bytes()));
        }
        if !node.content.is_empty() {
            f.field(2, |w| {
                w.array_head(node.content.len());
                for c in &node.content {
                    w.array_head(2);
                    w.bytes(c.id.as_bytes());
                    w.uint(c.len.into());
                }
            });
        }
        if !node.meta.is_empty() {
            f.field(3, |w| w.bytes(&node.meta));
        }
    });
}

fn decode_nodes(r: &mut Reader<'_>) -> Result<Vec<Node>> {
    let n = r.array_len(MIN_NODE_LEN, "tree nodes")?;
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    for _ in 0..n {
        let node = decode_node(r)?;
        // Checked as we go so a hostile tree fails early; `check_names` states the rule.
        if let Some(prev) = nodes.last()
            && prev.name >= node.name
        {
            return Err(r.corrupt(format!(
                "node {} has a name equal to or sorting before node {}'s",
                nodes.len(),
                nodes.len() - 1
            )));
        }
        nodes.push(node);
    }
    Ok(nodes)
}

fn decode_node(r: &mut Reader<'_>) -> Result<Node> {
    let mut fields = r.fields()?;
    let mut name = None;
    let mut node = Node {
        name: Vec::new(),
        subtree: None,
        content: Vec::new(),
        meta: Vec::new(),
    };
    while let Some(key) = fields.next_key(r)? {
        match key {
            0 => name = Some(r.bytes("node name")?.to_vec()),
            1 => node.subtree = Some(BlobId::from_bytes(r.id("subtree id")?)),
            2 => node.content = decode_content(r)?,
            3 => node.meta = r.bytes("node meta")?.to_vec(),
            _ => r.skip()?,
        }
    }
    node.name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| r.corrupt("node without a name or with an empty one"))?;
    Ok(node)
}

fn decode_content(r: &mut Reader<'_>) -> Result<Vec<ContentRef>> {
    let n = r.array_len(MIN_CONTENT_REF_LEN, "node content")?;
    let mut content = Vec::with_capacity(n);
    for _ in 0..n {
        if r.array_len(1, "content reference")? != 2 {
            return Err(r.corrupt("content reference is not [id, len]"));
        }
        let id = BlobId::from_bytes(r.id("content id")?);
        let len = r.u32("content length")?;
        content.push(ContentRef { id, len });
    }
    Ok(content)
}

/// The CBOR subset every core object uses: definite lengths, shortest integer heads, maps
/// with small integer keys in strictly ascending order.
///
/// The writer is hand-rolled rather than `minicbor::Encoder` because writing into a `Vec`
/// cannot fail, and an infallible writer lets `encode` return bytes without an error path
/// that can never be taken; it is checked against minicbor byte for byte in the tests.
/// Reading goes through `minicbor::Decoder`, which bounds-checks every read.
pub(crate) mod cbor {
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
    pub(crate) struct Writer {
        buf: Vec<u8>,
    }

    impl Writer {
        pub fn new() -> Self {
            Self::default()
        }

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

        pub fn uint(&mut self, n: u64) {
            self.head(MAJOR_UNSIGNED, n);
        }

        pub fn int(&mut self, n: i64) {
            match u64::try_from(n) {
                Ok(u) => self.head(MAJOR_UNSIGNED, u),
                // CBOR stores a negative n as -1 - n, which is !n in two's complement and
                // never overflows, unlike -1 - n itself for i64::MIN.
                Err(_) => self.head(MAJOR_NEGATIVE, !n as u64),
            }
        }

        pub fn bytes(&mut self, b: &[u8]) {
            self.head(MAJOR_BYTES, b.len() as u64);
            self.buf.extend_from_slice(b);
        }

        pub fn text(&mut self, s: &str) {
            self.head(MAJOR_TEXT, s.len() as u64);
            self.buf.extend_from_slice(s.as_bytes());
        }

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
    pub(crate) struct FieldWriter {
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
    pub(crate) struct Reader<'a> {
        d: Decoder<'a>,
        object: &'a str,
    }

    impl<'a> Reader<'a> {
        pub fn new(bytes: &'a [u8], object: &'a str) -> Self {
            Self {
                d: Decoder::new(bytes),
                object,
            }
        }

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
            let n = self
                .d
                .map()
                .map_err(|e| self.cbor("map", e))?
                .ok_or_else(|| self.corrupt("indefinite-length map"))?;
            // Each entry takes at least two bytes; a longer claim is a lie.
            if n > (self.remaining() / 2) as u64 {
                return Err(self.corrupt("map longer than the object"));
            }
            Ok(Fields {
                left: n,
                last: None,
            })
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

        pub fn u64(&mut self, what: &str) -> Result<u64> {
            self.d.u64().map_err(|e| self.cbor(what, e))
        }

        pub fn u32(&mut self, what: &str) -> Result<u32> {
            self.d.u32().map_err(|e| self.cbor(what, e))
        }

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
    pub(crate) struct Fields {
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
}

#[cfg(test)]
mod tests {
    use minicbor::Encoder;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    use super::*;

    fn node(name: &[u8]) -> Node {
        Node {
            name: name.to_vec(),
            subtree: None,
            content: Vec::new(),
            meta: Vec::new(),
        }
    }

    fn id(b: u8) -> BlobId {
        BlobId::from_bytes([b; 32])
    }

    /// A small tree exercising every field, including a non-UTF-8 name.
    fn sample() -> Tree {
        Tree::new(vec![
            Node {
                name: b"b\xff".to_vec(),
                subtree: None,
                content: vec![
                    ContentRef { id: id(0x22), len: 300 },
                    ContentRef { id: id(0x33), len: 7 },
                ],
                meta: b"m".to_vec(),
            },
            Node {
                subtree: Some(id(0x11)),
                ..node(b"a")
            },
        ])
        .unwrap()
    }

    fn is_corrupt(r: Result<Tree>) -> bool {
        matches!(r, Err(Error::Corrupt { .. }))
    }

    /// `{0: 1, 1: [nodes...]}` with nodes given as raw CBOR.
    fn tree_with_raw_nodes(nodes: &[Vec<u8>]) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        e.map(2).unwrap().u8(0).unwrap().u8(1).unwrap().u8(1).unwrap();
        e.array(nodes.len() as u64).unwrap();
        let mut out = e.into_writer();
        for n in nodes {
            out.extend_from_slice(n);
        }
        out
    }

    fn raw_named(name: &[u8]) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        e.map(1).unwrap().u8(0).unwrap().bytes(name).unwrap();
        e.into_writer()
    }

    // Pinned once from `sample()`: a change here is a format change (STYLE rule 11).
    const SAMPLE_HEX: &str = concat!(
        "a2", "00", "01", "01", "82", // {0: 1, 1: [2 nodes
        "a2", "00", "41", "61", // {0: h'61' ("a"),
        "01", "5820", "1111111111111111111111111111111111111111111111111111111111111111",
        "a3", "00", "42", "62ff", // {0: h'62ff',
        "02", "82", // 2: [
        "82", "5820", "2222222222222222222222222222222222222222222222222222222222222222",
        "19012c", // 300],
        "82", "5820", "3333333333333333333333333333333333333333333333333333333333333333",
        "07", // 7]],
        "03", "41", "6d", // 3: h'6d' ("m")}]}
    );

    #[test]
    fn golden_sample_tree_encoding() {
        let bytes = sample().encode();
        assert_eq!(hex::encode(&bytes), SAMPLE_HEX);
        let decoded = Tree::decode(&hex::decode(SAMPLE_HEX).unwrap(), "tree").unwrap();
        assert_eq!(decoded, sample());
    }

    #[test]
    fn golden_empty_tree_encoding() {
        assert_eq!(hex::encode(Tree::default().encode()), "a10001");
        assert_eq!(Tree::decode(&[0xa1, 0x00, 0x01], "t").unwrap(), Tree::default());
    }

    #[test]
    fn new_sorts_by_name_bytes() {
        let t = Tree::new(vec![node(b"b"), node(b"\xff"), node(b"a"), node(b"ab")]).unwrap();
        let names: Vec<&[u8]> = t.nodes().iter().map(|n| n.name.as_slice()).collect();
        assert_eq!(names, [&b"a"[..], b"ab", b"b", b"\xff"]);
        assert_eq!(t.clone().into_nodes(), t.nodes());
    }

    #[test]
    fn new_refuses_duplicate_or_empty_names() {
        for nodes in [
            vec![node(b"x"), node(b"y"), node(b"x")],
            vec![node(b"x"), node(b"")],
        ] {
            let err = Tree::new(nodes).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { what: "tree nodes", .. }), "{err}");
        }
    }

    #[test]
    fn get_finds_exact_names_only() {
        let t = sample();
        assert_eq!(t.get(b"a").unwrap().subtree, Some(id(0x11)));
        assert_eq!(t.get(b"b\xff").unwrap().meta, b"m");
        assert!(t.get(b"b").is_none());
        assert!(t.get(b"").is_none());
    }

    #[test]
    fn subtrees_and_data_refs_list_every_reference() {
        let t = sample();
        assert_eq!(t.subtrees().collect::<Vec<_>>(), [id(0x11)]);
        let refs: Vec<_> = t.data_refs().map(|c| (c.id, c.len)).collect();
        assert_eq!(refs, [(id(0x22), 300), (id(0x33), 7)]);
    }

    #[test]
    fn decode_skips_unknown_keys() {
        // {0: 1, 1: [{0: h'61', 1: id, 9: [nested, "x"]}], 7: {"k": -1}}
        let mut e = Encoder::new(Vec::new());
        e.map(3).unwrap().u8(0).unwrap().u8(1).unwrap();
        e.u8(1).unwrap().array(1).unwrap();
        e.map(3).unwrap().u8(0).unwrap().bytes(b"a").unwrap();
        e.u8(1).unwrap().bytes(&[0x11; 32]).unwrap();
        e.u8(9).unwrap().array(2).unwrap().array(1).unwrap().u8(5).unwrap();
        e.str("x").unwrap();
        e.u8(7).unwrap().map(1).unwrap().str("k").unwrap().i8(-1).unwrap();
        let t = Tree::decode(&e.into_writer(), "t").unwrap();
        assert_eq!(
            t.into_nodes(),
            [Node {
                subtree: Some(id(0x11)),
                ..node(b"a")
            }]
        );
    }

    #[test]
    fn unknown_version_is_unsupported_format() {
        let r = Tree::decode(&hex::decode("a20002019fff").unwrap(), "trees/x");
        match r {
            Err(Error::UnsupportedFormat {
                object,
                found,
                supported,
            }) => {
                assert_eq!((object.as_str(), found, supported), ("trees/x", 2, 1));
            }
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
        // A version beyond u32 still reports as unsupported, not as a decoding failure.
        let r = Tree::decode(&hex::decode("a1001b0000000100000000").unwrap(), "t");
        assert!(matches!(
            r,
            Err(Error::UnsupportedFormat {
                found: u32::MAX,
                ..
            })
        ));
    }

    #[test]
    fn missing_or_misplaced_version_is_corrupt() {
        for hex_bytes in ["a0", "a10180", "a2018000 01", "a1004101"] {
            let bytes = hex::decode(hex_bytes.replace(' ', "")).unwrap();
            assert!(is_corrupt(Tree::decode(&bytes, "t")), "{hex_bytes}");
        }
    }

    #[test]
    fn unsorted_duplicate_or_empty_names_are_corrupt() {
        for names in [
            &[&b"b"[..], b"a"][..],
            &[b"a", b"a"],
            &[b"a", b"c", b"b"],
            &[b""],
        ] {
            let raw: Vec<_> = names.iter().map(|n| raw_named(n)).collect();
            assert!(is_corrupt(Tree::decode(&tree_with_raw_nodes(&raw), "t")));
        }
        // A node with no name at all.
        assert!(is_corrupt(Tree::decode(&tree_with_raw_nodes(&[vec![0xa0]]), "t")));
        // The well-formed control case decodes.
        let ok = tree_with_raw_nodes(&[raw_named(b"a"), raw_named(b"b")]);
        assert_eq!(Tree::decode(&ok, "t").unwrap().nodes().len(), 2);
    }

    #[test]
    fn ids_of_wrong_length_are_corrupt() {
        for len in [0, 31, 33] {
            let mut e = Encoder::new(Vec::new());
            e.map(2).unwrap().u8(0).unwrap().bytes(b"a").unwrap();
            e.u8(1).unwrap().bytes(&vec![1; len]).unwrap();
            let subtree = e.into_writer();
            assert!(is_corrupt(Tree::decode(&tree_with_raw_nodes(&[subtree]), "t")));

            let mut e = Encoder::new(Vec::new());
            e.map(2).unwrap().u8(0).unwrap().bytes(b"a").unwrap();
            e.u8(2).unwrap().array(1).unwrap().array(2).unwrap();
            e.bytes(&vec![1; len]).unwrap().u8(1).unwrap();
            let content = e.into_writer();
            assert!(is_corrupt(Tree::decode(&tree_with_raw_nodes(&[content]), "t")));
        }
    }

    #[test]
    fn malformed_content_refs_are_corrupt() {
        let cases: [&dyn Fn(&mut Encoder<Vec<u8>>); 3] = [
            // [id] without a length.
            &|e| {
                e.array(1).unwrap().bytes(&[1; 32]).unwrap();
            },
            // [id, len, extra].
            &|e| {
                e.array(3).unwrap().bytes(&[1; 32]).unwrap().u8(1).unwrap().u8(2).unwrap();
            },
            // A length beyond u32.
            &|e| {
                e.array(2).unwrap().bytes(&[1; 32]).unwrap().u64(1 << 32).unwrap();
            },
        ];
        for write_ref in cases {
            let mut e = Encoder::new(Vec::new());
            e.map(2).unwrap().u8(0).unwrap().bytes(b"a").unwrap();
            e.u8(2).unwrap().array(1).unwrap();
            write_ref(&mut e);
            let raw = e.into_writer();
            assert!(is_corrupt(Tree::decode(&tree_with_raw_nodes(&[raw]), "t")));
        }
    }

    #[test]
    fn repeated_or_descending_map_keys_are_corrupt() {
        // Top level {0: 1, 1: [], 1: []} and {1: [], 0: 1}; node {0: h'61', 0: h'62'}.
        for hex_bytes in ["a3000101800180", "a201800001"] {
            assert!(is_corrupt(Tree::decode(&hex::decode(hex_bytes).unwrap(), "t")));
        }
        let mut e = Encoder::new(Vec::new());
        e.map(2).unwrap().u8(0).unwrap().bytes(b"a").unwrap();
        e.u8(0).unwrap().bytes(b"b").unwrap();
        assert!(is_corrupt(Tree::decode(&tree_with_raw_nodes(&[e.into_writer()]), "t")));
    }

    #[test]
    fn indefinite_lengths_and_trailing_bytes_are_corrupt() {
        for hex_bytes in [
            "bf0001ff",       // indefinite top-level map
            "a20001019fff",   // indefinite nodes array
            "a1000100",       // trailing byte
            "a10001a10001",   // a second map after the first
        ] {
            assert!(is_corrupt(Tree::decode(&hex::decode(hex_bytes).unwrap(), "t")), "{hex_bytes}");
        }
    }

    #[test]
    fn truncated_encodings_are_corrupt_at_every_length() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(is_corrupt(Tree::decode(&bytes[..len], "t")), "prefix of {len} bytes");
        }
    }

    #[test]
    fn huge_declared_lengths_fail_without_allocating() {
        for hex_bytes in [
            "a200010181",                              // 1 node claimed, none present
            "a200010199ffff",                          // 65535 nodes claimed
            "a20001019bffffffffffffffff",              // 2^64 - 1 nodes claimed
            "bbffffffffffffffff",                      // 2^64 - 1 map entries claimed
            "a2000101 81a2004161029b7fffffffffffffff", // 2^63 - 1 content refs claimed
            "a2000101 81a1005b7fffffffffffffff",       // 2^63 - 1 name bytes claimed
        ] {
            let bytes = hex::decode(hex_bytes.replace(' ', "")).unwrap();
            assert!(is_corrupt(Tree::decode(&bytes, "t")), "{hex_bytes}");
        }
    }

    #[test]
    fn deeply_nested_unknown_field_does_not_overflow_the_stack() {
        // {0: 1, 5: [[[[...0...]]]]} nested 200 000 deep, then a trailing byte.
        let depth = 200_000;
        let mut bytes = hex::decode("a2000105").unwrap();
        bytes.extend(std::iter::repeat_n(0x81, depth));
        bytes.push(0x00);
        assert_eq!(Tree::decode(&bytes, "t").unwrap(), Tree::default());
        bytes.push(0x00);
        assert!(is_corrupt(Tree::decode(&bytes, "t")));
    }

    #[test]
    fn error_reasons_do_not_quote_names() {
        let secret = b"very-secret-chat-name";
        let raw = tree_with_raw_nodes(&[raw_named(secret), raw_named(secret)]);
        let msg = Tree::decode(&raw, "t").unwrap_err().to_string();
        assert!(!msg.contains("very-secret"), "{msg}");
        let msg = Tree::new(vec![node(secret), node(secret)]).unwrap_err().to_string();
        assert!(!msg.contains("very-secret"), "{msg}");
    }

    fn arb_id() -> impl Strategy<Value = BlobId> {
        any::<[u8; 32]>().prop_map(BlobId::from_bytes)
    }

    fn arb_nodes() -> impl Strategy<Value = Vec<Node>> {
        let content = vec(
            (arb_id(), any::<u32>()).prop_map(|(id, len)| ContentRef { id, len }),
            0..4,
        );
        let body = (proptest::option::of(arb_id()), content, vec(any::<u8>(), 0..24));
        // Arbitrary bytes, so names include non-UTF-8 ones; the map keeps them unique.
        btree_map(vec(any::<u8>(), 1..12), body, 0..10).prop_map(|m| {
            m.into_iter()
                .map(|(name, (subtree, content, meta))| Node {
                    name,
                    subtree,
                    content,
                    meta,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn round_trip_is_identity_and_canonical(nodes in arb_nodes()) {
            let tree = Tree::new(nodes.clone()).unwrap();
            let bytes = tree.encode();
            let decoded = Tree::decode(&bytes, "t").unwrap();
            prop_assert_eq!(decoded.nodes(), nodes.as_slice());
            prop_assert_eq!(decoded.encode(), bytes);
        }

        #[test]
        fn node_order_does_not_change_the_bytes(
            (sorted, shuffled) in arb_nodes().prop_flat_map(|n| (Just(n.clone()), Just(n).prop_shuffle()))
        ) {
            prop_assert_eq!(
                Tree::new(shuffled).unwrap().encode(),
                Tree::new(sorted).unwrap().encode()
            );
        }

        #[test]
        fn decode_never_panics_on_random_bytes(bytes in vec(any::<u8>(), 0..256)) {
            let _ = Tree::decode(&bytes, "t");
            // Behind a valid header, so the bytes reach the node decoder.
            let mut framed = hex::decode("a2000101").unwrap();
            framed.extend_from_slice(&bytes);
            let _ = Tree::decode(&framed, "t");
        }

        #[test]
        fn decode_never_panics_on_mutated_encodings(
            nodes in arb_nodes(),
            edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = Tree::new(nodes).unwrap().encode();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            if let Ok(t) = Tree::decode(&bytes, "t") {
                // Whatever decodes is a valid tree, and its encoding decodes to itself.
                prop_assert_eq!(Tree::decode(&t.encode(), "t").unwrap(), t);
            }
        }

        #[test]
        fn writer_matches_minicbor(u in any::<u64>(), i in any::<i64>(), b in vec(any::<u8>(), 0..300), s in ".{0,40}") {
            let mut w = Writer::new();
            w.uint(u);
            w.int(i);
            w.bytes(&b);
            w.text(&s);
            w.array_head(b.len());
            w.map_head(s.len());
            let mut e = Encoder::new(Vec::new());
            e.u64(u).unwrap().i64(i).unwrap().bytes(&b).unwrap().str(&s).unwrap();
            e.array(b.len() as u64).unwrap().map(s.len() as u64).unwrap();
            prop_assert_eq!(w.into_bytes(), e.into_writer());
        }
    }
}
