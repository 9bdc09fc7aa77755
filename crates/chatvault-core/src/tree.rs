//! Trees: the generic, canonical container a snapshot's root points at.
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
//!   bytes, trailing bytes) and pre-allocates no more than the input can hold. It does not
//!   insist on shortest integer heads: a longer head means the same value, and bytes that
//!   are not canonical can cost deduplication but never give wrong data.
//! - Error reasons never quote names or meta: they are backup plaintext.

use crate::error::{Error, Result};
use crate::id::BlobId;

use crate::cbor::{Reader, Writer};

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
    /// [`Error::Corrupt`] for anything else that is not a valid tree.
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

/// Checks that names are non-empty and strictly ascending, which also rules out duplicates.
/// The reason gives positions, never names: names are backup plaintext and errors get
/// logged.
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
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(decode_node(r)?);
    }
    // Refused rather than sorted: a tree whose bytes are not its canonical encoding would
    // not match its own id, and a duplicate name makes restore ambiguous.
    check_names(&nodes).map_err(|reason| r.corrupt(reason))?;
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
    // An empty name is refused with the others' ordering, by `check_names`.
    node.name = name.ok_or_else(|| r.corrupt("node without a name"))?;
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
                    ContentRef {
                        id: id(0x22),
                        len: 300,
                    },
                    ContentRef {
                        id: id(0x33),
                        len: 7,
                    },
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

    /// The reason of a `Corrupt` error, so a test can check it failed for the right reason.
    fn corrupt_reason(r: Result<Tree>) -> String {
        match r {
            Err(Error::Corrupt { object, reason }) => {
                assert_eq!(object.as_str(), "t");
                reason
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// `{0: 1, 1: [nodes...]}` with nodes given as raw CBOR.
    fn tree_with_raw_nodes(nodes: &[Vec<u8>]) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        e.map(2)
            .unwrap()
            .u8(0)
            .unwrap()
            .u8(1)
            .unwrap()
            .u8(1)
            .unwrap();
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
        "a2",
        "00",
        "01",
        "01",
        "82", // {0: 1, 1: [2 nodes
        "a2",
        "00",
        "41",
        "61", // {0: h'61' ("a"),
        "01",
        "5820",
        "1111111111111111111111111111111111111111111111111111111111111111",
        "a3",
        "00",
        "42",
        "62ff", // {0: h'62ff',
        "02",
        "82", // 2: [
        "82",
        "5820",
        "2222222222222222222222222222222222222222222222222222222222222222",
        "19012c", // 300],
        "82",
        "5820",
        "3333333333333333333333333333333333333333333333333333333333333333",
        "07", // 7]],
        "03",
        "41",
        "6d", // 3: h'6d' ("m")}]}
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
        assert_eq!(
            Tree::decode(&[0xa1, 0x00, 0x01], "t").unwrap(),
            Tree::default()
        );
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
            assert!(
                matches!(
                    err,
                    Error::InvalidArgument {
                        what: "tree nodes",
                        ..
                    }
                ),
                "{err}"
            );
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
        e.u8(9)
            .unwrap()
            .array(2)
            .unwrap()
            .array(1)
            .unwrap()
            .u8(5)
            .unwrap();
        e.str("x").unwrap();
        e.u8(7)
            .unwrap()
            .map(1)
            .unwrap()
            .str("k")
            .unwrap()
            .i8(-1)
            .unwrap();
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
        // {}, {1: []}, {1: [], 0: 1}, {0: h'01'}.
        for hex_bytes in ["a0", "a10180", "a2018000 01", "a1004101"] {
            let bytes = hex::decode(hex_bytes.replace(' ', "")).unwrap();
            assert!(is_corrupt(Tree::decode(&bytes, "t")), "{hex_bytes}");
        }
    }

    #[test]
    fn unsorted_duplicate_or_empty_names_are_corrupt() {
        for names in [&[&b"b"[..], b"a"][..], &[b"a", b"a"], &[b"a", b"c", b"b"]] {
            let raw: Vec<_> = names.iter().map(|n| raw_named(n)).collect();
            let reason = corrupt_reason(Tree::decode(&tree_with_raw_nodes(&raw), "t"));
            assert!(reason.contains("sorting before"), "{reason}");
        }
        // {0: h'', 3: h'6d'} and {3: h'6d6d'}: an empty name, no name at all. Both are
        // padded with meta so the node array's length check does not refuse them first.
        for (raw, expected) in [
            ("a2004003416d", "empty name"),
            ("a103426d6d", "without a name"),
        ] {
            let raw = hex::decode(raw).unwrap();
            let reason = corrupt_reason(Tree::decode(&tree_with_raw_nodes(&[raw]), "t"));
            assert!(reason.contains(expected), "{reason}");
        }
        // The well-formed control case decodes.
        let ok = tree_with_raw_nodes(&[raw_named(b"a"), raw_named(b"b")]);
        assert_eq!(Tree::decode(&ok, "t").unwrap().nodes().len(), 2);
    }

    /// Writes a hand-built CBOR value.
    type WriteCbor<'a> = &'a dyn Fn(&mut Encoder<Vec<u8>>);

    /// A node `{0: h'61', 2: [one reference], 3: meta}` whose reference `write_ref` writes.
    /// The meta pads the node so that the content array's length check (which assumes
    /// well-formed references) passes and the reference itself is examined.
    fn node_with_content_ref(write_ref: WriteCbor<'_>) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        e.map(3).unwrap().u8(0).unwrap().bytes(b"a").unwrap();
        e.u8(2).unwrap().array(1).unwrap();
        write_ref(&mut e);
        e.u8(3).unwrap().bytes(&[0; 40]).unwrap();
        e.into_writer()
    }

    #[test]
    fn ids_of_wrong_length_are_corrupt() {
        for len in [0, 31, 33] {
            let mut e = Encoder::new(Vec::new());
            e.map(2).unwrap().u8(0).unwrap().bytes(b"a").unwrap();
            e.u8(1).unwrap().bytes(&vec![1; len]).unwrap();
            let subtree = e.into_writer();
            let reason = corrupt_reason(Tree::decode(&tree_with_raw_nodes(&[subtree]), "t"));
            assert!(
                reason.contains(&format!("subtree id is {len} bytes")),
                "{reason}"
            );

            let content = node_with_content_ref(&|e| {
                e.array(2)
                    .unwrap()
                    .bytes(&vec![1; len])
                    .unwrap()
                    .u8(1)
                    .unwrap();
            });
            let reason = corrupt_reason(Tree::decode(&tree_with_raw_nodes(&[content]), "t"));
            assert!(
                reason.contains(&format!("content id is {len} bytes")),
                "{reason}"
            );
        }
        // The control: the same shapes with 32-byte ids decode.
        let content = node_with_content_ref(&|e| {
            e.array(2).unwrap().bytes(&[1; 32]).unwrap().u8(1).unwrap();
        });
        let t = Tree::decode(&tree_with_raw_nodes(&[content]), "t").unwrap();
        assert_eq!(
            t.data_refs().next(),
            Some(&ContentRef { id: id(1), len: 1 })
        );
    }

    #[test]
    fn malformed_content_refs_are_corrupt() {
        let cases: [(WriteCbor<'_>, &str); 3] = [
            (
                &|e| {
                    e.array(1).unwrap().bytes(&[1; 32]).unwrap();
                },
                "not [id, len]",
            ),
            (
                &|e| {
                    e.array(3).unwrap().bytes(&[1; 32]).unwrap();
                    e.u8(1).unwrap().u8(2).unwrap();
                },
                "not [id, len]",
            ),
            (
                &|e| {
                    e.array(2)
                        .unwrap()
                        .bytes(&[1; 32])
                        .unwrap()
                        .u64(1 << 32)
                        .unwrap();
                },
                "content length",
            ),
        ];
        for (write_ref, expected) in cases {
            let raw = node_with_content_ref(write_ref);
            let reason = corrupt_reason(Tree::decode(&tree_with_raw_nodes(&[raw]), "t"));
            assert!(reason.contains(expected), "{reason}");
        }
    }

    #[test]
    fn repeated_or_descending_map_keys_are_corrupt() {
        // Top level {0: 1, 1: [], 1: []}.
        let reason = corrupt_reason(Tree::decode(&hex::decode("a3000101800180").unwrap(), "t"));
        assert!(reason.contains("repeated or out of order"), "{reason}");
        // Nodes {0: h'61', 0: h'62'} and {3: h'6d', 0: h'61'}.
        for raw in ["a20041610041 62", "a203416d004161"] {
            let raw = hex::decode(raw.replace(' ', "")).unwrap();
            let reason = corrupt_reason(Tree::decode(&tree_with_raw_nodes(&[raw]), "t"));
            assert!(reason.contains("repeated or out of order"), "{reason}");
        }
    }

    #[test]
    fn indefinite_lengths_and_trailing_bytes_are_corrupt() {
        for hex_bytes in [
            "bf0001ff",     // indefinite top-level map
            "a20001019fff", // indefinite nodes array
            "a1000100",     // trailing byte
            "a10001a10001", // a second map after the first
        ] {
            assert!(
                is_corrupt(Tree::decode(&hex::decode(hex_bytes).unwrap(), "t")),
                "{hex_bytes}"
            );
        }
    }

    #[test]
    fn truncated_encodings_are_corrupt_at_every_length() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                is_corrupt(Tree::decode(&bytes[..len], "t")),
                "prefix of {len} bytes"
            );
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
            let reason = corrupt_reason(Tree::decode(&bytes, "t"));
            assert!(
                reason.contains("longer than the object") || reason.contains("end of input"),
                "{hex_bytes}: {reason}"
            );
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
        let msg = Tree::new(vec![node(secret), node(secret)])
            .unwrap_err()
            .to_string();
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
        let body = (
            proptest::option::of(arb_id()),
            content,
            vec(any::<u8>(), 0..24),
        );
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
