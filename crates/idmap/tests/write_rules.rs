//! Every rule of the kernel's `proc_*_map_write` / `map_write` / `verify_root_map` /
//! `new_idmap_permitted`, one test each, asserting the exact [`WriteRule`] and errno; and the
//! exact error texts of the text formats.

use credns_idmap::formats::{
    parse_oci_config, parse_oci_config_value, parse_oci_mappings, parse_proc_map, set_oci_mappings,
    MapUsers, MapUsersArg, SubidFile,
};
use credns_idmap::{
    judge_write, parse_write, Errno, Extent, ExtentRule, IdKind, IdMap, Kgid, Kuid, OpenerNs,
    ParseRule, Position, WriteContext, WriteRule,
};

fn host(kind: IdKind) -> WriteContext {
    WriteContext::host_root(kind)
}

/// An unprivileged user 1000 (egid 1000) writing the map of a namespace it owns, from the parent
/// (the initial namespace), with no capabilities in the parent.
fn unprivileged(kind: IdKind) -> WriteContext {
    WriteContext {
        owner: Kuid(1000),
        opener_euid: Kuid(1000),
        opener_egid: Kgid(1000),
        opener_cap_setfcap_in_parent: false,
        writer_cap_setid_in_parent: false,
        opener_cap_setid_in_parent: false,
        ..WriteContext::host_root(kind)
    }
}

/// Judge and return the refusal, checking its errno.
fn refused(ctx: &WriteContext, text: &[u8], errno: Errno) -> WriteRule {
    let rule = judge_write(ctx, text).expect_err("write should be refused");
    assert_eq!(rule.errno(), errno, "{rule:?}");
    assert_eq!(rule.errno().code(), errno as i32);
    rule
}

fn accepted(ctx: &WriteContext, text: &[u8]) -> Vec<Extent> {
    match judge_write(ctx, text) {
        Ok(a) => a.written.extents().to_vec(),
        Err(e) => panic!("refused: {e:?} ({e})"),
    }
}

fn parse_err(line: usize, column: usize, what: ParseRule) -> WriteRule {
    WriteRule::Parse {
        at: Position { line, column },
        what,
    }
}

fn ext_err(line: usize, extent: Option<Extent>, why: ExtentRule) -> WriteRule {
    WriteRule::Extent { line, extent, why }
}

// ---- W0: proc_uid_map_write --------------------------------------------------------------------

#[test]
fn w0_initial_namespace_is_eperm() {
    let ctx = WriteContext {
        target_is_init: true,
        ..host(IdKind::Uid)
    };
    assert_eq!(
        refused(&ctx, b"0 0 1\n", Errno::EPERM),
        WriteRule::InitNamespace
    );
}

#[test]
fn w0_opener_elsewhere_is_eperm() {
    let ctx = WriteContext {
        opener_ns: OpenerNs::Other,
        ..host(IdKind::Gid)
    };
    assert_eq!(
        refused(&ctx, b"0 0 1\n", Errno::EPERM),
        WriteRule::OpenerNotInNamespaceOrParent
    );
}

#[test]
fn w0_init_is_checked_before_the_opener() {
    let ctx = WriteContext {
        target_is_init: true,
        opener_ns: OpenerNs::Other,
        ..host(IdKind::Uid)
    };
    assert_eq!(
        refused(&ctx, b"0 0 1\n", Errno::EPERM),
        WriteRule::InitNamespace
    );
}

// ---- W1: offset and size -----------------------------------------------------------------------

#[test]
fn w1_nonzero_offset_is_einval() {
    let ctx = WriteContext {
        offset: 1,
        ..host(IdKind::Uid)
    };
    assert_eq!(
        refused(&ctx, b"0 0 1\n", Errno::EINVAL),
        WriteRule::NonZeroOffset
    );
}

#[test]
fn w1_a_page_is_too_long() {
    let mut text = b"0 0 1".to_vec();
    text.resize(4096, b' ');
    assert_eq!(
        refused(&host(IdKind::Uid), &text, Errno::EINVAL),
        WriteRule::TooLong { len: 4096 }
    );
    text.truncate(4095);
    assert_eq!(accepted(&host(IdKind::Uid), &text), [Extent::new(0, 0, 1)]);
}

#[test]
fn w1_offset_is_checked_before_size() {
    let ctx = WriteContext {
        offset: 7,
        ..host(IdKind::Uid)
    };
    assert_eq!(
        refused(&ctx, &[b' '; 5000], Errno::EINVAL),
        WriteRule::NonZeroOffset
    );
}

// ---- W3, W4 ------------------------------------------------------------------------------------

#[test]
fn w3_second_write_is_eperm() {
    let ctx = WriteContext {
        already_written: true,
        ..host(IdKind::Uid)
    };
    assert_eq!(
        refused(&ctx, b"0 0 1\n", Errno::EPERM),
        WriteRule::AlreadyWritten
    );
    // Before parsing: even a malformed text gets EPERM.
    assert_eq!(
        refused(&ctx, b"junk", Errno::EPERM),
        WriteRule::AlreadyWritten
    );
}

