//! The arguments of each scenario operation: one struct per operation, its fields the
//! `[[op]]` table's keys (besides `by`, `op`, `expect`, `expect_output`, `note`). Serde
//! decides which fields an operation takes and which it needs; the field order is the order
//! reports show them in.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::Spanned;

use super::raw::RawNum;

/// `path` alone: `stat`, `exec`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PathArgs {
    pub(super) path: Spanned<String>,
}

/// `open`: `access` is "r", "w" or "rw" (default "r").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenArgs {
    pub(super) path: Spanned<String>,
    pub(super) access: Option<Spanned<String>>,
}

/// `access` (faccessat2): `access` is a subset of "rwx" (default "r").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessArgs {
    pub(super) path: Spanned<String>,
    pub(super) access: Option<Spanned<String>>,
    pub(super) eaccess: Option<bool>,
}

/// `create`, `mkdir`: `mode` is octal (default 0666, or 0777 for a directory).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateArgs {
    pub(super) path: Spanned<String>,
    pub(super) mode: Option<Spanned<RawNum>>,
}

/// `chmod`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChmodArgs {
    pub(super) path: Spanned<String>,
    pub(super) mode: Spanned<RawNum>,
}

/// `chown`: -1 or a missing id leaves it alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChownArgs {
    pub(super) path: Spanned<String>,
    pub(super) uid: Option<Spanned<i64>>,
    pub(super) gid: Option<Spanned<i64>>,
}

/// `kill`: `signal` is a number or a name (default SIGTERM).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KillArgs {
    pub(super) target: Spanned<String>,
    pub(super) signal: Option<Spanned<RawNum>>,
}

/// `target` alone: `ptrace`, `proc_status`, `peercred`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetArgs {
    pub(super) target: Spanned<String>,
}

/// `setuid`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetuidArgs {
    pub(super) uid: Spanned<i64>,
}

/// `setreuid`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetreuidArgs {
    pub(super) ruid: Option<Spanned<i64>>,
    pub(super) euid: Option<Spanned<i64>>,
}

/// `setresuid`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetresuidArgs {
    pub(super) ruid: Option<Spanned<i64>>,
    pub(super) euid: Option<Spanned<i64>>,
    pub(super) suid: Option<Spanned<i64>>,
}

/// `setgid`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetgidArgs {
    pub(super) gid: Spanned<i64>,
}

/// `setregid`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetregidArgs {
    pub(super) rgid: Option<Spanned<i64>>,
    pub(super) egid: Option<Spanned<i64>>,
}

/// `setresgid`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetresgidArgs {
    pub(super) rgid: Option<Spanned<i64>>,
    pub(super) egid: Option<Spanned<i64>>,
    pub(super) sgid: Option<Spanned<i64>>,
}

/// `setgroups`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetgroupsArgs {
    pub(super) groups: Spanned<Vec<i64>>,
}

/// `unshare` (CLONE_NEWUSER): the new namespace's name, by default `<process>-nsN`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnshareArgs {
    pub(super) name: Option<Spanned<String>>,
}

/// `write_uid_map`, `write_gid_map`, `write_setgroups`: the target defaults to the writer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteProcArgs {
    pub(super) target: Option<Spanned<String>>,
    pub(super) text: Spanned<String>,
}

/// `setns`: a namespace by name, or the namespace of a process.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetnsArgs {
    pub(super) target: Option<Spanned<String>>,
    pub(super) ns: Option<Spanned<String>>,
}

/// `capable`: `ns_capable(ns, cap)`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CapableArgs {
    pub(super) ns: Spanned<String>,
    pub(super) cap: Spanned<String>,
}

/// Operations without arguments: `no_new_privs`, `getids`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoArgs {}

/// `add_key`: `name` lets later ops refer to the new key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddKeyArgs {
    pub(super) name: Option<Spanned<String>>,
    pub(super) keyring: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) ktype: Option<Spanned<String>>,
    pub(super) description: Option<Spanned<String>>,
    pub(super) payload: Option<Spanned<String>>,
}

/// `key` alone: `keyctl_read`, `keyctl_describe`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyArgs {
    pub(super) key: Spanned<String>,
}

