//! `/etc/nsswitch.conf`, as far as credns changes it: the `subid:` line that makes libsubid
//! (newuidmap, getsubids, podman) ask a provider module instead of /etc/subuid and /etc/subgid.

/// The database name a line of nsswitch.conf configures, if it configures one (`subid` of
/// `subid: files`); comments and blank lines configure none.
pub fn database(line: &str) -> Option<&str> {
    let code = line.split('#').next().unwrap_or("");
    let (db, _) = code.split_once(':')?;
    let db = db.trim();
    (!db.is_empty() && !db.contains(char::is_whitespace)).then_some(db)
}

/// nsswitch.conf's `text` with its `subid:` line set to `module` (replacing any other, as
/// libsubid takes one module), or with a `subid: credns` line removed (`None`). Other lines
/// are kept as they are; applying the same change twice changes nothing the second time.
pub fn with_subid(text: &str, module: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len() + 24);
    let mut set = false;
    for line in text.split_inclusive('\n') {
        if database(line) != Some("subid") {
            out.push_str(line);
            continue;
        }
        let value = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_once(':')
            .map(|x| x.1.trim());
        match module {
            Some(m) if !set => {
                out.push_str(&format!("subid:          {m}\n"));
                set = true;
            }
            // libsubid reads the first subid line: later ones are dropped with it.
            Some(_) => {}
            None if value == Some("credns") => {}
            None => out.push_str(line),
        }
    }
    if let (Some(m), false) = (module, set) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("subid:          {m}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEBIAN: &str = "passwd:         files systemd\ngroup:          files systemd\n# subid: files\nhosts:          files dns\n";

    #[test]
    fn the_line_is_added_once_and_removed_again() {
        let added = with_subid(DEBIAN, Some("credns"));
        assert_eq!(added, format!("{DEBIAN}subid:          credns\n"));
        assert_eq!(with_subid(&added, Some("credns")), added);
        assert_eq!(with_subid(&added, None), DEBIAN);
        assert_eq!(with_subid(DEBIAN, None), DEBIAN);
    }

    #[test]
    fn another_module_is_replaced_and_a_missing_newline_kept_apart() {
        let t = "subid: sss # comment\nhosts: files";
        assert_eq!(
            with_subid(t, Some("credns")),
            "subid:          credns\nhosts: files"
        );
        assert_eq!(
            with_subid("hosts: files", Some("credns")),
            "hosts: files\nsubid:          credns\n"
        );
        // Removing leaves another module's line alone.
        assert_eq!(with_subid("subid: sss\n", None), "subid: sss\n");
    }

    fn nsswitch() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            Just("passwd: files\n".to_string()),
            Just("subid: files\n".to_string()),
            Just("subid:credns\n".to_string()),
            Just("  subid :  sss  # x\n".to_string()),
            Just("# subid: credns\n".to_string()),
            Just("\n".to_string()),
            "[a-z: #]{0,12}\n",
        ];
        proptest::collection::vec(line, 0..8).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn setting_is_idempotent_and_leaves_one_active_line(t in nsswitch()) {
            let once = with_subid(&t, Some("credns"));
            prop_assert_eq!(with_subid(&once, Some("credns")), once.clone());
            let active: Vec<&str> = once.lines().filter(|l| database(l) == Some("subid")).collect();
            prop_assert_eq!(active, vec!["subid:          credns"]);
            let removed = with_subid(&once, None);
            prop_assert!(removed.lines().all(|l| database(l) != Some("subid")));
            prop_assert_eq!(with_subid(&removed, None), removed.clone());
        }
    }
}