#[test]
fn w4_opener_needs_cap_sys_admin_in_target_for_uid_and_gid() {
    for kind in [IdKind::Uid, IdKind::Gid] {
        let ctx = WriteContext {
            opener_cap_sys_admin_in_target: false,
            ..host(kind)
        };
        assert_eq!(
            refused(&ctx, b"0 0 1\n", Errno::EPERM),
            WriteRule::NoCapSysAdminInTarget
        );
        // Before parsing.
        assert_eq!(
            refused(&ctx, b"", Errno::EPERM),
            WriteRule::NoCapSysAdminInTarget
        );
    }
}

#[test]
fn w4_projid_needs_no_cap_sys_admin() {
    let ctx = WriteContext {
        opener_cap_sys_admin_in_target: false,
        ..unprivileged(IdKind::Projid)
    };
    assert_eq!(
        accepted(&ctx, b"0 0 4294967295\n"),
        [Extent::new(0, 0, u32::MAX)]
    );
}

// ---- W5: parsing -------------------------------------------------------------------------------

#[test]
fn w5_empty_text_and_empty_lines() {
    let h = host(IdKind::Uid);
    assert_eq!(
        refused(&h, b"", Errno::EINVAL),
        parse_err(1, 1, ParseRule::EmptyLine)
    );
    assert_eq!(
        refused(&h, b"\n", Errno::EINVAL),
        parse_err(1, 1, ParseRule::EmptyLine)
    );
    assert_eq!(
        refused(&h, b"0 0 1\n\n", Errno::EINVAL),
        parse_err(2, 1, ParseRule::EmptyLine)
    );
    assert_eq!(
        refused(&h, b"0 0 1\n\n1 1 1\n", Errno::EINVAL),
        parse_err(2, 1, ParseRule::EmptyLine)
    );
    // One trailing newline is fine, and so is none.
    assert_eq!(accepted(&h, b"0 0 1\n"), [Extent::new(0, 0, 1)]);
    assert_eq!(accepted(&h, b"0 0 1"), [Extent::new(0, 0, 1)]);
}

#[test]
fn w5_blank_line_of_spaces_is_a_missing_number() {
    assert_eq!(
        refused(&host(IdKind::Uid), b"   \n", Errno::EINVAL),
        parse_err(1, 4, ParseRule::ExpectedSpaceAfterNumber)
    );
}

#[test]
fn w5_fields_need_whitespace_after_them() {
    let h = host(IdKind::Uid);
    assert_eq!(
        refused(&h, b"0,0,1\n", Errno::EINVAL),
        parse_err(1, 2, ParseRule::ExpectedSpaceAfterNumber)
    );
    assert_eq!(
        refused(&h, b"0 0\n", Errno::EINVAL),
        parse_err(1, 4, ParseRule::MissingField { present: 2 })
    );
    assert_eq!(
        refused(&h, b"0\n", Errno::EINVAL),
        parse_err(1, 2, ParseRule::MissingField { present: 1 })
    );
    assert_eq!(
        refused(&h, b"0 x 1\n", Errno::EINVAL),
        parse_err(1, 3, ParseRule::ExpectedSpaceAfterNumber)
    );
}

#[test]
fn w5_no_sign_prefix() {
    let h = host(IdKind::Uid);
    assert_eq!(
        refused(&h, b"+0 0 1\n", Errno::EINVAL),
        parse_err(1, 1, ParseRule::ExpectedSpaceAfterNumber)
    );
    assert_eq!(
        refused(&h, b"0 -1 1\n", Errno::EINVAL),
        parse_err(1, 3, ParseRule::ExpectedSpaceAfterNumber)
    );
    assert_eq!(
        refused(&h, b"0 0 +1\n", Errno::EINVAL),
        parse_err(1, 5, ParseRule::TrailingJunk)
    );
}

#[test]
fn w5_trailing_junk() {
    let h = host(IdKind::Uid);
    assert_eq!(
        refused(&h, b"0 0 1x\n", Errno::EINVAL),
        parse_err(1, 6, ParseRule::TrailingJunk)
    );
    assert_eq!(
        refused(&h, b"0 0 1 2\n", Errno::EINVAL),
        parse_err(1, 7, ParseRule::TrailingJunk)
    );
    assert_eq!(
        refused(&h, b"0 0 1\n1 1 1 #\n", Errno::EINVAL),
        parse_err(2, 7, ParseRule::TrailingJunk)
    );
}

#[test]
fn w5_kernel_whitespace() {
    let h = host(IdKind::Uid);
    // Tabs, vertical tab, form feed, carriage return and Latin-1 no-break space (0xA0) all count.
    assert_eq!(
        accepted(&h, b"\t0\x0b100\x0c1\r\n"),
        [Extent::new(0, 100, 1)]
    );
    assert_eq!(accepted(&h, b"0\xa0100\xa01\xa0"), [Extent::new(0, 100, 1)]);
    // NEL (0x85) does not.
    assert_eq!(
        refused(&h, b"0\x85100 1", Errno::EINVAL),
        parse_err(1, 2, ParseRule::ExpectedSpaceAfterNumber)
    );
}

