//! Deterministic generation of map texts: a small PRNG, extent layouts, kernel-whitespace
//! formatting, and structural and textual mutations aimed at every rule of `map_write`.

use credns_idmap::{Extent, IdMap};

/// xorshift64* — small, deterministic, good enough to spread test cases.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced, xorshift cannot leave it).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// A generator for one named stream derived from a master seed.
    pub fn derive(seed: u64, stream: &str) -> Self {
        let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
        for b in stream.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        let mut r = Rng::new(h);
        r.next_u64();
        r
    }

    /// Next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One element.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Shuffle in place.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Bytes as a Rust-like escaped string: printable ASCII as is, the rest as escapes.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for &b in bytes {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    s
}

/// A long text shortened for messages: the first and last parts, escaped.
pub fn escape_short(bytes: &[u8]) -> String {
    if bytes.len() <= 600 {
        return escape(bytes);
    }
    format!(
        "{} ...[{} bytes]... {}",
        escape(&bytes[..300]),
        bytes.len() - 600,
        escape(&bytes[bytes.len() - 300..])
    )
}

/// How big the ranges of a layout are.
#[derive(Clone, Copy, Debug)]
pub enum Scale {
    /// Counts 1..=3, small gaps.
    Tiny,
    /// Counts up to 100.
    Small,
    /// Counts up to 65536.
    Medium,
    /// Counts spread over the whole 32-bit space.
    Huge,
}

/// The largest id plus one that a range may reach (`first + count` must stay below 2^32-1
/// after wrapping checks: the last id is at most 4294967294).
const SPACE: u64 = u32::MAX as u64; // ids 0..=4294967294

fn counts(rng: &mut Rng, n: usize, scale: Scale) -> Vec<u64> {
    let max = match scale {
        Scale::Tiny => 3,
        Scale::Small => 100,
        Scale::Medium => 65536,
        Scale::Huge => (SPACE / (2 * n as u64 + 2)).max(1),
    };
    (0..n)
        .map(|_| {
            if rng.chance(1, 4) {
                1
            } else {
                rng.range(1, max)
            }
        })
        .collect()
}

/// Place ranges of the given counts, in a random order, with random gaps (a third touching
/// the previous range), within `[base, SPACE)`. Returns starts in the input order.
fn place(rng: &mut Rng, counts: &[u64], base: u64) -> Vec<u64> {
    let total: u64 = counts.iter().sum();
    let room = SPACE.saturating_sub(base).saturating_sub(total);
    let n = counts.len() as u64;
    let per_gap = room / (n + 1);
    let mut order: Vec<usize> = (0..counts.len()).collect();
    rng.shuffle(&mut order);
    let mut starts = vec![0u64; counts.len()];
    let mut cursor = base;
    for (k, &i) in order.iter().enumerate() {
        let gap = if k > 0 && rng.chance(1, 3) {
            0
        } else {
            match rng.below(3) {
                0 => rng.below(per_gap.min(4) + 1),
                1 => rng.below(per_gap.min(100_000) + 1),
                _ => rng.below(per_gap + 1),
            }
        };
        cursor += gap;
        starts[i] = cursor;
        cursor += counts[i];
    }
    starts
}

/// `n` extents whose upper ranges are disjoint and whose lower ranges are disjoint: a map the
/// kernel accepts below the initial namespace.
pub fn valid_layout(rng: &mut Rng, n: usize, scale: Scale) -> Vec<Extent> {
    let c = counts(rng, n, scale);
    let upper_base = if rng.chance(1, 4) {
        0
    } else {
        rng.below(1 << 20)
    };
    let upper = place(rng, &c, upper_base);
    let lower_base = match rng.below(4) {
        0 => 0,
        1 => rng.below(1000),
        2 => 100_000,
        _ => rng.below(1 << 31),
    };
    let lower = place(rng, &c, lower_base);
    (0..n)
        .map(|i| Extent::new(upper[i] as u32, lower[i] as u32, c[i] as u32))
        .collect()
}

