//! Generated key cases: a shared session keyring, actors with thread and process keyrings in
//! the host or in user namespaces, keys and nested keyrings with random owners, groups and
//! permission masks, and a short list of key operations. A case renders as a scenario TOML
//! for the model ([`Case::to_toml`]) and carries what the kernel run needs.

use crate::gen::Rng;

/// The kuid base of the first and second generated user namespace ("0 BASE 65536").
pub const NS_BASES: [u32; 2] = [200_000, 300_000];

/// A user namespace of a case, created by root with the map "0 base 65536".
#[derive(Clone, Debug)]
pub struct GenNs {
    /// Name in the scenario.
    pub name: String,
    /// Kernel id of its uid/gid 0 (0 for an unmapped namespace: its actor's ids are
    /// kernel ids).
    pub base: u32,
    /// Created by its one actor (with the actor's kernel ids) and never given maps.
    pub unmapped: bool,
}

/// A process performing operations.
#[derive(Clone, Debug)]
pub struct GenActor {
    /// Name in the scenario ("a0", …).
    pub name: String,
    /// Index into [`Case::namespaces`], or `None` for the initial namespace.
    pub ns: Option<usize>,
    /// uid (= gid default) in its namespace.
    pub uid: u32,
    /// gid in its namespace.
    pub gid: u32,
    /// Supplementary groups in its namespace.
    pub groups: Vec<u32>,
    /// A filesystem uid set after the ids (root actors only: setfsuid needs CAP_SETUID).
    pub fsuid: Option<u32>,
    /// It has a thread keyring (named "<name>_t").
    pub thread: bool,
    /// It has a process keyring (named "<name>_p").
    pub process: bool,
}

/// Where a generated key is linked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// The shared session keyring "S".
    Session,
    /// An actor's thread keyring.
    Thread(usize),
    /// An actor's process keyring.
    Process(usize),
    /// An earlier generated keyring (index into [`Case::keys`]).
    Key(usize),
}

/// A key created during setup (by root, then chowned and given its mask).
#[derive(Clone, Debug)]
pub struct GenKey {
    /// Name ("k3").
    pub name: String,
    /// Description (unique per case).
    pub description: String,
    /// A keyring, or a user key.
    pub keyring: bool,
    /// Payload of a user key.
    pub payload: String,
    /// Owner kuid.
    pub uid: u32,
    /// Group kgid.
    pub gid: u32,
    /// Permission mask.
    pub perm: u32,
    /// Where it is linked.
    pub place: Place,
}

/// A key reference in an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GenRef {
    /// A named key of the case ("S", "a0_t", "k3", or a key an op added).
    Name(String),
    /// `@t`, `@p`, `@s`, `@u`, `@us`.
    Special(&'static str),
    /// A serial no key has.
    Bogus,
}

impl GenRef {
    /// As written in the scenario.
    pub fn text(&self) -> String {
        match self {
            GenRef::Name(n) => n.clone(),
            GenRef::Special(s) => s.to_string(),
            GenRef::Bogus => "99".into(),
        }
    }
}

