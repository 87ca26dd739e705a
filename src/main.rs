//! The `remote-device-operator` binary: one subcommand per component.

fn main() {
    print!("{}", remote_device_operator::crd::all_yaml());
}