/// An extent count biased toward the kernel's boundaries (1, 5, 6, 339, 340, 341).
pub fn extent_count(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0..=5 => 1,
        6 | 7 => rng.range(2, 4) as usize,
        8 | 9 => 5,
        10 | 11 => 6,
        12 => rng.range(7, 30) as usize,
        13 => rng.range(31, 338) as usize,
        14 => 339,
        15 | 16 => 340,
        17 => 341,
        _ => rng.range(1, 8) as usize,
    }
}

/// Structural mutations: each breaks (or tests the edge of) one rule of `map_write`.
pub fn mutate_extents(rng: &mut Rng, ext: &mut Vec<Extent>) -> &'static str {
    if ext.is_empty() {
        return "none";
    }
    let i = rng.below(ext.len() as u64) as usize;
    let j = rng.below(ext.len() as u64) as usize;
    match rng.below(16) {
        0 => {
            ext[i].count = 0;
            "count 0"
        }
        1 => {
            let k = rng.range(1, 1000) as u32;
            ext[i].first = u32::MAX - k;
            ext[i].count = k + rng.range(0, 2) as u32;
            "upper range at the top (wraps when count > 4294967295-first)"
        }
        2 => {
            let k = rng.range(1, 1000) as u32;
            ext[i].lower_first = u32::MAX - k;
            ext[i].count = k + rng.range(0, 2) as u32;
            "lower range at the top (wraps when count > 4294967295-lower)"
        }
        3 => {
            ext.clear();
            ext.push(Extent::new(
                0,
                rng.pick(&[0, 0, 1, 1000]),
                u32::MAX - rng.below(2) as u32,
            ));
            "first=0 count near 4294967295"
        }
        4 => {
            ext[i].first = u32::MAX;
            ext[i].count = rng.pick(&[0, 1, 2]);
            "first = 4294967295"
        }
        5 => {
            ext[i].lower_first = u32::MAX;
            ext[i].count = rng.pick(&[0, 1, 2]);
            "lower = 4294967295"
        }
        6 if ext.len() > 1 && i != j => {
            // Upper overlap: start inside j's upper range.
            let o = ext[j];
            ext[i].first = o
                .first
                .wrapping_add(rng.below(o.count.max(1) as u64) as u32);
            "upper ranges overlap"
        }
        7 if ext.len() > 1 && i != j => {
            let o = ext[j];
            ext[i].lower_first = o
                .lower_first
                .wrapping_add(rng.below(o.count.max(1) as u64) as u32);
            "lower ranges overlap"
        }
        8 if ext.len() > 1 && i != j => {
            // Touch j's upper range from above or below: allowed.
            let o = ext[j];
            if rng.chance(1, 2) {
                ext[i].first = o.first.wrapping_add(o.count);
            } else {
                ext[i].first = o.first.wrapping_sub(ext[i].count);
            }
            "upper ranges touch (or collide if the move overlaps a third)"
        }
        9 if ext.len() > 1 && i != j => {
            let o = ext[j];
            if rng.chance(1, 2) {
                ext[i].lower_first = o.lower_first.wrapping_add(o.count);
            } else {
                ext[i].lower_first = o.lower_first.wrapping_sub(ext[i].count);
            }
            "lower ranges touch (or collide)"
        }
        10 if ext.len() > 1 && i != j => {
            // Overlap by exactly one id at the end.
            let o = ext[j];
            ext[i].first = o.first.wrapping_add(o.count).wrapping_sub(1);
            "upper ranges share one id"
        }
        11 if ext.len() > 1 && i != j => {
            let o = ext[j];
            ext[i].lower_first = o.lower_first.wrapping_add(o.count).wrapping_sub(1);
            "lower ranges share one id"
        }
        12 => {
            let e = ext[i];
            ext.push(e);
            "duplicate extent"
        }
        13 => {
            ext[i].count = ext[i].count.wrapping_add(rng.range(1, 1 << 20) as u32);
            "count grown (may overlap or wrap)"
        }
        14 => {
            ext[i].first = 0;
            ext[i].lower_first = 0;
            "extent at 0 0"
        }
        _ => "none",
    }
}

