//! Small helpers around the OVS sandbox shared by the flow tests.

use std::time::{Duration, Instant};

use super::sandbox::Sandbox;

/// Waits until vswitchd has numbered `iface` and returns its ofport.
pub fn wait_ofport(sb: &Sandbox, iface: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = sb.vsctl(&["get", "Interface", iface, "ofport"]).unwrap();
        if let Ok(p) = out.trim().parse::<i64>()
            && p > 0
        {
            return p;
        }
        assert!(Instant::now() < deadline, "no ofport for {iface}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