#[test]
fn w5_numbers_are_truncated_to_32_bits() {
    // 4294968296 = 2^32 + 1000.
    assert_eq!(
        accepted(&host(IdKind::Uid), b"4294968296 0 1\n"),
        [Extent::new(1000, 0, 1)]
    );
    // 2^64 + 5 wraps too.
    assert_eq!(
        accepted(&host(IdKind::Uid), b"0 18446744073709551621 1\n"),
        [Extent::new(0, 5, 1)]
    );
}

#[test]
fn w5_text_ends_at_nul() {
    assert_eq!(
        accepted(&host(IdKind::Uid), b"0 0 1\n\0garbage"),
        [Extent::new(0, 0, 1)]
    );
    assert_eq!(
        accepted(&host(IdKind::Uid), b"0 0 1\0 junk"),
        [Extent::new(0, 0, 1)]
    );
    assert_eq!(
        refused(&host(IdKind::Uid), b"\0 0 0 1", Errno::EINVAL),
        parse_err(1, 1, ParseRule::EmptyLine)
    );
}

#[test]
fn w5_1_reserved_id() {
    let h = host(IdKind::Uid);
    let e = Extent::new(4294967295, 0, 1);
    assert_eq!(
        refused(&h, b"4294967295 0 1\n", Errno::EINVAL),
        ext_err(1, Some(e), ExtentRule::ReservedId)
    );
    let e = Extent::new(0, 4294967295, 1);
    assert_eq!(
        refused(&h, b"0 4294967295 1\n", Errno::EINVAL),
        ext_err(1, Some(e), ExtentRule::ReservedId)
    );
}

#[test]
fn w5_2_zero_count_and_wrap() {
    let h = host(IdKind::Uid);
    let cases: [(&[u8], Extent); 4] = [
        (b"0 0 0\n", Extent::new(0, 0, 0)),
        (b"4294967294 0 2\n", Extent::new(4294967294, 0, 2)),
        (b"0 4294967294 2\n", Extent::new(0, 4294967294, 2)),
        (b"1 0 4294967295\n", Extent::new(1, 0, 4294967295)),
    ];
    for (text, e) in cases {
        assert_eq!(
            refused(&h, text, Errno::EINVAL),
            ext_err(1, Some(e), ExtentRule::ZeroOrWrap)
        );
    }
    // The largest extent: the whole space but 4294967295.
    assert_eq!(
        accepted(&h, b"0 0 4294967295\n"),
        [Extent::new(0, 0, 4294967295)]
    );
    assert_eq!(
        accepted(&h, b"4294967294 4294967294 1\n"),
        [Extent::new(4294967294, 4294967294, 1)]
    );
}

#[test]
fn w5_3_overlap_upper_then_lower() {
    let h = host(IdKind::Uid);
    let e = Extent::new(5, 100, 1);
    assert_eq!(
        refused(&h, b"0 0 10\n5 100 1\n", Errno::EINVAL),
        ext_err(
            2,
            Some(e),
            ExtentRule::Overlap {
                with: 0,
                lower: false
            }
        )
    );
    let e = Extent::new(100, 9, 1);
    assert_eq!(
        refused(&h, b"0 0 10\n100 9 1\n", Errno::EINVAL),
        ext_err(
            2,
            Some(e),
            ExtentRule::Overlap {
                with: 0,
                lower: true
            }
        )
    );
    // Both overlap: the upper range is reported.
    let e = Extent::new(3, 3, 1);
    assert_eq!(
        refused(&h, b"0 0 10\n3 3 1\n", Errno::EINVAL),
        ext_err(
            2,
            Some(e),
            ExtentRule::Overlap {
                with: 0,
                lower: false
            }
        )
    );
    // The first earlier extent it overlaps is named.
    let e = Extent::new(15, 500, 10);
    assert_eq!(
        refused(
            &h,
            b"0 0 10\n20 100 10\n10 200 10\n15 500 10\n",
            Errno::EINVAL
        ),
        ext_err(
            4,
            Some(e),
            ExtentRule::Overlap {
                with: 1,
                lower: false
            }
        )
    );
    // Adjacent is fine.
    assert_eq!(accepted(&h, b"0 0 10\n10 10 10\n").len(), 2);
}

fn lines(n: u32) -> String {
    (0..n).map(|i| format!("{} {} 1\n", i, i)).collect()
}

#[test]
fn w5_4_at_most_340_lines() {
    let h = host(IdKind::Uid);
    assert_eq!(accepted(&h, lines(340).as_bytes()).len(), 340);
    assert_eq!(
        refused(&h, lines(341).as_bytes(), Errno::EINVAL),
        ext_err(341, None, ExtentRule::TooMany)
    );
    // Any 341st line, even an empty one, is refused at the 340th.
    let text = lines(340) + "\n";
    assert_eq!(
        refused(&h, text.as_bytes(), Errno::EINVAL),
        ext_err(341, None, ExtentRule::TooMany)
    );
    // The 340th extent is still checked for overlap first.
    let text = lines(339) + "0 1000 1\nx";
    let e = Extent::new(0, 1000, 1);
    assert_eq!(
        refused(&h, text.as_bytes(), Errno::EINVAL),
        ext_err(
            340,
            Some(e),
            ExtentRule::Overlap {
                with: 0,
                lower: false
            }
        )
    );
}