/// How a map is laid out as text.
#[derive(Clone, Debug)]
pub struct Style {
    /// Separator bytes to draw from (each a kernel `isspace` byte except '\n').
    pub seps: Vec<&'static [u8]>,
    /// Probability (per 8) of leading whitespace on a line.
    pub lead: u64,
    /// Probability (per 8) of trailing whitespace on a line.
    pub trail: u64,
    /// Probability (per 8) of a number written with leading zeros.
    pub zeros: u64,
    /// Probability (per 16) of a number written plus a multiple of 2^32.
    pub wide: u64,
    /// Line end: "\n" or "\r\n".
    pub crlf: bool,
    /// 0 = no newline at the end, 1 = one, 2 = two.
    pub final_newlines: u8,
}

/// A random style; half the time the plain kernel-like "a b c\n".
pub fn style(rng: &mut Rng) -> Style {
    if rng.chance(1, 2) {
        return Style {
            seps: vec![b" "],
            lead: 0,
            trail: 0,
            zeros: 0,
            wide: 0,
            crlf: false,
            final_newlines: if rng.chance(1, 8) { 0 } else { 1 },
        };
    }
    let all: [&'static [u8]; 9] = [
        b" ",
        b"\t",
        b"\x0b",
        b"\x0c",
        b"\r",
        b"\xa0",
        b"  ",
        b" \t ",
        b"\xa0\xa0 ",
    ];
    let mut seps = Vec::new();
    for _ in 0..rng.range(1, 4) {
        seps.push(rng.pick(&all));
    }
    Style {
        seps,
        lead: rng.below(4),
        trail: rng.below(4),
        zeros: rng.below(3),
        wide: rng.below(3),
        crlf: rng.chance(1, 6),
        final_newlines: match rng.below(8) {
            0 => 0,
            1 => 2,
            _ => 1,
        },
    }
}

fn number(rng: &mut Rng, st: &Style, v: u32, out: &mut Vec<u8>) {
    if st.wide > 0 && rng.below(16) < st.wide {
        // v + k * 2^32: the kernel keeps the low 32 bits (via unsigned long, mod 2^64).
        let k: u128 = match rng.below(3) {
            0 => 1,
            1 => rng.range(1, u32::MAX as u64) as u128,
            _ => (rng.next_u64() as u128) << 20 | 1,
        };
        out.extend_from_slice((v as u128 + (k << 32)).to_string().as_bytes());
        return;
    }
    if st.zeros > 0 && rng.below(8) < st.zeros {
        for _ in 0..rng.range(1, 6) {
            out.push(b'0');
        }
    }
    out.extend_from_slice(v.to_string().as_bytes());
}

/// Render extents as a write text in `st`.
pub fn render(rng: &mut Rng, ext: &[Extent], st: &Style) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, e) in ext.iter().enumerate() {
        if st.lead > 0 && rng.below(8) < st.lead {
            out.extend_from_slice(rng.pick(&st.seps));
        }
        number(rng, st, e.first, &mut out);
        out.extend_from_slice(rng.pick(&st.seps));
        number(rng, st, e.lower_first, &mut out);
        out.extend_from_slice(rng.pick(&st.seps));
        number(rng, st, e.count, &mut out);
        if st.trail > 0 && rng.below(8) < st.trail {
            out.extend_from_slice(rng.pick(&st.seps));
        }
        let last = k + 1 == ext.len();
        let newlines = if last { st.final_newlines } else { 1 };
        for _ in 0..newlines {
            if st.crlf {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
    }
    out
}

/// Plain "first lower count\n" lines.
pub fn plain(ext: &[Extent]) -> Vec<u8> {
    IdMap::new(ext.to_vec())
        .map(|m| m.to_write_format().into_bytes())
        .unwrap_or_else(|_| {
            let mut s = String::new();
            for e in ext {
                s.push_str(&format!("{} {} {}\n", e.first, e.lower_first, e.count));
            }
            s.into_bytes()
        })
}

/// Byte positions just after each '\n'.
fn line_starts(t: &[u8]) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(
        t.iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1),
    );
    v
}

/// Positions where a number starts.
fn number_starts(t: &[u8]) -> Vec<usize> {
    (0..t.len())
        .filter(|&i| t[i].is_ascii_digit() && (i == 0 || !t[i - 1].is_ascii_digit()))
        .collect()
}

