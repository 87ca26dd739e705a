//! Admission on a real kube-apiserver: the CRDs from `crds/` are accepted as they are.

mod support;

use support::envtest::{ControlPlane, Options, install_crds};

#[tokio::test]
async fn the_crds_are_accepted_as_they_are() {
    let Some(cp) = ControlPlane::start(Options::default()).await else {
        return;
    };
    let admin = cp.admin().await;
    install_crds(&admin).await;
}
