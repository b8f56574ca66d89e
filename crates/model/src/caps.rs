//! Capabilities (`include/uapi/linux/capability.h`) and capability sets (`kernel_cap_t`).

use serde::{Serialize, Serializer};

/// The highest capability number (`CAP_LAST_CAP`, `CAP_CHECKPOINT_RESTORE` since 5.9).
pub const CAP_LAST_CAP: u8 = 40;

/// The names of the 41 capabilities, indexed by number, without the `CAP_` prefix.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// One capability, by number (0..=40).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cap(u8);

#[allow(missing_docs)]
impl Cap {
    pub const CHOWN: Cap = Cap(0);
    pub const DAC_OVERRIDE: Cap = Cap(1);
    pub const DAC_READ_SEARCH: Cap = Cap(2);
    pub const FOWNER: Cap = Cap(3);
    pub const FSETID: Cap = Cap(4);
    pub const KILL: Cap = Cap(5);
    pub const SETGID: Cap = Cap(6);
    pub const SETUID: Cap = Cap(7);
    pub const SETPCAP: Cap = Cap(8);
    pub const NET_RAW: Cap = Cap(13);
    pub const SYS_CHROOT: Cap = Cap(18);
    pub const SYS_PTRACE: Cap = Cap(19);
    pub const SYS_ADMIN: Cap = Cap(21);
    pub const SETFCAP: Cap = Cap(31);
    pub const CHECKPOINT_RESTORE: Cap = Cap(40);
    /// `CAP_PERFMON`.
    pub const PERFMON: Cap = Cap(38);
    pub const NET_BIND_SERVICE: Cap = Cap(10);
}

impl Cap {
    /// The capability with this number, if it is one (0..=40).
    pub fn from_number(n: u8) -> Option<Cap> {
        (n <= CAP_LAST_CAP).then_some(Cap(n))
    }

    /// Its number.
    pub fn number(self) -> u8 {
        self.0
    }

    /// Its name, e.g. `CAP_KILL`.
    pub fn name(self) -> String {
        format!("CAP_{}", NAMES[self.0 as usize])
    }

    /// Every capability, in order.
    pub fn all() -> impl Iterator<Item = Cap> {
        (0..=CAP_LAST_CAP).map(Cap)
    }

    /// Parse `CAP_KILL`, `cap_kill`, `kill` or a number.
    pub fn parse(s: &str) -> Option<Cap> {
        let t = s.trim();
        if let Ok(n) = t.parse::<u8>() {
            return Cap::from_number(n);
        }
        let up = t.to_ascii_uppercase();
        let bare = up.strip_prefix("CAP_").unwrap_or(&up);
        NAMES.iter().position(|n| *n == bare).map(|i| Cap(i as u8))
    }
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CAP_{}", NAMES[self.0 as usize])
    }
}

impl Serialize for Cap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// A capability set (`kernel_cap_t`): one bit per capability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CapSet(u64);

impl CapSet {
    /// `CAP_EMPTY_SET`.
    pub const EMPTY: CapSet = CapSet(0);
    /// `CAP_FULL_SET`: all 41 capabilities, `0x1ffffffffff`.
    pub const FULL: CapSet = CapSet((1u64 << (CAP_LAST_CAP + 1)) - 1);

    /// From the raw bits (bits above `CAP_LAST_CAP` are dropped, as `CAP_VALID_MASK` does).
    pub fn from_bits(bits: u64) -> CapSet {
        CapSet(bits & Self::FULL.0)
    }

    /// The raw bits, as `/proc/PID/status` shows them in hex.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// `cap_raised`.
    pub fn has(self, cap: Cap) -> bool {
        self.0 & (1u64 << cap.0) != 0
    }

    /// This set with `cap` raised.
    pub fn with(self, cap: Cap) -> CapSet {
        CapSet(self.0 | (1u64 << cap.0))
    }

    /// This set with `cap` lowered.
    pub fn without(self, cap: Cap) -> CapSet {
        CapSet(self.0 & !(1u64 << cap.0))
    }

    /// `cap_combine`.
    pub fn union(self, o: CapSet) -> CapSet {
        CapSet(self.0 | o.0)
    }

    /// `cap_intersect`.
    pub fn intersect(self, o: CapSet) -> CapSet {
        CapSet(self.0 & o.0)
    }

    /// `cap_issubset(self, o)`.
    pub fn is_subset(self, o: CapSet) -> bool {
        self.0 & !o.0 == 0
    }

    /// `cap_isclear`.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in the set.
    pub fn iter(self) -> impl Iterator<Item = Cap> {
        Cap::all().filter(move |c| self.has(*c))
    }

    /// Parse a set: `"all"`/`"full"`, `"none"`/`""`, a hex mask `"0x1ffffffffff"`, or a
    /// comma- or space-separated list of capability names (`"CAP_KILL, cap_chown, setuid"`).
    pub fn parse(s: &str) -> Result<CapSet, String> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "all" | "full" => return Ok(CapSet::FULL),
            "" | "none" | "empty" => return Ok(CapSet::EMPTY),
            _ => {}
        }
        if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            let bits = u64::from_str_radix(hex, 16)
                .map_err(|_| format!("bad hex capability mask \"{t}\""))?;
            if bits & !CapSet::FULL.0 != 0 {
                return Err(format!(
                    "capability mask \"{t}\" has bits above CAP_LAST_CAP (40)"
                ));
            }
            return Ok(CapSet(bits));
        }
        let mut set = CapSet::EMPTY;
        for part in t
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
        {
            let cap = Cap::parse(part).ok_or_else(|| format!("unknown capability \"{part}\""))?;
            set = set.with(cap);
        }
        Ok(set)
    }
}

impl std::fmt::Display for CapSet {
    /// `full`, `none`, or the list of names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == CapSet::FULL {
            return f.write_str("full");
        }
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<String> = self.iter().map(|c| c.name()).collect();
        f.write_str(&names.join(","))
    }
}

impl Serialize for CapSet {
    /// As the hex mask `/proc/PID/status` shows, e.g. `"000001ffffffffff"`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:016x}", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_set_has_41_bits() {
        assert_eq!(CapSet::FULL.bits(), 0x1ff_ffff_ffff);
        assert_eq!(CapSet::FULL.iter().count(), 41);
        assert_eq!(Cap::CHECKPOINT_RESTORE.name(), "CAP_CHECKPOINT_RESTORE");
    }

    #[test]
    fn parse_sets() {
        assert_eq!(CapSet::parse("all").unwrap(), CapSet::FULL);
        assert_eq!(CapSet::parse("none").unwrap(), CapSet::EMPTY);
        let s = CapSet::parse("CAP_KILL, cap_chown setuid").unwrap();
        assert!(s.has(Cap::KILL) && s.has(Cap::CHOWN) && s.has(Cap::SETUID));
        assert_eq!(s.iter().count(), 3);
        assert_eq!(
            CapSet::parse("0x20").unwrap(),
            CapSet::EMPTY.with(Cap::KILL)
        );
        assert!(CapSet::parse("cap_bogus").is_err());
        assert!(CapSet::parse("0x1ffffffffffff").is_err());
    }
}
