//! The one lookup an fentry program needs: the BTF type id of a kernel function, found by
//! walking the kernel's own BTF (`/sys/kernel/btf/vmlinux`, the format of
//! `Documentation/bpf/btf.rst`: a header, then the type section, then the string section).
//! Type ids are implicit (the n-th type record is id n, from 1), so every record is walked.

/// `BTF_KIND_*` numbers.
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;
/// The highest kind this walker knows the record size of.
const KIND_MAX: u32 = 19;

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The id of the `BTF_KIND_FUNC` named `name` in the BTF blob `btf` (the first, if several).
pub(super) fn find_func(btf: &[u8], name: &str) -> Result<u32, String> {
    let bad = |what: &str| format!("malformed BTF: {what}");
    if btf.get(0..2) != Some(&[0x9f, 0xeb]) {
        return Err(bad("no little-endian magic 0xeb9f"));
    }
    let hdr_len = u32_at(btf, 4).ok_or_else(|| bad("short header"))? as usize;
    let field = |i: usize| u32_at(btf, 8 + 4 * i).map(|v| v as usize);
    let (Some(type_off), Some(type_len), Some(str_off), Some(str_len)) =
        (field(0), field(1), field(2), field(3))
    else {
        return Err(bad("short header"));
    };
    let types = btf
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .ok_or_else(|| bad("type section out of bounds"))?;
    let strings = btf
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or_else(|| bad("string section out of bounds"))?;
    let name_is = |off: u32| {
        let s = strings.get(off as usize..).unwrap_or(&[]);
        s.starts_with(name.as_bytes()) && s.get(name.len()) == Some(&0)
    };
    let mut pos = 0usize;
    let mut id = 1u32;
    while pos < types.len() {
        let (Some(name_off), Some(info)) = (u32_at(types, pos), u32_at(types, pos + 4)) else {
            return Err(bad(&format!("type {id} truncated")));
        };
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        if kind == KIND_FUNC && name_is(name_off) {
            return Ok(id);
        }
        let extra = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
            KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
            k if k > KIND_MAX => return Err(bad(&format!("type {id} has unknown kind {k}"))),
            _ => 0,
        };
        pos += 12 + extra;
        id += 1;
    }
    Err(format!("no function {name} in the kernel's BTF"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob with: 1 INT "int", 2 FUNC_PROTO (1 param), 3 FUNC "f", 4 STRUCT (2 members),
    /// 5 FUNC "proc_free_inum".
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0f\0proc_free_inum\0x\0".to_vec();
        let mut t: Vec<u32> = Vec::new();
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        t.extend([1, info(KIND_INT, 0), 4, 32]); // int + its u32
        t.extend([0, info(KIND_FUNC_PROTO, 1), 1, 0, 1]); // one btf_param
        t.extend([5, info(KIND_FUNC, 0), 2]);
        t.extend([0, info(KIND_STRUCT, 2), 8, 22, 1, 0, 22, 1, 32]);
        t.extend([7, info(KIND_FUNC, 0), 2]);
        let types: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut b = vec![0x9f, 0xeb, 1, 0];
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            b.extend(v.to_le_bytes());
        }
        b.extend(types);
        b.extend(strings);
        b
    }

    #[test]
    fn finds_functions_by_name() {
        let b = blob();
        assert_eq!(find_func(&b, "f"), Ok(3));
        assert_eq!(find_func(&b, "proc_free_inum"), Ok(5));
        assert_eq!(
            find_func(&b, "proc_free"),
            Err("no function proc_free in the kernel's BTF".to_string())
        );
        assert!(find_func(&b, "int").is_err(), "an INT is not a FUNC");
        assert!(find_func(&b[..30], "f").unwrap_err().contains("malformed"));
        assert!(find_func(b"\x00\x00", "f").unwrap_err().contains("magic"));
    }
}