#[test]
fn w5_zero_extents_is_unreachable_through_the_parser_but_a_rule_of_idmap() {
    assert_eq!(
        parse_write(b"").unwrap_err(),
        parse_err(1, 1, ParseRule::EmptyLine)
    );
    let e = IdMap::new(Vec::new()).unwrap_err();
    assert_eq!(
        e,
        credns_idmap::Error::Extent {
            index: 0,
            extent: None,
            rule: ExtentRule::Empty
        }
    );
    assert_eq!(e.to_string(), "extent 1: a map needs at least one extent");
}

#[test]
fn w5_parse_errors_come_before_permission_errors() {
    let ctx = unprivileged(IdKind::Uid);
    assert_eq!(
        refused(&ctx, b"0 1000 1\n0 1001 1\n", Errno::EINVAL),
        ext_err(
            2,
            Some(Extent::new(0, 1001, 1)),
            ExtentRule::Overlap {
                with: 0,
                lower: false
            }
        )
    );
}

// ---- W6a: verify_root_map ----------------------------------------------------------------------

#[test]
fn w6a_mapping_parent_root_needs_setfcap_over_the_parent() {
    let ctx = WriteContext {
        opener_cap_setfcap_in_parent: false,
        ..host(IdKind::Uid)
    };
    assert_eq!(
        refused(&ctx, b"0 0 1\n", Errno::EPERM),
        WriteRule::RootMapNeedsSetfcap {
            own_namespace: false
        }
    );
    // Any extent whose lower range starts at 0, not only the first.
    assert_eq!(
        refused(&ctx, b"0 1000 1\n1 0 1\n", Errno::EPERM),
        WriteRule::RootMapNeedsSetfcap {
            own_namespace: false
        }
    );
    // A lower range that merely contains 0 without starting there is not checked (as written).
    // (It cannot exist: a range containing 0 starts at 0.) Without parent id 0 it is fine:
    assert_eq!(accepted(&ctx, b"0 1 1\n").len(), 1);
}

#[test]
fn w6a_own_namespace_needs_the_creator_to_have_had_setfcap() {
    let ctx = WriteContext {
        opener_ns: OpenerNs::Target,
        parent_could_setfcap: false,
        ..host(IdKind::Uid)
    };
    assert_eq!(
        refused(&ctx, b"0 0 1\n", Errno::EPERM),
        WriteRule::RootMapNeedsSetfcap {
            own_namespace: true
        }
    );
    // The opener's own CAP_SETFCAP does not matter then.
    let ctx = WriteContext {
        opener_cap_setfcap_in_parent: false,
        parent_could_setfcap: true,
        ..ctx
    };
    assert!(judge_write(&ctx, b"0 0 1\n").is_ok());
}

#[test]
fn w6a_only_uid_maps() {
    for kind in [IdKind::Gid, IdKind::Projid] {
        let ctx = WriteContext {
            opener_cap_setfcap_in_parent: false,
            parent_could_setfcap: false,
            ..host(kind)
        };
        assert_eq!(accepted(&ctx, b"0 0 1\n"), [Extent::new(0, 0, 1)]);
    }
}

// ---- W6b: the unprivileged single-id case ------------------------------------------------------

#[test]
fn w6b_own_uid_is_allowed_without_capabilities() {
    assert_eq!(
        accepted(&unprivileged(IdKind::Uid), b"0 1000 1\n"),
        [Extent::new(0, 1000, 1)]
    );
    // From inside the namespace too.
    let ctx = WriteContext {
        opener_ns: OpenerNs::Target,
        ..unprivileged(IdKind::Uid)
    };
    assert_eq!(accepted(&ctx, b"0 1000 1\n"), [Extent::new(0, 1000, 1)]);
}

#[test]
fn w6b_the_parent_id_is_translated_through_the_parent_map() {
    // Parent maps its 0 to kernel 1000: writing parent id 0 is the opener's own kuid.
    let parent = IdMap::new(vec![Extent::new(0, 1000, 1)]).unwrap();
    let ctx = WriteContext {
        parent_map: parent,
        parent_could_setfcap: true,
        opener_cap_setfcap_in_parent: true,
        ..unprivileged(IdKind::Uid)
    };
    let a = judge_write(&ctx, b"5 0 1\n").unwrap();
    assert_eq!(a.written.extents(), [Extent::new(5, 0, 1)]);
    assert_eq!(a.kernel.extents(), [Extent::new(5, 1000, 1)]);
}

fn not_permitted(cap: &'static str, why: &'static str) -> WriteRule {
    WriteRule::NotPermitted {
        cap,
        unprivileged_case: why,
    }
}

