//! Environment variables: every one the binary reads carries the prefix `RDO_`. The names
//! of earlier versions still work for a while: [`migrate`] copies each to its new name
//! before the flags are parsed, with a deprecation warning, and refuses a conflict.

/// Old name → new name, for every variable that was renamed.
pub const RENAMED: &[(&str, &str)] = &[
    ("LOG_FORMAT", "RDO_LOG_FORMAT"),
    ("METRICS_ADDR", "RDO_METRICS_ADDR"),
    ("POD_NAMESPACE", "RDO_POD_NAMESPACE"),
    ("LEASE_NAME", "RDO_LEASE_NAME"),
    ("POD_NAME", "RDO_POD_NAME"),
    ("RESYNC_SECONDS", "RDO_RESYNC_SECONDS"),
    ("API_TIMEOUT_SECONDS", "RDO_API_TIMEOUT_SECONDS"),
    ("NODE_NAME", "RDO_NODE_NAME"),
    ("OVSDB_ENDPOINT", "RDO_OVSDB_ENDPOINT"),
    ("OVS_BRIDGE", "RDO_OVS_BRIDGE"),
    ("OVS_RUNDIR", "RDO_OVS_RUNDIR"),
];

/// Old names that OVS's own tools read too (ovs-vsctl, ovs-ofctl): set beside the new
/// name, such a variable may rightly differ (it is meant for those tools), so the new
/// name wins without complaint. The agent itself never needs it: it hands ovs-ofctl the
/// socket path explicitly.
const SHARED_WITH_OVS: &[&str] = &["OVS_RUNDIR"];

/// What [`migrate`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migration {
    /// Variables to set (new name, value taken from the old name).
    pub set: Vec<(String, String)>,
    /// One deprecation warning per old name in use.
    pub warnings: Vec<String>,
}

/// Maps the old names in `env` to the new ones (pure). Empty values count as unset, as
/// they do for the flags. `Err` lists every old name whose value differs from the new one.
pub fn migrate(env: &[(String, String)]) -> Result<Migration, String> {
    let get = |name: &str| {
        env.iter()
            .rev()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let mut out = Migration::default();
    let mut conflicts = Vec::new();
    for (old, new) in RENAMED {
        let Some(old_value) = get(old) else { continue };
        match get(new) {
            None => {
                out.set.push((new.to_string(), old_value.to_string()));
                out.warnings.push(format!(
                    "environment variable {old} is deprecated and will stop working in a later version; set {new} instead"
                ));
            }
            Some(_) if SHARED_WITH_OVS.contains(old) => {}
            Some(v) if v == old_value => out.warnings.push(format!(
                "environment variable {old} is deprecated and ignored; {new} is set to the same value, unset {old}"
            )),
            Some(v) => conflicts.push(format!(
                "{old}={old_value:?} (deprecated) and {new}={v:?} disagree; unset {old}"
            )),
        }
    }
    if conflicts.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "conflicting environment variables: {}",
            conflicts.join("; ")
        ))
    }
}

/// Whether a subcommand reads environment variables (`plan` and `crd` read none, so old
/// names lying around must neither warn nor fail there).
pub fn reads_env(subcommand: Option<&str>) -> bool {
    matches!(subcommand, Some("controller" | "agent" | "standalone"))
}

/// The shell around [`migrate`] for this process: copies old names to new ones and
/// returns the warnings, to be logged once logging is up.
///
/// Must run before any other thread exists (first thing in `main`): setting variables
/// races with threads reading them.
pub fn apply_to_process() -> Result<Vec<String>, String> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(n, v)| Some((n.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let migration = migrate(&env)?;
    for (name, value) in &migration.set {
        // SAFETY: called from `main` before the runtime or any thread is started.
        unsafe { std::env::set_var(name, value) };
    }
    Ok(migration.warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn old_names_map_to_new_ones_and_conflicts_are_refused() {
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Result<&'a [(&'a str, &'a str)], &'a str>,
            usize,
        );
        let cases: &[Case] = &[
            // Nothing old: nothing to do.
            (&[("RDO_NODE_NAME", "n1"), ("PATH", "/bin")], Ok(&[]), 0),
            // Old only: copied, with a warning.
            (&[("NODE_NAME", "n1")], Ok(&[("RDO_NODE_NAME", "n1")]), 1),
            (
                &[("POD_NAME", "p"), ("LOG_FORMAT", "json")],
                Ok(&[("RDO_LOG_FORMAT", "json"), ("RDO_POD_NAME", "p")]),
                2,
            ),
            // Both, the same: nothing to copy, still a warning.
            (&[("OVS_BRIDGE", "b"), ("RDO_OVS_BRIDGE", "b")], Ok(&[]), 1),
            // Both, different: refused.
            (
                &[("OVS_BRIDGE", "a"), ("RDO_OVS_BRIDGE", "b")],
                Err("OVS_BRIDGE=\"a\" (deprecated) and RDO_OVS_BRIDGE=\"b\" disagree"),
                0,
            ),
            // Empty counts as unset, on either side.
            (&[("NODE_NAME", ""), ("RDO_NODE_NAME", "n1")], Ok(&[]), 0),
            (
                &[("NODE_NAME", "n1"), ("RDO_NODE_NAME", "")],
                Ok(&[("RDO_NODE_NAME", "n1")]),
                1,
            ),
            // OVS_RUNDIR is OVS's own too: alone it still works, beside the new name it is
            // left to OVS's tools.
            (
                &[("OVS_RUNDIR", "/run/ovs")],
                Ok(&[("RDO_OVS_RUNDIR", "/run/ovs")]),
                1,
            ),
            (
                &[("OVS_RUNDIR", "/tmp/x"), ("RDO_OVS_RUNDIR", "/run/ovs")],
                Ok(&[]),
                0,
            ),
        ];
        for (input, want, warnings) in cases {
            let got = migrate(&env(input));
            match (want, &got) {
                (Ok(set), Ok(m)) => {
                    assert_eq!(m.set, env(set), "{input:?}");
                    assert_eq!(m.warnings.len(), *warnings, "{input:?}: {:?}", m.warnings);
                }
                (Err(needle), Err(e)) => assert!(e.contains(needle), "{input:?}: {e}"),
                _ => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn every_conflict_is_named_and_warnings_name_both() {
        let e = migrate(&env(&[
            ("NODE_NAME", "a"),
            ("RDO_NODE_NAME", "b"),
            ("POD_NAME", "c"),
            ("RDO_POD_NAME", "d"),
        ]))
        .unwrap_err();
        assert!(e.contains("NODE_NAME=") && e.contains("POD_NAME="), "{e}");
        let m = migrate(&env(&[("METRICS_ADDR", "[::]:9090")])).unwrap();
        assert!(
            m.warnings[0].contains("METRICS_ADDR is deprecated")
                && m.warnings[0].contains("set RDO_METRICS_ADDR"),
            "{:?}",
            m.warnings
        );
    }

    #[test]
    fn only_the_components_read_the_environment() {
        for (sub, want) in [
            (Some("controller"), true),
            (Some("agent"), true),
            (Some("standalone"), true),
            (Some("plan"), false),
            (Some("crd"), false),
            (Some("--help"), false),
            (None, false),
        ] {
            assert_eq!(reads_env(sub), want, "{sub:?}");
        }
    }
}