/// One generated operation.
#[derive(Clone, Debug)]
pub enum GenOp {
    /// `add_key`.
    AddKey {
        /// Destination.
        keyring: GenRef,
        /// A keyring, or a user key.
        keyring_type: bool,
        /// Description (new, or an existing key's to exercise the update path).
        description: String,
        /// Payload for a user key.
        payload: String,
        /// The name of the key it makes.
        name: String,
    },
    /// `keyctl read`.
    Read(GenRef),
    /// `keyctl describe`.
    Describe(GenRef),
    /// `keyctl update`.
    Update(GenRef, String),
    /// `keyctl search`.
    Search {
        /// Start keyring.
        keyring: GenRef,
        /// Sought type is keyring.
        keyring_type: bool,
        /// Sought description.
        description: String,
    },
    /// `keyctl link key keyring`.
    Link(GenRef, GenRef),
    /// `keyctl unlink key keyring`.
    Unlink(GenRef, GenRef),
    /// `keyctl setperm`.
    Setperm(GenRef, u32),
    /// `keyctl chown` (ids in the caller's namespace, `None` = -1).
    Chown(GenRef, Option<u32>, Option<u32>),
    /// `keyctl get_keyring_id`.
    GetId(&'static str, bool),
}

/// Owner kuid, group kgid and mask of a thread or process keyring.
pub type RingAttrs = (u32, u32, u32);

/// A whole case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Case number (for descriptions).
    pub id: usize,
    /// User namespaces.
    pub namespaces: Vec<GenNs>,
    /// Actors.
    pub actors: Vec<GenActor>,
    /// Mask of the shared session keyring "S" (owned by kuid 0, kgid 0).
    pub session_perm: u32,
    /// Owner kuid/kgid and mask of each actor's thread and process keyrings (thread keyrings
    /// follow the actor's fsuid/fsgid).
    pub ring_attrs: Vec<(RingAttrs, RingAttrs)>,
    /// Setup keys in creation order.
    pub keys: Vec<GenKey>,
    /// Operations: (actor index, op).
    pub ops: Vec<(usize, GenOp)>,
}

impl GenActor {
    /// Its kernel uid.
    pub fn kuid(&self, c: &Case) -> u32 {
        self.ns.map(|n| c.namespaces[n].base).unwrap_or(0) + self.uid
    }
    /// Its kernel fsuid (what key permissions compare).
    pub fn fskuid(&self, c: &Case) -> u32 {
        self.ns.map(|n| c.namespaces[n].base).unwrap_or(0) + self.fsuid.unwrap_or(self.uid)
    }
    /// Its kernel gid.
    pub fn kgid(&self, c: &Case) -> u32 {
        self.ns.map(|n| c.namespaces[n].base).unwrap_or(0) + self.gid
    }
}

/// A namespace just made by an unprivileged process, no maps written, with that process as
/// an actor in it: its ids show as unmapped, and its user keyring is `_uid.4294967295`.
fn bare_namespace(r: &mut Rng, namespaces: &mut Vec<GenNs>, actors: &mut Vec<GenActor>) {
    let uid = r.pick(&[1000u32, 1001]);
    namespaces.push(GenNs {
        name: "bare".into(),
        base: 0,
        unmapped: true,
    });
    actors.push(GenActor {
        name: format!("a{}", actors.len()),
        ns: Some(namespaces.len() - 1),
        uid,
        gid: r.pick(&[uid, 1002]),
        groups: Vec::new(),
        fsuid: None,
        thread: r.chance(1, 2),
        process: r.chance(1, 2),
    });
}

fn random_byte(r: &mut Rng) -> u32 {
    match r.below(6) {
        0 => 0x3f,
        1 => 0,
        2 => 0x08 | (r.below(64) as u32), // SEARCH more often
        _ => r.below(64) as u32,
    }
}

/// A random permission mask, biased towards the interesting bits.
pub fn random_perm(r: &mut Rng) -> u32 {
    (random_byte(r) << 24) | (random_byte(r) << 16) | (random_byte(r) << 8) | random_byte(r)
}