#[test]
fn w6b_each_reason_the_unprivileged_case_does_not_apply() {
    let u = unprivileged(IdKind::Uid);
    assert_eq!(
        refused(&u, b"0 1000 1\n1 1001 1\n", Errno::EPERM),
        not_permitted("CAP_SETUID", "more than one extent")
    );
    assert_eq!(
        refused(&u, b"0 1000 2\n", Errno::EPERM),
        not_permitted("CAP_SETUID", "the extent maps more than one id")
    );
    let other_owner = WriteContext {
        owner: Kuid(2000),
        ..unprivileged(IdKind::Uid)
    };
    assert_eq!(
        refused(&other_owner, b"0 1000 1\n", Errno::EPERM),
        not_permitted(
            "CAP_SETUID",
            "the opener's euid is not the namespace's owner"
        )
    );
    assert_eq!(
        refused(&u, b"0 1001 1\n", Errno::EPERM),
        not_permitted(
            "CAP_SETUID",
            "the mapped parent id is not the opener's euid"
        )
    );
}

#[test]
fn w6b_gid_needs_setgroups_denied_and_own_egid() {
    let g = unprivileged(IdKind::Gid);
    assert_eq!(
        refused(&g, b"0 1000 1\n", Errno::EPERM),
        not_permitted("CAP_SETGID", "setgroups is not denied")
    );
    let deny = WriteContext {
        setgroups_allowed: false,
        ..unprivileged(IdKind::Gid)
    };
    assert_eq!(accepted(&deny, b"0 1000 1\n"), [Extent::new(0, 1000, 1)]);
    assert_eq!(
        refused(&deny, b"0 1001 1\n", Errno::EPERM),
        not_permitted(
            "CAP_SETGID",
            "the mapped parent id is not the opener's egid"
        )
    );
    // The gid rule compares with the egid, not the euid.
    let deny = WriteContext {
        opener_egid: Kgid(5),
        ..deny
    };
    assert_eq!(accepted(&deny, b"0 5 1\n"), [Extent::new(0, 5, 1)]);
}

// ---- W6c: projid -------------------------------------------------------------------------------

#[test]
fn w6c_projid_maps_need_no_privilege() {
    let p = WriteContext {
        owner: Kuid(4242),
        ..unprivileged(IdKind::Projid)
    };
    assert_eq!(accepted(&p, b"0 0 10\n10 100 10\n").len(), 2);
}

// ---- W6d: CAP_SETUID / CAP_SETGID in the parent for writer and opener ----------------------------

#[test]
fn w6d_writer_and_opener_both_need_the_capability() {
    for (kind, cap) in [(IdKind::Uid, "CAP_SETUID"), (IdKind::Gid, "CAP_SETGID")] {
        let only_writer = WriteContext {
            writer_cap_setid_in_parent: true,
            ..unprivileged(kind)
        };
        assert_eq!(
            refused(&only_writer, b"0 1 10\n", Errno::EPERM),
            not_permitted(cap, "the extent maps more than one id")
        );
        let only_opener = WriteContext {
            opener_cap_setid_in_parent: true,
            ..unprivileged(kind)
        };
        assert_eq!(
            refused(&only_opener, b"0 1 10\n", Errno::EPERM),
            not_permitted(cap, "the extent maps more than one id")
        );
        let both = WriteContext {
            opener_cap_setid_in_parent: true,
            ..only_writer
        };
        assert_eq!(accepted(&both, b"0 1 10\n"), [Extent::new(0, 1, 10)]);
    }
}

#[test]
fn w6_setfcap_is_checked_before_setid() {
    let ctx = WriteContext {
        writer_cap_setid_in_parent: false,
        opener_cap_setfcap_in_parent: false,
        ..host(IdKind::Uid)
    };
    assert_eq!(
        refused(&ctx, b"0 0 10\n", Errno::EPERM),
        WriteRule::RootMapNeedsSetfcap {
            own_namespace: false
        }
    );
}

// ---- W7: translation through the parent map ------------------------------------------------------

#[test]
fn w7_lower_range_must_lie_in_one_parent_extent() {
    let parent = IdMap::new(vec![
        Extent::new(0, 100000, 10),
        Extent::new(10, 200000, 10),
    ])
    .unwrap();
    let ctx = WriteContext {
        parent_map: parent,
        ..host(IdKind::Uid)
    };
    // Straddles the two (adjacent) parent extents.
    assert_eq!(
        refused(&ctx, b"0 5 10\n", Errno::EPERM),
        WriteRule::NotMappedInParent {
            line: 1,
            extent: Extent::new(0, 5, 10)
        }
    );
    // Leaves the parent's ids.
    assert_eq!(
        refused(&ctx, b"0 0 5\n5 15 6\n", Errno::EPERM),
        WriteRule::NotMappedInParent {
            line: 2,
            extent: Extent::new(5, 15, 6)
        }
    );
    let a = judge_write(&ctx, b"0 10 10\n10 0 10\n").unwrap();
    assert_eq!(
        a.kernel.extents(),
        [Extent::new(0, 200000, 10), Extent::new(10, 100000, 10)]
    );
}

