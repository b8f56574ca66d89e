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

/// The sources the first line configuring `db` lists (`["files", "systemd"]` of
/// `passwd: files [NOTFOUND=return] systemd`), without the bracketed actions; `files` when no
/// line configures it (glibc's default for the user and group databases).
pub fn sources(text: &str, db: &str) -> Vec<String> {
    let Some(line) = text.lines().find(|l| database(l) == Some(db)) else {
        return vec!["files".into()];
    };
    let code = line.split('#').next().unwrap_or("");
    let list = code.split_once(':').map_or("", |x| x.1);
    let mut plain = String::with_capacity(list.len());
    let mut depth = 0usize;
    for c in list.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    plain.split_whitespace().map(str::to_string).collect()
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

    #[test]
    fn sources_without_actions_and_comments() {
        let conf = "# x\npasswd:   files systemd [ NOTFOUND = return ] sss # tail\ngroup: files\n";
        assert_eq!(sources(conf, "passwd"), ["files", "systemd", "sss"]);
        assert_eq!(sources(conf, "group"), ["files"]);
        assert_eq!(sources("", "passwd"), ["files"]);
        assert_eq!(sources("passwd: a\npasswd: b\n", "passwd"), ["a"]);
    }

    proptest! {
        #[test]
        fn sources_are_words_of_the_databases_line(t in nsswitch()) {
            for db in ["passwd", "subid"] {
                let s = sources(&t, db);
                let line = t.lines().find(|l| database(l) == Some(db));
                if line.is_none() {
                    prop_assert_eq!(s, vec!["files".to_string()]);
                    continue;
                }
                for w in &s {
                    prop_assert!(!w.is_empty() && !w.contains(['[', ']', '#', ' ']));
                    prop_assert!(line.unwrap().contains(w.as_str()));
                }
            }
        }

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