/// Textual mutations: signs, junk, NUL bytes, empty lines, missing and extra fields, padding to
/// the page-size limit.
pub fn mutate_text(rng: &mut Rng, t: &mut Vec<u8>) -> &'static str {
    let nums = number_starts(t);
    let lines = line_starts(t);
    match rng.below(17) {
        0 if !nums.is_empty() => {
            let p = rng.pick(&nums);
            t.insert(p, rng.pick(b"+-"));
            "sign before a number"
        }
        1 if !t.is_empty() => {
            let p = rng.below(t.len() as u64 + 1) as usize;
            t.insert(p, 0);
            "NUL byte inside"
        }
        2 => {
            let p = rng.pick(&lines);
            t.insert(p, b'\n');
            "empty line"
        }
        3 => {
            t.push(b'\n');
            "extra newline at the end"
        }
        4 if t.last() == Some(&b'\n') => {
            t.pop();
            "no newline at the end"
        }
        5 if !nums.is_empty() => {
            // Drop the first field of a random line.
            let p = rng.pick(&nums);
            let end = (p..t.len())
                .find(|&i| !t[i].is_ascii_digit())
                .unwrap_or(t.len());
            t.drain(p..end);
            "a number removed"
        }
        6 => {
            let p = rng.pick(&lines);
            let at = (p..t.len()).find(|&i| t[i] == b'\n').unwrap_or(t.len());
            t.splice(at..at, b" 7".iter().copied());
            "a fourth number"
        }
        7 if !nums.is_empty() => {
            let p = rng.pick(&nums);
            t.insert(p, rng.pick(b",x#;"));
            "junk before a number"
        }
        8 if !nums.is_empty() => {
            let p = rng.pick(&nums);
            t.splice(p..p, b"0x".iter().copied());
            "hexadecimal prefix"
        }
        9 => {
            pad_to(t, 4095);
            "padded to 4095 bytes"
        }
        10 => {
            pad_to(t, 4096);
            "padded to 4096 bytes"
        }
        11 => {
            let p = rng.pick(&lines);
            t.splice(p..p, b" \t\n".iter().copied());
            "whitespace-only line"
        }
        12 => {
            // Leading zeros until the text is exactly 4095 or 4096 bytes.
            let target = rng.pick(&[4095usize, 4096, 4097]);
            if let Some(&p) = nums.first() {
                while t.len() < target {
                    t.insert(p, b'0');
                }
            }
            "leading zeros to the page-size limit"
        }
        13 if !t.is_empty() => {
            let p = rng.below(t.len() as u64) as usize;
            t[p] = rng.pick(&[b' ', b'\t', 0xa0, 0x85, 0x1c, b'\x0b', b'\x0c', b'\r']);
            "a byte replaced by (maybe) whitespace"
        }
        14 if !nums.is_empty() => {
            let p = rng.pick(&nums);
            t.splice(p..p, b"184467440737095516160".iter().copied());
            "a very long number (past 2^64)"
        }
        15 => {
            let p = rng.pick(&lines);
            t.insert(p, b'\n');
            t.insert(p, b'\r');
            "CR-only line"
        }
        _ => "none",
    }
}

/// Pad the last line with trailing whitespace (before a final newline, if any) to `len` bytes.
pub fn pad_to(t: &mut Vec<u8>, len: usize) {
    let nl = t.last() == Some(&b'\n');
    if nl {
        t.pop();
    }
    let want = len.saturating_sub(nl as usize);
    while t.len() < want {
        t.push(b' ');
    }
    if nl {
        t.push(b'\n');
    }
}

/// Special whole texts: empty, only newlines, whitespace.
pub fn special_text(rng: &mut Rng) -> (Vec<u8>, &'static str) {
    match rng.below(9) {
        0 => (Vec::new(), "empty text"),
        1 => (b"\n".to_vec(), "only a newline"),
        2 => (b"\n\n".to_vec(), "two newlines"),
        3 => (b" ".to_vec(), "one space"),
        4 => (b"0 0 1\n\n".to_vec(), "two trailing newlines"),
        5 => (b"\n0 0 1\n".to_vec(), "leading empty line"),
        6 => (b"0 0 1\0garbage".to_vec(), "NUL then junk"),
        7 => (b"\x000 0 1\n".to_vec(), "NUL first"),
        _ => (b"0 0 1\n\0\n".to_vec(), "newline NUL newline"),
    }
}

