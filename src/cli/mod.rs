//! Subcommands that are not long-running components: `plan` and `crd`, and the
//! `kubectl get`-style table they share with `standalone`.

pub mod plan_command;
pub mod table;