#[test]
fn w7_comes_after_permission() {
    let parent = IdMap::new(vec![Extent::new(0, 1000, 1)]).unwrap();
    let ctx = WriteContext {
        parent_map: parent,
        ..unprivileged(IdKind::Uid)
    };
    assert_eq!(
        refused(&ctx, b"0 1 5\n", Errno::EPERM),
        not_permitted("CAP_SETUID", "the extent maps more than one id")
    );
}

// ---- messages and metadata ---------------------------------------------------------------------

#[test]
fn write_rule_messages() {
    let h = host(IdKind::Uid);
    // The message, and where it points (line, column) as `WriteRule::position` gives it.
    let msg = |ctx: &WriteContext, t: &[u8]| {
        let r = judge_write(ctx, t).unwrap_err();
        (r.to_string(), r.position())
    };
    assert_eq!(
        msg(&h, b"0 0 1x"),
        (
            "unexpected text after the third number".into(),
            Some((1, Some(6)))
        )
    );
    assert_eq!(
        msg(&h, b"0 0"),
        (
            "the line ends after two numbers: the count is missing (an extent is FIRST LOWER-FIRST COUNT)".into(),
            Some((1, Some(4)))
        )
    );
    assert_eq!(
        msg(&h, b"0 0 1\n\n"),
        (
            "empty line (only one trailing newline is allowed)".into(),
            Some((2, Some(1)))
        )
    );
    assert_eq!(
        msg(&h, b"0 0 10\n5 100 1"),
        (
            "extent \"5 100 1\": its upper (namespace) range overlaps extent 1".into(),
            Some((2, None))
        )
    );
    assert_eq!(
        msg(&h, b"0 0 0"),
        (
            "extent \"0 0 0\": count is zero or the range wraps past 4294967295".into(),
            Some((1, None))
        )
    );
    assert_eq!(
        msg(&h, b"4294967295 0 1"),
        (
            "extent \"4294967295 0 1\": 4294967295 is reserved and cannot start an extent".into(),
            Some((1, None))
        )
    );
    assert_eq!(
        msg(&h, lines(341).as_bytes()),
        ("a map holds at most 340 extents".into(), Some((341, None)))
    );
    assert_eq!(
        msg(
            &WriteContext {
                offset: 3,
                ..host(IdKind::Uid)
            },
            b""
        ),
        ("maps must be written at offset 0".into(), None)
    );
    assert_eq!(
        msg(&h, &[b' '; 4096]),
        (
            "the write is 4096 bytes; it must be under 4096".into(),
            None
        )
    );
    assert_eq!(
        msg(&unprivileged(IdKind::Gid), b"0 1000 1"),
        (
            "writer and opener both need CAP_SETGID in the parent namespace (the unprivileged case does not apply: setgroups is not denied)".into(),
            None
        )
    );
    let parent = IdMap::new(vec![Extent::new(0, 100000, 10)]).unwrap();
    assert_eq!(
        msg(
            &WriteContext {
                parent_map: parent,
                ..host(IdKind::Uid)
            },
            b"0 5 10"
        ),
        (
            "lower range 5..=14 of extent \"0 5 10\" is not inside one extent of the parent's map"
                .into(),
            Some((1, None))
        )
    );
}

#[test]
fn kernel_functions() {
    assert_eq!(
        WriteRule::InitNamespace.kernel_function(),
        "proc_uid_map_write"
    );
    assert_eq!(
        WriteRule::RootMapNeedsSetfcap {
            own_namespace: true
        }
        .kernel_function(),
        "verify_root_map"
    );
    assert_eq!(
        not_permitted("CAP_SETUID", "x").kernel_function(),
        "new_idmap_permitted"
    );
    assert_eq!(WriteRule::AlreadyWritten.kernel_function(), "map_write");
    assert_eq!(Errno::from_code(22), Some(Errno::EINVAL));
    assert_eq!(Errno::from_code(13), Some(Errno::EACCES));
    assert_eq!(Errno::from_code(4), None);
}

// ---- format error texts ------------------------------------------------------------------------

#[test]
fn proc_errors() {
    let err = |t: &str| {
        parse_proc_map(t, "/proc/42/uid_map")
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("         0 4294967295          1\n"),
        "/proc/42/uid_map:1:12: lower id 4294967295: this extent's lower ids are not visible from the reader's namespace"
    );
    assert_eq!(
        err("0 0 1\n0 1 2 3"),
        "/proc/42/uid_map:2:7: expected 3 fields (first id, lower id, count), found 4"
    );
    assert_eq!(
        err("0 0 1\n\n5 x 1\n"),
        "/proc/42/uid_map:3:3: lower id must be a decimal number, found \"x\""
    );
    assert_eq!(
        err("0 0 1\n  +5 7 1"),
        "/proc/42/uid_map:2:3: first id must be a decimal number, found \"+5\""
    );
    assert_eq!(
        err("0 0 99999999999"),
        "/proc/42/uid_map:1:5: count 99999999999 is larger than 4294967295"
    );
    assert_eq!(
        err("0 0 10\n5 100 1"),
        "/proc/42/uid_map:2:1: extent \"5 100 1\": its upper (namespace) range overlaps extent 1"
    );
    assert_eq!(
        err("0 0 10\n100 9 1"),
        "/proc/42/uid_map:2:1: extent \"100 9 1\": its lower (parent) range overlaps extent 1"
    );
    assert_eq!(
        err("4294967295 0 1"),
        "/proc/42/uid_map:1:1: extent \"4294967295 0 1\": 4294967295 is reserved and cannot start an extent"
    );
    assert_eq!(
        err(&lines(341)),
        "/proc/42/uid_map:341:1: a map holds at most 340 extents"
    );
}

