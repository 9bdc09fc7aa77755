//! The writer journal: what a `backup` key remembers of its own snapshots, so its next run
//! can be incremental although it can never read the repository.
//!
//! A `backup`-role writer (a chat node) can seal snapshots and trees but not open them.
//! Without a parent every run would read and re-chunk every source, and a message-log
//! frontend would re-segment every conversation. So when the opened key cannot read, the
//! writer keeps in its local cache directory (in the index cache's RocksDB, column families
//! `own_trees` and `own_snapshots`) the plaintext of the trees it writes and the records of
//! its latest snapshots, and [`Repository::load_parent_snapshot`] and
//! [`Repository::read_parent_tree`] answer from there. The read API proper
//! ([`Repository::load_snapshot`], [`Repository::read_tree`], blobs) stays closed to it.
//!
//! Invariants:
//! - Only the writer's own objects, only what its latest snapshot of each group (source
//!   kind, host, paths) reaches: after each snapshot, older ones of the group and every
//!   tree none of the remaining snapshots reaches are dropped. So the journal holds names,
//!   sizes, times and chunk ids of the latest backups of data the machine holds anyway,
//!   never any content, and never another writer's metadata.
//! - A journaled tree is returned only if it still hashes to its id (keyed BLAKE3, which a
//!   writer's key can compute): local damage or tampering is refused as corrupt.
//! - A journaled snapshot is returned only while its object exists in the repository: a
//!   forgotten (or pruned) snapshot is never a parent.
//! - Keys that can read do not journal: they read the repository itself.

use std::collections::{HashMap, HashSet};

use super::{Recency, Repository};
use crate::blob::{self, BlobType};
use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::snapshot::{Snapshot, SnapshotRecord};
use crate::tree::Tree;

impl Repository {
    /// A snapshot to build an incremental backup on: [`load_snapshot`](Self::load_snapshot)
    /// for a key that can read; for a `backup` key, one of its own latest snapshots from
    /// its journal (`PermissionDenied` for anything else).
    pub fn load_parent_snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        if self.journals()
            && let Some(s) = self.own_snapshot(id)?
        {
            return Ok(s);
        }
        self.load_snapshot(id)
    }

    /// A tree of a parent snapshot: [`read_tree`](Self::read_tree) for a key that can read;
    /// for a `backup` key, a tree its own latest snapshots reach, from its journal.
    pub fn read_parent_tree(&self, id: BlobId) -> Result<Tree> {
        if self.journals()
            && let Some(tree) = self.own_tree(id)?
        {
            return Ok(tree);
        }
        self.read_tree(id)
    }

    /// Whether this writer keeps a journal (its key cannot read the repository).
    pub(crate) fn journals(&self) -> bool {
        !self.secrets.role.can_read()
    }

    /// Remembers a tree this writer wrote.
    pub(crate) fn journal_tree(&self, id: &BlobId, plaintext: &[u8]) -> Result<()> {
        if self.journals() {
            self.index.put_own_tree(id, plaintext)?;
        }
        Ok(())
    }

    /// A tree from the journal, verified against its id.
    pub(crate) fn own_tree(&self, id: BlobId) -> Result<Option<Tree>> {
        let Some(bytes) = self.index.own_tree(&id)? else {
            return Ok(None);
        };
        let name = format!("journal tree {id}");
        if blob::blob_id(&self.secrets.id_key, BlobType::Tree, &bytes) != id {
            return Err(Error::corrupt(&*name, "does not hash to its id"));
        }
        Tree::decode(&bytes, &name).map(Some)
    }

    /// One of this writer's snapshots from the journal, if it is there and its object
    /// still exists.
    pub(crate) fn own_snapshot(&self, id: SnapshotId) -> Result<Option<Snapshot>> {
        let Some(bytes) = self.index.own_snapshot(&id)? else {
            return Ok(None);
        };
        match self.backend.stat(&id.object_name()) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        }
        let record = SnapshotRecord::decode(&bytes, &format!("journal snapshot {id}"))?;
        Ok(Some(Snapshot {
            id,
            writer: self.secrets.signer.public(),
            record,
        }))
    }

    /// Records a snapshot just saved, then drops what no kept snapshot needs: the older
    /// snapshots of its group, and trees the remaining ones do not reach.
    pub(crate) fn journal_snapshot(&self, id: SnapshotId, record: &SnapshotRecord) -> Result<()> {
        if !self.journals() {
            return Ok(());
        }
        self.index.put_own_snapshot(&id, &record.encode())?;
        let group = |r: &SnapshotRecord| (r.source_kind.clone(), r.host.clone(), r.paths.clone());
        // The latest of each group by the one ranking (repo/latest.rs).
        let mut latest: HashMap<_, (Recency, SnapshotId, BlobId)> = HashMap::new();
        let mut all = Vec::new();
        for (sid, bytes) in self.index.own_snapshots()? {
            let Ok(r) = SnapshotRecord::decode(&bytes, "journal snapshot") else {
                self.index.delete_own_snapshot(&sid)?;
                continue;
            };
            all.push(sid);
            let rank = Recency::of_record(sid, &r);
            let e = latest.entry(group(&r)).or_insert((rank, sid, r.root));
            if rank > e.0 {
                *e = (rank, sid, r.root);
            }
        }
        // The snapshot just saved is its group's latest whatever the clocks say.
        latest.insert(
            group(record),
            (Recency::of_record(id, record), id, record.root),
        );
        let keep: HashSet<SnapshotId> = latest.values().map(|v| v.1).collect();
        for sid in all.iter().filter(|s| !keep.contains(s)) {
            self.index.delete_own_snapshot(sid)?;
        }
        // Every tree the kept snapshots reach, walked through the journal itself.
        let mut reached = HashSet::new();
        let mut stack: Vec<BlobId> = latest.values().map(|v| v.2).collect();
        while let Some(t) = stack.pop() {
            if !reached.insert(t) {
                continue;
            }
            if let Ok(Some(tree)) = self.own_tree(t) {
                stack.extend(tree.subtrees());
            }
        }
        self.index.retain_own_trees(&reached)?;
        Ok(())
    }
}