impl Case {
    /// Generate case `id`.
    pub fn generate(r: &mut Rng, id: usize) -> Case {
        let nns = r.below(3) as usize;
        let namespaces: Vec<GenNs> = (0..nns)
            .map(|i| GenNs {
                name: format!("ns{i}"),
                base: NS_BASES[i],
                unmapped: false,
            })
            .collect();
        let nact = 1 + r.below(3) as usize;
        let mut actors = Vec::new();
        for i in 0..nact {
            let ns = if nns > 0 && r.chance(1, 2) {
                Some(r.below(nns as u64) as usize)
            } else {
                None
            };
            let uid = r.pick(&[0u32, 0, 1000, 1001]);
            let gid = if r.chance(2, 3) {
                uid
            } else {
                r.pick(&[0u32, 1000, 1001, 1002])
            };
            let mut groups: Vec<u32> = [0u32, 1000, 1001, 1002]
                .into_iter()
                .filter(|_| r.chance(1, 4))
                .collect();
            groups.sort();
            actors.push(GenActor {
                name: format!("a{i}"),
                ns,
                uid,
                gid,
                groups,
                fsuid: if uid == 0 && r.chance(1, 3) {
                    Some(r.pick(&[1000u32, 1001]))
                } else {
                    None
                },
                thread: r.chance(1, 2),
                process: r.chance(1, 2),
            });
        }
        let mut namespaces = namespaces;
        if r.chance(1, 4) {
            bare_namespace(r, &mut namespaces, &mut actors);
        }
        let mut c = Case {
            id,
            namespaces,
            actors,
            session_perm: 0,
            ring_attrs: Vec::new(),
            keys: Vec::new(),
            ops: Vec::new(),
        };
        // Interesting kuids/kgids: root, every actor's, and a stranger of each namespace.
        let mut uids: Vec<u32> = vec![0, 1000, 1001];
        let mut gids: Vec<u32> = vec![0, 1000, 1001, 1002];
        for a in &c.actors {
            uids.push(a.kuid(&c));
            uids.push(a.fskuid(&c));
            gids.push(a.kgid(&c));
            for g in &a.groups {
                gids.push(a.ns.map(|n| c.namespaces[n].base).unwrap_or(0) + g);
            }
        }
        for n in &c.namespaces {
            uids.push(n.base);
            uids.push(n.base + 1000);
            gids.push(n.base + 1000);
        }
        c.session_perm = if r.chance(1, 3) {
            0x3f03_0000
        } else {
            random_perm(r) | (0x0800_0000 * (r.chance(3, 4) as u32))
        };
        for a in 0..c.actors.len() {
            let ku = c.actors[a].fskuid(&c);
            let kg = c.actors[a].kgid(&c);
            let tp = if r.chance(1, 3) {
                0x3f01_0000
            } else {
                random_perm(r)
            };
            let pu = if r.chance(1, 2) { 0 } else { r.pick(&uids) };
            let pg = if r.chance(1, 2) { 0 } else { r.pick(&gids) };
            let pp = if r.chance(1, 3) {
                0x3f01_0000
            } else {
                random_perm(r)
            };
            c.ring_attrs.push(((ku, kg, tp), (pu, pg, pp)));
        }
        let nkeys = 1 + r.below(5) as usize;
        for i in 0..nkeys {
            let mut places = vec![Place::Session];
            for (a, act) in c.actors.iter().enumerate() {
                if act.thread {
                    places.push(Place::Thread(a));
                }
                if act.process {
                    places.push(Place::Process(a));
                }
            }
            for (k, key) in c.keys.iter().enumerate() {
                if key.keyring {
                    places.push(Place::Key(k));
                    places.push(Place::Key(k));
                }
            }
            let place = places[r.below(places.len() as u64) as usize].clone();
            let keyring = r.chance(1, 3);
            c.keys.push(GenKey {
                name: format!("k{i}"),
                description: format!("credns-c{id}-k{i}"),
                keyring,
                payload: if keyring {
                    String::new()
                } else {
                    format!("p{i}")
                },
                uid: if r.chance(1, 3) { 0 } else { r.pick(&uids) },
                gid: if r.chance(1, 3) { 0 } else { r.pick(&gids) },
                perm: if r.chance(1, 5) {
                    0x3f01_0000
                } else {
                    random_perm(r)
                },
                place,
            });
        }
        let nops = 2 + r.below(5) as usize;
        let mut added = 0;
        for _ in 0..nops {
            let by = r.below(c.actors.len() as u64) as usize;
            let host = c.actors[by].ns.is_none();
            let op = c.random_op(r, by, host, &mut added);
            c.ops.push((by, op));
        }
        c
    }