#[test]
fn subid_errors() {
    let err = |t: &str| SubidFile::parse(t, "/etc/subuid").unwrap_err().to_string();
    assert_eq!(
        err("alice:100000\n"),
        "/etc/subuid:1:13: expected owner:start:count, found 2 fields"
    );
    assert_eq!(
        err("alice\n"),
        "/etc/subuid:1:6: expected owner:start:count, found 1 field"
    );
    assert_eq!(
        err("ok:1:1\nalice:1:2:3\n"),
        "/etc/subuid:2:10: expected owner:start:count, found 4 fields (shadow ignores the rest)"
    );
    assert_eq!(err(":1:2\n"), "/etc/subuid:1:1: owner is empty");
    assert_eq!(
        err("+alice:1:2\n"),
        "/etc/subuid:1:1: owner starts with '+' or '-': shadow takes the line for a NIS entry and ignores it"
    );
    assert_eq!(
        err("al ice:1:2\n"),
        "/etc/subuid:1:3: owner \"al ice\" contains whitespace"
    );
    assert_eq!(err("alice::2\n"), "/etc/subuid:1:7: start is empty");
    assert_eq!(err("alice:1:\n"), "/etc/subuid:1:9: count is empty");
    assert_eq!(
        err("alice:1x:2\n"),
        "/etc/subuid:1:8: start must be a decimal number, found \"1x\""
    );
    assert_eq!(
        err("alice:-1:2\n"),
        "/etc/subuid:1:7: start must be a decimal number, found \"-1\""
    );
    assert_eq!(
        err("alice: 1:2\n"),
        "/etc/subuid:1:7: start \" 1\" contains whitespace: write plain decimal digits"
    );
    assert_eq!(
        err("alice:0x186a0:2\n"),
        "/etc/subuid:1:8: start \"0x186a0\" is hexadecimal: shadow reads it, but write it in decimal"
    );
    assert_eq!(
        err("alice:1:065536\n"),
        "/etc/subuid:1:9: count 065536 has a leading zero: shadow reads it as octal; write it in decimal"
    );
    assert_eq!(
        err("alice:4294967296:1\n"),
        "/etc/subuid:1:7: start 4294967296 is larger than 4294967295"
    );
    assert_eq!(
        err("alice:1:0\n"),
        "/etc/subuid:1:9: count is 0: the range is empty"
    );
    assert_eq!(
        err("alice:4294967295:2\n"),
        "/etc/subuid:1:18: range 4294967295+2 wraps past 4294967295"
    );
    assert_eq!(
        err("alice:1:2\r\n"),
        "/etc/subuid:1:10: carriage return at the end of the line (DOS line ending): shadow ignores this line"
    );
    let long = format!("alice:1:{}\n", "1".repeat(1100));
    assert_eq!(
        err(&long),
        "/etc/subuid:1:1024: line is 1108 bytes long: shadow ignores lines of 1024 bytes or more"
    );
}

