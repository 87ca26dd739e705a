//! How a request to the API server failed: the classification that retry decisions
//! (pause, stop the pass, end a pause at the next event) are made on, and that metrics
//! label failures with. It lives here, not in telemetry, so no decision depends on how
//! things are reported.

/// Why a reconcile (or one of its writes) failed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ErrorKind {
    /// HTTP 409: someone else changed the object (optimistic concurrency, preconditions).
    Conflict,
    /// HTTP 5xx or 429: the API server could not serve us now.
    Server,
    /// Any other API answer (4xx): our request was refused.
    Client,
    /// No answer in time.
    Timeout,
    /// Connection, decoding or OVS trouble.
    Other,
}

impl ErrorKind {
    /// Kind of a Kubernetes client error, for metrics and retry decisions.
    pub fn of(error: &kube::Error) -> Self {
        match error {
            kube::Error::Api(status) if status.code == 409 => ErrorKind::Conflict,
            kube::Error::Api(status) if status.code == 429 || status.code >= 500 => {
                ErrorKind::Server
            }
            kube::Error::Api(_) => ErrorKind::Client,
            _ => ErrorKind::Other,
        }
    }
}