    fn names(&self) -> Vec<String> {
        let mut v = vec!["S".to_string()];
        for a in &self.actors {
            if a.thread {
                v.push(format!("{}_t", a.name));
            }
            if a.process {
                v.push(format!("{}_p", a.name));
            }
        }
        v.extend(self.keys.iter().map(|k| k.name.clone()));
        for (_, op) in &self.ops {
            if let GenOp::AddKey { name, .. } = op {
                v.push(name.clone());
            }
        }
        v
    }

    fn keyring_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| !n.starts_with('k') && !n.starts_with('n'))
            .collect();
        v.extend(
            self.keys
                .iter()
                .filter(|k| k.keyring)
                .map(|k| k.name.clone()),
        );
        for (_, op) in &self.ops {
            if let GenOp::AddKey {
                name,
                keyring_type: true,
                ..
            } = op
            {
                v.push(name.clone());
            }
        }
        v
    }

    fn descriptions(&self) -> Vec<(bool, String)> {
        let mut v: Vec<(bool, String)> = self
            .keys
            .iter()
            .map(|k| (k.keyring, k.description.clone()))
            .collect();
        for (_, op) in &self.ops {
            if let GenOp::AddKey {
                keyring_type,
                description,
                ..
            } = op
            {
                v.push((*keyring_type, description.clone()));
            }
        }
        v
    }

    fn random_ref(&self, r: &mut Rng, keyring: bool, host: bool) -> GenRef {
        if r.chance(1, 5) {
            // The host's user keyrings outlive the test and may hold anything: host actors
            // leave them alone (namespace actors get fresh ones with their namespace).
            let specials: &[&'static str] = if host {
                &["@t", "@p", "@s"]
            } else {
                &["@t", "@p", "@s", "@u", "@us"]
            };
            return GenRef::Special(r.pick(specials));
        }
        if r.chance(1, 40) {
            return GenRef::Bogus;
        }
        // Now and then a user key where a keyring is expected (ENOTDIR paths).
        let pool = if keyring && !r.chance(1, 8) {
            self.keyring_names()
        } else {
            self.names()
        };
        GenRef::Name(pool[r.below(pool.len() as u64) as usize].clone())
    }

    fn random_op(&self, r: &mut Rng, by: usize, host: bool, added: &mut usize) -> GenOp {
        let ns_ids: &[u32] = &[0, 1000, 1001, 70000];
        match r.below(11) {
            0 | 1 => GenOp::Read(self.random_ref(r, false, host)),
            2 => GenOp::Describe(self.random_ref(r, false, host)),
            3 => GenOp::Update(
                self.random_ref(r, false, host),
                format!("u{}", r.below(100)),
            ),
            4 | 5 => {
                let descs = self.descriptions();
                let (kt, d) = if r.chance(1, 6) || descs.is_empty() {
                    (false, format!("credns-c{}-none", self.id))
                } else {
                    let (kt, d) = descs[r.below(descs.len() as u64) as usize].clone();
                    (if r.chance(1, 10) { !kt } else { kt }, d)
                };
                GenOp::Search {
                    keyring: self.random_ref(r, true, host),
                    keyring_type: kt,
                    description: d,
                }
            }
            6 => GenOp::Link(
                self.random_ref(r, false, host),
                self.random_ref(r, true, host),
            ),
            7 => GenOp::Unlink(
                self.random_ref(r, false, host),
                self.random_ref(r, true, host),
            ),
            8 => GenOp::Setperm(self.random_ref(r, false, host), random_perm(r)),
            9 => {
                let u = if r.chance(1, 2) {
                    Some(r.pick(ns_ids))
                } else {
                    None
                };
                let g = if r.chance(2, 3) {
                    Some(r.pick(ns_ids))
                } else {
                    None
                };
                let _ = by;
                GenOp::Chown(self.random_ref(r, false, host), u, g)
            }
            _ => {
                if r.chance(1, 2) {
                    let specials: &[&'static str] = if host {
                        &["@t", "@p", "@s"]
                    } else {
                        &["@t", "@p", "@s", "@u", "@us"]
                    };
                    GenOp::GetId(r.pick(specials), r.chance(1, 2))
                } else {
                    let kt = r.chance(1, 3);
                    let descs = self.descriptions();
                    let description = if !descs.is_empty() && r.chance(1, 3) {
                        descs[r.below(descs.len() as u64) as usize].1.clone()
                    } else {
                        format!("credns-c{}-n{}", self.id, *added)
                    };
                    let name = format!("n{}", *added);
                    *added += 1;
                    GenOp::AddKey {
                        keyring: self.random_ref(r, true, host),
                        keyring_type: kt,
                        description,
                        payload: if kt {
                            String::new()
                        } else {
                            format!("q{}", r.below(100))
                        },
                        name,
                    }
                }
            }
        }
    }

    /// The case as a scenario for the model. `expects[i]`, when given, is written as op i's
    /// `expect` (the kernel's answer), and only the first `upto` ops are written.
    pub fn to_toml(&self, expects: &[Option<String>], upto: usize) -> String {
        let mut s = String::new();
        s.push_str(&format!("# generated key case {}\n", self.id));
        for (i, n) in self.namespaces.iter().enumerate() {
            if n.unmapped {
                let a = self.actors.iter().find(|a| a.ns == Some(i));
                let (u, g) = a.map(|a| (a.uid, a.gid)).unwrap_or((0, 0));
                s.push_str(&format!(
                    "\n[[namespace]]\nname = \"{}\"\nowner = {u}\ngroup = {g}\n",
                    n.name
                ));
                continue;
            }
            s.push_str(&format!(
                "\n[[namespace]]\nname = \"{}\"\nowner = 0\nuid_map = \"0 {} 65536\"\ngid_map = \"0 {} 65536\"\n",
                n.name, n.base, n.base
            ));
        }
        for a in &self.actors {
            s.push_str(&format!("\n[[process]]\nname = \"{}\"\n", a.name));
            if let Some(n) = a.ns {
                s.push_str(&format!("ns = \"{}\"\n", self.namespaces[n].name));
            }
            if a.ns.is_some_and(|n| self.namespaces[n].unmapped) {
                s.push_str(&format!(
                    "uid = \"kernel:{}\"\ngid = \"kernel:{}\"\n",
                    a.uid, a.gid
                ));
            } else {
                s.push_str(&format!(
                    "uid = {}\ngid = {}\ngroups = {:?}\n",
                    a.uid, a.gid, a.groups
                ));
            }
            if let Some(f) = a.fsuid {
                s.push_str(&format!("fsuid = {f}\n"));
            }
        }
        let install: Vec<String> = self
            .actors
            .iter()
            .map(|a| format!("\"{}:session\"", a.name))
            .collect();
        s.push_str(&format!(
            "\n[[key]]\nname = \"S\"\ntype = \"keyring\"\ndescription = \"_ses\"\ninstall = [{}]\nowner = \"kernel:0\"\ngroup = \"kernel:0\"\nperm = \"{:#010x}\"\n",
            install.join(", "),
            self.session_perm
        ));
        for (i, a) in self.actors.iter().enumerate() {
            let ((tu, tg, tp), (pu, pg, pp)) = self.ring_attrs[i];
            if a.thread {
                s.push_str(&format!(
                    "\n[[key]]\nname = \"{0}_t\"\ntype = \"keyring\"\ndescription = \"_tid\"\ninstall = \"{0}:thread\"\nowner = \"kernel:{tu}\"\ngroup = \"kernel:{tg}\"\nperm = \"{tp:#010x}\"\n",
                    a.name
                ));
            }
            if a.process {
                s.push_str(&format!(
                    "\n[[key]]\nname = \"{0}_p\"\ntype = \"keyring\"\ndescription = \"_pid\"\ninstall = \"{0}:process\"\nowner = \"kernel:{pu}\"\ngroup = \"kernel:{pg}\"\nperm = \"{pp:#010x}\"\n",
                    a.name
                ));
            }
        }
        for k in &self.keys {
            let at = match &k.place {
                Place::Session => "S".to_string(),
                Place::Thread(a) => format!("{}_t", self.actors[*a].name),
                Place::Process(a) => format!("{}_p", self.actors[*a].name),
                Place::Key(i) => self.keys[*i].name.clone(),
            };
            s.push_str(&format!(
                "\n[[key]]\nname = \"{}\"\ntype = \"{}\"\ndescription = \"{}\"\n",
                k.name,
                if k.keyring { "keyring" } else { "user" },
                k.description
            ));
            if !k.keyring {
                s.push_str(&format!("payload = \"{}\"\n", k.payload));
            }
            s.push_str(&format!(
                "at = \"{at}\"\nowner = \"kernel:{}\"\ngroup = \"kernel:{}\"\nperm = \"{:#010x}\"\n",
                k.uid, k.gid, k.perm
            ));
        }
        for (i, (by, op)) in self.ops.iter().enumerate().take(upto) {
            s.push_str(&format!("\n[[op]]\nby = \"{}\"\n", self.actors[*by].name));
            let ty = |k: bool| if k { "keyring" } else { "user" };
            match op {
                GenOp::AddKey { keyring, keyring_type, description, payload, name } => {
                    s.push_str(&format!(
                        "op = \"add_key\"\nkeyring = \"{}\"\ntype = \"{}\"\ndescription = \"{description}\"\npayload = \"{payload}\"\nname = \"{name}\"\n",
                        keyring.text(),
                        ty(*keyring_type)
                    ));
                }
                GenOp::Read(k) => s.push_str(&format!("op = \"keyctl_read\"\nkey = \"{}\"\n", k.text())),
                GenOp::Describe(k) => s.push_str(&format!("op = \"keyctl_describe\"\nkey = \"{}\"\n", k.text())),
                GenOp::Update(k, p) => s.push_str(&format!("op = \"keyctl_update\"\nkey = \"{}\"\npayload = \"{p}\"\n", k.text())),
                GenOp::Search { keyring, keyring_type, description } => s.push_str(&format!(
                    "op = \"keyctl_search\"\nkeyring = \"{}\"\ntype = \"{}\"\ndescription = \"{description}\"\n",
                    keyring.text(),
                    ty(*keyring_type)
                )),
                GenOp::Link(k, r) => s.push_str(&format!("op = \"keyctl_link\"\nkey = \"{}\"\nkeyring = \"{}\"\n", k.text(), r.text())),
                GenOp::Unlink(k, r) => s.push_str(&format!("op = \"keyctl_unlink\"\nkey = \"{}\"\nkeyring = \"{}\"\n", k.text(), r.text())),
                GenOp::Setperm(k, p) => s.push_str(&format!("op = \"keyctl_setperm\"\nkey = \"{}\"\nperm = \"{p:#010x}\"\n", k.text())),
                GenOp::Chown(k, u, g) => s.push_str(&format!(
                    "op = \"keyctl_chown\"\nkey = \"{}\"\nuid = {}\ngid = {}\n",
                    k.text(),
                    u.map(|v| v as i64).unwrap_or(-1),
                    g.map(|v| v as i64).unwrap_or(-1)
                )),
                GenOp::GetId(sp, create) => s.push_str(&format!("op = \"keyctl_get_keyring_id\"\nkey = \"{sp}\"\ncreate = {create}\n")),
            }
            if let Some(Some(e)) = expects.get(i) {
                s.push_str(&format!("expect = \"{e}\"\n"));
            }
        }
        s
    }

    /// The actor that creates a setup key: the owner of the keyring at the root of its place
    /// (a thread or process keyring is reachable only by its own process; "S" by actor 0).
    pub fn home_actor(&self, k: usize) -> usize {
        match &self.keys[k].place {
            Place::Session => 0,
            Place::Thread(a) | Place::Process(a) => *a,
            Place::Key(i) => self.home_actor(*i),
        }
    }
}