#[test]
fn oci_errors() {
    let cfg = |t: &str| parse_oci_config(t, "config.json").unwrap_err().to_string();
    assert_eq!(
        cfg("{\"linux\": "),
        "config.json:1:10: invalid JSON: EOF while parsing a value"
    );
    assert_eq!(
        cfg("[1]"),
        "config.json:1:1: (root): expected a config object, found an array"
    );
    assert_eq!(
        cfg(r#"{"linux": 5}"#),
        "config.json:1:11: linux: expected an object, found 5"
    );
    assert_eq!(
        cfg(r#"{"linux": {"uidMappings": {}}}"#),
        "config.json:1:27: linux.uidMappings: expected an array of mappings, found an object"
    );
    assert_eq!(
        cfg(r#"{"linux": {"gidMappings": [7]}}"#),
        "config.json:1:28: linux.gidMappings[0]: expected a mapping object, found 7"
    );
    let text = "{\n  \"linux\": {\n    \"uidMappings\": [\n      {\"containerID\": 0, \"hostID\": 1000, \"size\": 1},\n      {\"containerID\": 1, \"hostID\": 100000}\n    ]\n  }\n}\n";
    assert_eq!(
        cfg(text),
        "config.json:5:7: linux.uidMappings[1]: missing required field \"size\""
    );
    let text = text.replace(
        "\"hostID\": 100000}",
        "\"hostID\": 100000, \"size\": \"65536\"}",
    );
    assert_eq!(cfg(&text), "config.json:5:52: linux.uidMappings[1].size: expected an unsigned 32-bit integer, found a string");
    assert_eq!(
        cfg(r#"{"linux": {"uidMappings": [{"containerID": 4294967296, "hostID": 0, "size": 1}]}}"#),
        "config.json:1:44: linux.uidMappings[0].containerID: expected an unsigned 32-bit integer, found 4294967296"
    );
    assert_eq!(
        cfg(r#"{"linux": {"uidMappings": [{"containerID": 0, "hostID": 0, "size": 1.5}]}}"#),
        "config.json:1:68: linux.uidMappings[0].size: expected an unsigned 32-bit integer, found 1.5"
    );
    assert_eq!(
        cfg(r#"{"linux": {"uidMappings": [{"containerID": 0, "hostID": 0, "size": 10}, {"containerID": 5, "hostID": 50, "size": 1}]}}"#),
        "config.json:1:73: linux.uidMappings[1]: extent \"5 50 1\": its upper (namespace) range overlaps extent 1"
    );
    assert_eq!(
        cfg(r#"{"linux": {"uidMappings": [{"containerID": 0, "hostID": 0, "size": 0}]}}"#),
        "config.json:1:28: linux.uidMappings[0]: extent \"0 0 0\": count is zero or the range wraps past 4294967295"
    );
    // From a Value there is no position.
    let v: serde_json::Value =
        serde_json::from_str(r#"{"linux": {"uidMappings": [{"hostID": 0, "size": 1}]}}"#).unwrap();
    assert_eq!(
        parse_oci_config_value(&v, "config.json")
            .unwrap_err()
            .to_string(),
        "config.json:0:0: linux.uidMappings[0]: missing required field \"containerID\""
    );
    // The array alone: paths start at the index.
    assert_eq!(
        parse_oci_mappings(
            r#"[{"containerID": 0, "hostID": -5, "size": 1}]"#,
            "mappings.json"
        )
        .unwrap_err()
        .to_string(),
        "mappings.json:1:31: [0].hostID: expected an unsigned 32-bit integer, found -5"
    );
    let mut not_obj = serde_json::json!([1]);
    assert_eq!(
        set_oci_mappings(&mut not_obj, Some(&IdMap::identity()), None)
            .unwrap_err()
            .to_string(),
        "config.json:0:0: (root): expected a config object, found an array"
    );
}

#[test]
fn map_users_errors() {
    let err = |a: &[&str]| MapUsers::parse(a, "--map-users").unwrap_err().to_string();
    assert_eq!(
        err(&["0:1000"]),
        "--map-users:1:7: expected inner:outer:count, found 2 fields"
    );
    assert_eq!(
        err(&["0:1:1", "0:1:2:3"]),
        "--map-users:2:6: expected inner:outer:count, found 4 fields"
    );
    assert_eq!(
        err(&["1000,0"]),
        "--map-users:1:7: expected outer,inner,count, found 2 fields"
    );
    assert_eq!(
        err(&["automatic"]),
        "--map-users:1:1: expected inner:outer:count, auto, subids or all, found \"automatic\""
    );
    assert_eq!(
        err(&["0:x:1"]),
        "--map-users:1:3: outer must be a decimal number, found \"x\""
    );
    assert_eq!(
        err(&["0: 1:1"]),
        "--map-users:1:3: outer must be a decimal number, found \" 1\""
    );
    assert_eq!(
        err(&["0:1:-1"]),
        "--map-users:1:5: count must be a decimal number, found \"-1\""
    );
    assert_eq!(
        err(&["1,x,1"]),
        "--map-users:1:3: inner must be a decimal number, found \"x\""
    );
    assert_eq!(
        err(&["0:4294967296:1"]),
        "--map-users:1:3: outer 4294967296 is larger than 4294967295"
    );
    assert_eq!(err(&["0::1"]), "--map-users:1:3: outer is empty");
    let m = MapUsers::parse(&["0:100000:65536", "10:1000:1"], "--map-users").unwrap();
    assert_eq!(
        m.to_idmap().unwrap_err().to_string(),
        "--map-users:2:1: extent \"10 1000 1\": its upper (namespace) range overlaps extent 1"
    );
    let m = MapUsers::parse(&["0:1000:1", "auto"], "--map-users").unwrap();
    assert_eq!(m.args[1], MapUsersArg::Auto);
    assert_eq!(
        m.to_idmap().unwrap_err().to_string(),
        "--map-users:2:1: auto needs /etc/subuid or /proc/self/uid_map: resolve it first"
    );
    let subuid = SubidFile::parse("bob:100000:65536\n", "/etc/subuid").unwrap();
    assert_eq!(
        m.resolve(&subuid, "/etc/subuid", "alice", 1000, None)
            .unwrap_err()
            .to_string(),
        "--map-users:2:1: auto: no line matching user \"alice\" (uid 1000) in /etc/subuid"
    );
    let m = MapUsers::parse(&["all"], "--map-users").unwrap();
    assert_eq!(
        m.resolve(&subuid, "/etc/subuid", "alice", 1000, None)
            .unwrap_err()
            .to_string(),
        "--map-users:1:1: all: needs the caller's own /proc/self/uid_map (or gid_map)"
    );
}