/// A map text for a namespace whose parent maps everything (the initial namespace as parent).
pub fn generic_text(rng: &mut Rng) -> (Vec<u8>, String) {
    if rng.chance(1, 40) {
        let (t, note) = special_text(rng);
        return (t, note.to_string());
    }
    let n = extent_count(rng);
    let scale = if n > 100 {
        rng.pick(&[Scale::Tiny, Scale::Small, Scale::Huge])
    } else {
        rng.pick(&[Scale::Tiny, Scale::Small, Scale::Medium, Scale::Huge])
    };
    // Maps of many extents use small numbers most of the time, so that 340 lines fit under
    // a page; the rest are long and meet the size limit first.
    let small = n > 100 && rng.chance(7, 10);
    let mut ext = if small {
        small_many(rng, n)
    } else {
        valid_layout(rng, n, scale)
    };
    let mut notes = vec![format!(
        "{n} extents, {}",
        if small {
            "small numbers".to_string()
        } else {
            format!("{scale:?}")
        }
    )];
    let muts = match rng.below(10) {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    };
    for _ in 0..muts {
        notes.push(mutate_extents(rng, &mut ext).to_string());
    }
    let mut text = if small {
        plain(&ext)
    } else {
        let st = style(rng);
        render(rng, &ext, &st)
    };
    if rng.chance(1, 4) {
        notes.push(mutate_text(rng, &mut text).to_string());
    }
    (text, notes.join("; "))
}

/// The plain style.
pub fn plain_style() -> Style {
    Style {
        seps: vec![b" "],
        lead: 0,
        trail: 0,
        zeros: 0,
        wide: 0,
        crlf: false,
        final_newlines: 1,
    }
}

/// `n` one-id extents with small numbers, short enough that 341 lines fit in a page.
pub fn small_many(rng: &mut Rng, n: usize) -> Vec<Extent> {
    let mut ups: Vec<u32> = (0..n as u32).map(|i| i * 2).collect();
    let mut lows: Vec<u32> = (0..n as u32).map(|i| i * 2 + rng.below(2) as u32).collect();
    rng.shuffle(&mut ups);
    rng.shuffle(&mut lows);
    ups.iter()
        .zip(&lows)
        .map(|(&u, &l)| Extent::new(u, l, 1))
        .collect()
}

