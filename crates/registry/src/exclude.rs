//! Ids the allocator must never hand out, each with where it came from, so that
//! [`who`](crate::Allocator::who) can say why an id is taken.

use credns_idmap::formats::SubidEntry;
use credns_idmap::{IdKind, IdRange, IdRangeSet};
use serde::{Deserialize, Serialize};

use crate::etc::{GroupEntry, PasswdEntry};

/// Ids reserved by the kernel or by convention: never allocated, whatever the pool says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reserved {
    /// 0: host root. Never the base of a range (systemd's registry treats it as taken too).
    Root,
    /// 65534: `nobody`, the kernel's overflow uid/gid.
    Overflow,
    /// 65535: the 16-bit `(uid_t)-1`.
    Invalid16,
    /// 2147352576..=2147418111 (`0x7FFE0000`): systemd's foreign range, on-disk ownership of
    /// foreign OS images, mapped at run time by idmapped mounts.
    Foreign,
    /// 4294967295: the 32-bit `(uid_t)-1`, never valid.
    Invalid32,
}

impl Reserved {
    /// Every reserved range, ascending.
    pub const ALL: [(Reserved, IdRange); 5] = [
        (Reserved::Root, IdRange { start: 0, end: 0 }),
        (
            Reserved::Overflow,
            IdRange {
                start: 65_534,
                end: 65_534,
            },
        ),
        (
            Reserved::Invalid16,
            IdRange {
                start: 65_535,
                end: 65_535,
            },
        ),
        (
            Reserved::Foreign,
            IdRange {
                start: 2_147_352_576,
                end: 2_147_418_111,
            },
        ),
        (
            Reserved::Invalid32,
            IdRange {
                start: u32::MAX,
                end: u32::MAX,
            },
        ),
    ];

    /// The reserved ids as a set.
    pub fn set() -> IdRangeSet {
        IdRangeSet::from_ranges(Self::ALL.iter().map(|(_, r)| *r))
    }
}

impl std::fmt::Display for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reserved::Root => "host root (0)",
            Reserved::Overflow => "overflow id nobody (65534)",
            Reserved::Invalid16 => "16-bit (uid_t)-1 (65535)",
            Reserved::Foreign => "systemd foreign range (2147352576-2147418111)",
            Reserved::Invalid32 => "32-bit (uid_t)-1 (4294967295)",
        })
    }
}

/// Where an excluded id comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Reserved by the kernel or by convention.
    Reserved(Reserved),
    /// A passwd entry: its uid (`kind` uid) or its primary gid (`kind` gid).
    User {
        /// User name.
        name: String,
        /// Which of the entry's ids.
        kind: IdKind,
    },
    /// A group entry's gid.
    Group {
        /// Group name.
        name: String,
    },
    /// A subordinate-id delegation (`/etc/subuid` is `kind` uid, `/etc/subgid` is `kind` gid).
    SubId {
        /// The line's owner (name or number, as written).
        owner: String,
        /// Which file.
        kind: IdKind,
    },
    /// Mapped by a live user namespace on the host (see
    /// [`observe_live`](crate::Allocator::observe_live)).
    LiveUserNs,
    /// Anything else the caller names (another tool's database, NSS enumeration, ...).
    Other(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Reserved(r) => write!(f, "reserved: {r}"),
            Source::User {
                name,
                kind: IdKind::Gid,
            } => write!(f, "primary gid of user {name}"),
            Source::User { name, .. } => write!(f, "user {name}"),
            Source::Group { name } => write!(f, "group {name}"),
            Source::SubId { owner, kind } => write!(f, "sub{kind} delegation of {owner}"),
            Source::LiveUserNs => f.write_str("a live user namespace"),
            Source::Other(s) => f.write_str(s),
        }
    }
}

/// One excluded range and its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    /// The ids.
    pub range: IdRange,
    /// Why.
    pub source: Source,
}

/// Host-side exclusions gathered by the caller: passwd and group entries, subuid/subgid lines,
/// other tools' ranges. Reserved ids and live namespaces are added by the allocator itself.
/// Uid and gid exclusions are pooled: an allocation gets equal uid and gid ranges, so an id
/// taken on either side is taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exclusions {
    entries: Vec<Excluded>,
}

impl Exclusions {
    /// No exclusions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exclude one range.
    pub fn add(&mut self, range: IdRange, source: Source) -> &mut Self {
        self.entries.push(Excluded { range, source });
        self
    }

    /// Exclude every range of a set under one source (e.g. subuid lines of one owner, until a
    /// subid parser provides entries).
    pub fn add_set(&mut self, set: &IdRangeSet, source: Source) -> &mut Self {
        for r in set.ranges() {
            self.add(*r, source.clone());
        }
        self
    }

    /// Exclude each user's uid and primary gid.
    pub fn add_passwd(&mut self, users: &[PasswdEntry]) -> &mut Self {
        for u in users {
            self.add(
                IdRange {
                    start: u.uid,
                    end: u.uid,
                },
                Source::User {
                    name: u.name.clone(),
                    kind: IdKind::Uid,
                },
            );
            self.add(
                IdRange {
                    start: u.gid,
                    end: u.gid,
                },
                Source::User {
                    name: u.name.clone(),
                    kind: IdKind::Gid,
                },
            );
        }
        self
    }

