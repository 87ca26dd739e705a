//! The project's own OVSDB client (RFC 7047 and the `ovsdb-server(7)` extensions), on tokio.
//!
//! # Why not the `ovsdb-client` crate
//! `ovsdb-client` 0.0.1 was measured against ovsdb-server 3.1 and is unfit for an agent
//! that must run for months: it breaks when two replies arrive in one read, ends the
//! session on any JSON-RPC error, never answers the server's `echo` (so ovsdb-server drops
//! TCP sessions after ~10 s of idleness) and drops monitor updates beyond 1024 queued.
//! This module is small and each of those behaviours is tested here.
//!
//! # Layers
//! - [`codec`]: incremental framing of the JSON stream (several messages per read, one
//!   message over many reads, brackets and escapes inside strings).
//! - [`ops`]: typed data (atoms, sets, maps, UUIDs, named UUIDs) and the `transact`
//!   operations `insert`, `select`, `update`, `mutate`, `delete`, `wait`, `comment`.
//! - [`client`]: one session: endpoints spelled like `ovs-vsctl --db` (`unix:PATH`,
//!   `tcp:HOST:PORT`, `ssl:HOST:PORT` via [`tls`]), concurrent requests matched by id, RPC errors returned as errors
//!   with the session kept, `echo` answered, keepalive probes on TCP, a disconnect signal
//!   ([`Client::closed`]) and [`OvsdbError::OutcomeUnknown`] for a transaction whose reply
//!   was lost.
//! - [`monitor`]: `monitor_cond`/`update2` (falling back to `monitor`/`update`) applied to
//!   a local [`Replica`].
//! - [`session`]: reconnect with backoff and a full resync of the replica after each
//!   reconnect.

pub mod client;
pub mod codec;
pub mod monitor;
pub mod ops;
pub mod session;
pub mod tls;

pub use client::{Client, ClientOptions, Endpoint, Notification, OvsdbError};
pub use monitor::{MonitorRequest, Replica, Touched, UpdateFormat};
pub use ops::{
    Atom, Condition, Datum, Function, Mutation, Mutator, OpResult, Operation, Row, TransactError,
    Uuid, WaitUntil,
};
pub use session::{Session, SessionConfig, SessionEvent};
pub use tls::TlsFiles;