/// `keyctl_update`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyUpdateArgs {
    pub(super) key: Spanned<String>,
    pub(super) payload: Option<Spanned<String>>,
}

/// `keyctl_search`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeySearchArgs {
    pub(super) keyring: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) ktype: Option<Spanned<String>>,
    pub(super) description: Spanned<String>,
}

/// `request_key`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestKeyArgs {
    #[serde(rename = "type")]
    pub(super) ktype: Option<Spanned<String>>,
    pub(super) description: Spanned<String>,
    pub(super) callout: Option<Spanned<String>>,
}

/// `keyctl_link`, `keyctl_unlink`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyLinkArgs {
    pub(super) key: Spanned<String>,
    pub(super) keyring: Spanned<String>,
}

/// `keyctl_setperm`: `perm` is a hex mask.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeySetpermArgs {
    pub(super) key: Spanned<String>,
    pub(super) perm: Spanned<RawNum>,
}

/// `keyctl_chown`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyChownArgs {
    pub(super) uid: Option<Spanned<i64>>,
    pub(super) gid: Option<Spanned<i64>>,
    pub(super) key: Spanned<String>,
}

/// `keyctl_get_keyring_id`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyGetIdArgs {
    pub(super) key: Spanned<String>,
    pub(super) create: Option<bool>,
}

/// `rename`: `flags` is "noreplace" or "exchange" (default none).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RenameArgs {
    pub(super) from: Spanned<String>,
    pub(super) to: Spanned<String>,
    pub(super) flags: Option<Spanned<String>>,
}

/// `link`: a hard link `to` naming the inode at `from`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LinkArgs {
    pub(super) from: Spanned<String>,
    pub(super) to: Spanned<String>,
}

/// `symlink`: a link at `path` pointing to `target` (any text).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SymlinkArgs {
    pub(super) target: Spanned<String>,
    pub(super) path: Spanned<String>,
}

/// `open_creat`: `open(O_CREAT)` without `O_EXCL`; `access` as for `open`, `mode` octal
/// (default 0666).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenCreatArgs {
    pub(super) path: Spanned<String>,
    pub(super) access: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<RawNum>>,
}

/// `setfsuid`: `uid` may be -1 (no change; the call still reports the old fsuid).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetfsuidArgs {
    pub(super) uid: Spanned<i64>,
}

/// `setfsgid`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetfsgidArgs {
    pub(super) gid: Spanned<i64>,
}

/// `capset`: the three new sets, each as a process's sets are written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CapsetArgs {
    pub(super) effective: Spanned<String>,
    pub(super) permitted: Spanned<String>,
    pub(super) inheritable: Spanned<String>,
}

/// `set_securebits`: the new securebits (a number, or a "0x" hex string).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecurebitsArgs {
    pub(super) bits: Spanned<RawNum>,
}

/// `set_keepcaps`: 0 or 1 (other values reach the kernel, which says EINVAL).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeepcapsArgs {
    pub(super) value: Spanned<i64>,
}

/// `capbset_drop`: a capability name or number.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CapArgs {
    pub(super) cap: Spanned<RawNum>,
}

/// `cap_ambient`: `action` is raise, lower or clear_all; `cap` for raise and lower.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AmbientArgs {
    pub(super) action: Spanned<String>,
    pub(super) cap: Option<Spanned<RawNum>>,
}

/// `ptrace`: `mode` is attach (default) or read; `creds` real (default) or fs (read only).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PtraceArgs {
    pub(super) target: Spanned<String>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) creds: Option<Spanned<String>>,
}

/// `open_proc`: `file` is environ or maps.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenProcArgs {
    pub(super) target: Spanned<String>,
    pub(super) file: Spanned<String>,
}

/// `peercred`: a `target` (a pair it makes now) or a `socket` an earlier `connect` named.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeercredArgs {
    pub(super) target: Option<Spanned<String>>,
    pub(super) socket: Option<Spanned<String>>,
}

/// `connect`: `target` makes the pair; `name` names it for later ops.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectArgs {
    pub(super) target: Spanned<String>,
    pub(super) name: Spanned<String>,
}