    /// Exclude each group's gid.
    pub fn add_group(&mut self, groups: &[GroupEntry]) -> &mut Self {
        for g in groups {
            self.add(
                IdRange {
                    start: g.gid,
                    end: g.gid,
                },
                Source::Group {
                    name: g.name.clone(),
                },
            );
        }
        self
    }

    /// Exclude the ranges of `/etc/subuid` (`kind` uid) or `/etc/subgid` (`kind` gid) lines, as
    /// parsed by [`SubidFile`](credns_idmap::formats::SubidFile), each under its owner.
    pub fn add_subid(&mut self, entries: &[SubidEntry], kind: IdKind) -> &mut Self {
        for e in entries {
            self.add(
                e.range(),
                Source::SubId {
                    owner: e.owner.to_string(),
                    kind,
                },
            );
        }
        self
    }

    /// The entries, in the order added.
    pub fn entries(&self) -> &[Excluded] {
        &self.entries
    }

    /// Every excluded id.
    pub fn set(&self) -> IdRangeSet {
        IdRangeSet::from_ranges(self.entries.iter().map(|e| e.range))
    }
}

/// Entries sorted by start with a running maximum of ends, so that the entries holding an id
/// are found by a binary search and a backward walk that stops as soon as no earlier entry can
/// reach the id.
#[derive(Clone, Debug, Default)]
pub(crate) struct ExclusionIndex {
    entries: Vec<Excluded>,
    max_end: Vec<u32>,
}

impl ExclusionIndex {
    pub(crate) fn new(mut entries: Vec<Excluded>) -> Self {
        entries.sort_by_key(|e| (e.range.start, e.range.end));
        let mut max_end = Vec::with_capacity(entries.len());
        let mut m = 0;
        for e in &entries {
            m = m.max(e.range.end);
            max_end.push(m);
        }
        Self { entries, max_end }
    }

    /// The entries that share an id with `r`.
    pub(crate) fn overlapping(&self, r: IdRange) -> Vec<&Excluded> {
        let mut i = self.entries.partition_point(|e| e.range.start <= r.end);
        let mut out = Vec::new();
        while i > 0 && self.max_end[i - 1] >= r.start {
            i -= 1;
            if self.entries[i].range.end >= r.start {
                out.push(&self.entries[i]);
            }
        }
        out.reverse();
        out
    }

    pub(crate) fn holding(&self, id: u32) -> Vec<&Excluded> {
        let mut i = self.entries.partition_point(|e| e.range.start <= id);
        let mut out = Vec::new();
        while i > 0 && self.max_end[i - 1] >= id {
            i -= 1;
            if self.entries[i].range.end >= id {
                out.push(&self.entries[i]);
            }
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_set_holds_the_documented_ids() {
        let s = Reserved::set();
        for id in [0, 65_534, 65_535, 2_147_352_576, 2_147_418_111, u32::MAX] {
            assert!(s.contains(id), "{id}");
        }
        for id in [
            1,
            65_533,
            65_536,
            2_147_352_575,
            2_147_418_112,
            u32::MAX - 1,
        ] {
            assert!(!s.contains(id), "{id}");
        }
    }

    #[test]
    fn subid_entries_are_excluded_under_their_owner() {
        let f = credns_idmap::formats::SubidFile::parse(
            "root:100000:65536\n1000:200000:10\n",
            "/etc/subuid",
        )
        .unwrap();
        let mut ex = Exclusions::new();
        ex.add_subid(&f.entries, IdKind::Uid);
        assert_eq!(
            ex.set().ranges(),
            &[
                IdRange {
                    start: 100_000,
                    end: 165_535
                },
                IdRange {
                    start: 200_000,
                    end: 200_009
                }
            ]
        );
        assert_eq!(
            ex.entries()[1].source,
            Source::SubId {
                owner: "1000".into(),
                kind: IdKind::Uid
            }
        );
        assert_eq!(
            ex.entries()[1].source.to_string(),
            "subuid delegation of 1000"
        );
    }

    #[test]
    fn index_finds_every_holder() {
        let r = |a, b| IdRange { start: a, end: b };
        let ix = ExclusionIndex::new(vec![
            Excluded {
                range: r(0, 1_000_000),
                source: Source::Other("wide".into()),
            },
            Excluded {
                range: r(10, 10),
                source: Source::Group { name: "g".into() },
            },
            Excluded {
                range: r(20, 30),
                source: Source::LiveUserNs,
            },
            Excluded {
                range: r(25, 25),
                source: Source::Other("x".into()),
            },
        ]);
        let names = |id| {
            ix.holding(id)
                .iter()
                .map(|e| e.source.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(10), ["wide", "group g"]);
        assert_eq!(names(25), ["wide", "a live user namespace", "x"]);
        assert_eq!(names(31), ["wide"]);
        assert!(names(2_000_000).is_empty());
    }
}
