//! Who is in a tenant: its users, its conversations and their members, and how popular
//! each conversation is.
//!
//! Invariants:
//! - A tenant's layout is a pure function of the options and the tenant number: it never
//!   changes as days pass, so every day's plan can rely on it.
//! - Conversation numbers are `0..direct_chats` for direct chats, then the groups, then
//!   the channels; every conversation has at least one member and every member is a user
//!   of the tenant.

use std::fmt;

use super::options::ServerOptions;
use crate::rng::{Rng, Zipf, derive_seed};

/// A tenant of the server, written `t{n}` in logs and paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(pub u32);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// The kind of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConversationKind {
    /// Two users; written `dm{n}`.
    Direct,
    /// A group of 3 or more users; written `g{n}`.
    Group,
    /// A tenant-wide channel; written `ch{n}`.
    Channel,
}

impl ConversationKind {
    /// The prefix of this kind's names.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Self::Direct => "dm",
            Self::Group => "g",
            Self::Channel => "ch",
        }
    }
}

/// A conversation within a tenant, written `dm{n}`, `g{n}` or `ch{n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConversationId {
    /// Direct chat, group or channel.
    pub kind: ConversationKind,
    /// Its number among the tenant's conversations of its kind, from 0.
    pub index: u32,
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind.prefix(), self.index)
    }
}

/// Maps conversation numbers to ids; the same for every tenant of a server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Naming {
    direct: u32,
    groups: u32,
}

impl Naming {
    pub(crate) fn new(opts: &ServerOptions) -> Self {
        Self {
            direct: opts.direct_chats,
            groups: opts.groups,
        }
    }

    pub(crate) fn id(self, conv: u32) -> ConversationId {
        let (kind, index) = if conv < self.direct {
            (ConversationKind::Direct, conv)
        } else if conv - self.direct < self.groups {
            (ConversationKind::Group, conv - self.direct)
        } else {
            (ConversationKind::Channel, conv - self.direct - self.groups)
        };
        ConversationId { kind, index }
    }
}

/// The members of a conversation.
#[derive(Debug, Clone, Copy)]
enum Members {
    /// A direct chat's two users.
    Pair(u32, u32),
    /// `len` consecutive users from `base` (wrapping), for groups.
    Run { base: u32, len: u32 },
    /// Every user; low-numbered users (the announcers) post most.
    Everyone,
}

/// A tenant's users and conversations.
#[derive(Debug, Clone)]
pub(crate) struct TenantLayout {
    users: u32,
    members: Vec<Members>,
    popularity: Zipf,
    /// Conversation number by popularity rank.
    by_rank: Vec<u32>,
}

impl TenantLayout {
    pub(crate) fn new(opts: &ServerOptions, tenant: u32) -> Self {
        let mut rng = Rng::new(derive_seed(opts.seed, "server layout", u64::from(tenant)));
        let users = opts.users_per_tenant.max(1);
        let mut members = Vec::new();
        for _ in 0..opts.direct_chats {
            let a = rng.below(u64::from(users)) as u32;
            let b = (a + 1 + rng.below(u64::from(users - 1).max(1)) as u32) % users;
            members.push(Members::Pair(a, b));
        }
        let max_size = opts.max_group_size.clamp(3, users.max(3));
        let sizes = Zipf::new(max_size - 2, opts.group_size_exponent);
        for _ in 0..opts.groups {
            let len = (3 + sizes.sample(rng.next_u64())).min(users);
            let base = rng.below(u64::from(users)) as u32;
            members.push(Members::Run { base, len });
        }
        members.extend((0..opts.channels).map(|_| Members::Everyone));
        let n = members.len() as u32;
        let mut by_rank: Vec<u32> = (0..n).collect();
        for i in (1..by_rank.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            by_rank.swap(i, j);
        }
        Self {
            users,
            members,
            popularity: Zipf::new(n, opts.popularity_exponent),
            by_rank,
        }
    }

    /// Number of conversations.
    pub(crate) fn conversations(&self) -> u32 {
        self.members.len() as u32
    }

    /// A conversation drawn by popularity, from the high 32 bits of `r`.
    pub(crate) fn popular(&self, r: u64) -> u32 {
        self.by_rank[self.popularity.sample(r) as usize]
    }

    /// A member of `conv`, from the low 32 bits of `r`.
    pub(crate) fn sender(&self, conv: u32, r: u64) -> u32 {
        let r = r & 0xffff_ffff;
        let pick = |n: u32| ((r * u64::from(n)) >> 32) as u32;
        match self.members[conv as usize] {
            Members::Pair(a, b) => {
                if r & 1 == 0 {
                    a
                } else {
                    b
                }
            }
            Members::Run { base, len } => (base + pick(len)) % self.users,
            Members::Everyone => {
                let (lo, hi) = (r & 0xffff, (r >> 16) & 0xffff);
                ((lo.min(hi) * u64::from(self.users)) >> 16) as u32
            }
        }
    }

    /// The members of `conv` (for tests).
    #[cfg(test)]
    pub(crate) fn member_list(&self, conv: u32) -> Vec<u32> {
        match self.members[conv as usize] {
            Members::Pair(a, b) => vec![a, b],
            Members::Run { base, len } => (0..len).map(|i| (base + i) % self.users).collect(),
            Members::Everyone => (0..self.users).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_the_three_kinds() {
        let opts = ServerOptions {
            direct_chats: 3,
            groups: 2,
            channels: 2,
            ..ServerOptions::default()
        };
        let names: Vec<String> = (0..7)
            .map(|c| Naming::new(&opts).id(c).to_string())
            .collect();
        assert_eq!(names, ["dm0", "dm1", "dm2", "g0", "g1", "ch0", "ch1"]);
        assert_eq!(TenantId(4).to_string(), "t4");
    }

    #[test]
    fn members_are_users_and_direct_chats_have_two() {
        let opts = ServerOptions::tiny();
        let layout = TenantLayout::new(&opts, 0);
        let mut rng = Rng::new(1);
        for conv in 0..layout.conversations() {
            let members = layout.member_list(conv);
            assert!(members.iter().all(|&m| m < opts.users_per_tenant));
            if conv < opts.direct_chats {
                assert_eq!(members.len(), 2);
                assert_ne!(members[0], members[1]);
            } else if conv < opts.direct_chats + opts.groups {
                assert!((3..=opts.max_group_size as usize).contains(&members.len()));
            }
            for _ in 0..50 {
                assert!(members.contains(&layout.sender(conv, rng.next_u64())));
            }
        }
    }

    #[test]
    fn group_sizes_are_skewed_small() {
        let opts = ServerOptions {
            groups: 2000,
            ..ServerOptions::default()
        };
        let layout = TenantLayout::new(&opts, 0);
        let sizes: Vec<usize> = (opts.direct_chats..layout.conversations() - opts.channels)
            .map(|c| layout.member_list(c).len())
            .collect();
        let small = sizes.iter().filter(|&&s| s <= 5).count();
        let large = sizes.iter().filter(|&&s| s >= 30).count();
        assert!(small > sizes.len() / 2, "{small}");
        assert!(large > 0 && large < sizes.len() / 10, "{large}");
    }

    #[test]
    fn single_user_tenant_still_works() {
        let opts = ServerOptions {
            users_per_tenant: 0,
            ..ServerOptions::tiny()
        };
        let layout = TenantLayout::new(&opts, 0);
        for conv in 0..layout.conversations() {
            assert_eq!(layout.sender(conv, u64::MAX), 0);
        }
    }
}