/// `send_creds`: SCM_CREDENTIALS with the sender's pid and these ids.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendCredsArgs {
    pub(super) socket: Spanned<String>,
    pub(super) uid: Spanned<i64>,
    pub(super) gid: Spanned<i64>,
    /// "own" (default) or "peer": the receiver's pid.
    pub(super) pid: Option<Spanned<String>>,
}

/// `readlink_proc_fd`: `fd` defaults to 0.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadlinkFdArgs {
    pub(super) target: Spanned<String>,
    pub(super) fd: Option<Spanned<i64>>,
}

/// Declares [`OpSpec`], the operations by their scenario names, and the fields each takes
/// (from its struct, in the order reports show them).
macro_rules! op_specs {
    ($($variant:ident($args:ty)),* $(,)?) => {
        /// An `[[op]]` table's operation, tagged by its `op` field.
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub(super) enum OpSpec {
            $($variant($args)),*
        }

        impl OpSpec {
            /// The fields this operation takes.
            pub(super) fn fields(&self) -> &'static [&'static str] {
                match self {
                    $(OpSpec::$variant(_) => field_names::<$args>()),*
                }
            }
        }
    };
}

op_specs! {
    Open(OpenArgs),
    Access(AccessArgs),
    Create(CreateArgs),
    Mkdir(CreateArgs),
    Stat(PathArgs),
    Chmod(ChmodArgs),
    Chown(ChownArgs),
    Exec(PathArgs),
    Kill(KillArgs),
    Ptrace(PtraceArgs),
    Setuid(SetuidArgs),
    Setreuid(SetreuidArgs),
    Setresuid(SetresuidArgs),
    Setgid(SetgidArgs),
    Setregid(SetregidArgs),
    Setresgid(SetresgidArgs),
    Setgroups(SetgroupsArgs),
    Unshare(UnshareArgs),
    WriteUidMap(WriteProcArgs),
    WriteGidMap(WriteProcArgs),
    WriteSetgroups(WriteProcArgs),
    Setns(SetnsArgs),
    NoNewPrivs(NoArgs),
    Getids(NoArgs),
    ProcStatus(TargetArgs),
    Peercred(PeercredArgs),
    Capable(CapableArgs),
    AddKey(AddKeyArgs),
    KeyctlRead(KeyArgs),
    KeyctlDescribe(KeyArgs),
    KeyctlUpdate(KeyUpdateArgs),
    KeyctlSearch(KeySearchArgs),
    KeyctlLink(KeyLinkArgs),
    KeyctlUnlink(KeyLinkArgs),
    KeyctlSetperm(KeySetpermArgs),
    KeyctlChown(KeyChownArgs),
    KeyctlGetKeyringId(KeyGetIdArgs),
    RequestKey(RequestKeyArgs),
    Unlink(PathArgs),
    Rmdir(PathArgs),
    Rename(RenameArgs),
    Link(LinkArgs),
    Symlink(SymlinkArgs),
    OpenCreat(OpenCreatArgs),
    Truncate(super::attr_ops::TruncateArgs),
    Utimes(super::attr_ops::UtimesArgs),
    Setxattr(super::attr_ops::SetxattrArgs),
    Setfsuid(SetfsuidArgs),
    Setfsgid(SetfsgidArgs),
    Capset(CapsetArgs),
    SetSecurebits(SecurebitsArgs),
    SetKeepcaps(KeepcapsArgs),
    CapbsetDrop(CapArgs),
    CapAmbient(AmbientArgs),
    OpenProc(OpenProcArgs),
    Connect(ConnectArgs),
    SendCreds(SendCredsArgs),
    ReadlinkProcFd(ReadlinkFdArgs),
    UnshareNs(super::nstypes::UnshareNsArgs),
    SetnsNs(super::nstypes::SetnsNsArgs),
    Sethostname(super::nstypes::SethostnameArgs),
    Bind(super::nstypes::BindArgs),
    Mount(super::nstypes::MountArgs),
    Umount(super::op_args::PathArgs),
    Remount(super::nstypes::RemountArgs),
}

/// The field names a derived `Deserialize` struct declares, read by asking it to deserialize
/// from a deserializer that only records what `deserialize_struct` is given.
pub(super) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Names<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Names<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only structs are introspected"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("introspected"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Names(&mut fields));
    fields
}