/// Fixed edge cases every run covers, whatever the seed: each is (text, what it tests).
pub fn edge_cases() -> Vec<(Vec<u8>, String)> {
    let mut v: Vec<(Vec<u8>, String)> = Vec::new();
    let mut add = |t: &[u8], note: &str| v.push((t.to_vec(), note.to_string()));
    add(
        b"0 0 4294967295\n",
        "first=0 lower=0 count=4294967295 (the identity)",
    );
    add(b"0 1 4294967295\n", "first=0 count=4294967295, lower wraps");
    add(b"1 0 4294967295\n", "count=4294967295 from 1: upper wraps");
    add(b"0 0 4294967296\n", "count 2^32 (truncates to 0)");
    add(b"4294967295 0 1\n", "first = 4294967295");
    add(b"0 4294967295 1\n", "lower = 4294967295");
    add(b"4294967294 0 1\n", "first = 4294967294, count 1 (last id)");
    add(b"4294967294 0 2\n", "first = 4294967294, count 2 (wraps)");
    add(b"0 4294967294 1\n", "lower = 4294967294, count 1");
    add(b"0 0 0\n", "count 0");
    add(
        b"4294967296 4294968296 1\n",
        "numbers >= 2^32 (0 and 1000 after truncation)",
    );
    add(b"18446744073709551616 1000 1\n", "2^64 (0 after wrapping)");
    add(b"18446744078004518912 1000 1\n", "2^64 + 2^32 (0)");
    add(
        b"000000000000000000000000000007 1000 1\n",
        "many leading zeros",
    );
    add(b"+0 1000 1\n", "leading '+'");
    add(b"-0 1000 1\n", "leading '-'");
    add(b"0 +1000 1\n", "'+' on the lower id");
    add(b"0 1000 +1\n", "'+' on the count");
    add(b"0 1000 -1\n", "'-' on the count");
    add(b"0\t1000\t1\n", "tabs");
    add(b"0 1000 1\r\n", "CR LF");
    add(b"0\r1000\r1\r\n", "CR separators");
    add(b"0\x0b1000\x0c1\n", "vertical tab and form feed");
    add(b"0\xa01000\xa01\n", "byte 0xA0 (kernel isspace)");
    add(b"\xa00 1000 1\xa0\n", "0xA0 leading and trailing");
    add(b"0\x851000 1\n", "byte 0x85 (not kernel whitespace)");
    add(b"0 1000 1\0\n5 2000 1\n", "NUL after the first line");
    add(b"0 10\0 1\n", "NUL inside a line");
    add(b"0 1000 1\n5 2000 1\0", "NUL at the end");
    add(b"\0", "a lone NUL");
    add(b"0 1000 1\n\n5 2000 1\n", "empty line in the middle");
    add(b"\n0 1000 1\n", "empty first line");
    add(b"0 1000 1", "no trailing newline");
    add(b"0 1000 1\n\n", "two trailing newlines");
    add(b"", "empty text");
    add(b"\n", "a lone newline");
    add(b"   \n", "only spaces");
    add(b"  0   1000   1   \n", "extra spaces everywhere");
    add(
        b"0 1000 1 \n 5 2000 1\n",
        "trailing and leading space around a newline",
    );
    add(b"0 1000\n", "two numbers");
    add(b"0 1000 1 2\n", "four numbers");
    add(b"0x0 1000 1\n", "hexadecimal");
    add(b"0 0 10\n5 100 10\n", "upper ranges overlap");
    add(b"0 0 10\n9 100 10\n", "upper ranges share one id");
    add(b"0 0 10\n10 100 10\n", "upper ranges touch");
    add(b"0 0 10\n100 5 10\n", "lower ranges overlap");
    add(b"0 0 10\n100 9 10\n", "lower ranges share one id");
    add(b"0 0 10\n100 10 10\n", "lower ranges touch");
    add(
        b"100 100 10\n0 95 10\n",
        "lower overlap with the earlier extent from below",
    );
    add(b"0 0 1\n0 0 1\n", "the same extent twice");
    // Display order: up to five extents as written, more sorted by first.
    add(
        b"40 1040 1\n30 1030 1\n20 1020 1\n10 1010 1\n0 1000 1\n",
        "5 extents, written in descending order",
    );
    add(
        b"50 1050 1\n40 1040 1\n30 1030 1\n20 1020 1\n10 1010 1\n0 1000 1\n",
        "6 extents, written in descending order",
    );
    for n in [339usize, 340, 341] {
        let mut t = String::new();
        for i in 0..n {
            t.push_str(&format!("{} {} 1\n", i * 2, 10000 + i * 2));
        }
        let note = format!("{n} extents");
        add(t.as_bytes(), &note);
    }
    {
        let mut t = String::new();
        for i in 0..340 {
            t.push_str(&format!("{} {} 1\n", i * 2, 10000 + i * 2));
        }
        t.push_str("garbage");
        add(t.as_bytes(), "340 extents and a junk 341st line");
        let mut t2 = t.clone().into_bytes();
        t2.truncate(t2.len() - "garbage".len());
        t2.push(b'\n');
        add(&t2, "340 extents and an empty line");
    }
    for len in [4095usize, 4096] {
        let mut t = b"0 1000 1\n".to_vec();
        pad_to(&mut t, len);
        add(
            &t,
            &format!("{len} bytes (valid map padded with trailing spaces)"),
        );
        let mut t = b"0 1000 1\n".to_vec();
        while t.len() < len {
            t.insert(0, b'0');
        }
        add(&t, &format!("{len} bytes (leading zeros)"));
    }
    v
}
