//! The OVSDB client against a real ovsdb-server (each test starts its own sandbox).

#[path = "support/sandbox.rs"]
#[allow(dead_code)]
mod sandbox;

use std::time::Duration;

use futures::future::join_all;
use remote_device_operator::ovsdb::{
    Atom, Client, ClientOptions, Condition, Datum, Endpoint, MonitorRequest, Mutation, Mutator,
    Operation, OvsdbError, Replica, Row, Session, SessionConfig, SessionEvent, UpdateFormat, Uuid,
    WaitUntil, monitor::column_kinds,
};
use sandbox::{Datapath, Options, Sandbox};
use serde_json::json;

const DB: &str = "Open_vSwitch";

fn sandbox(tcp: bool) -> Sandbox {
    Sandbox::start_with(Options {
        datapath: Datapath::Dummy,
        tcp,
    })
    .expect("OVS is installed")
}

async fn connect(sb: &Sandbox) -> Client {
    let ep: Endpoint = sb.endpoint().parse().unwrap();
    Client::connect(&ep, ClientOptions::for_endpoint(&ep))
        .await
        .unwrap()
        .0
}

fn name_is(n: &str) -> Vec<Condition> {
    vec![Condition::eq("name", Datum::string(n))]
}

async fn root(c: &Client) -> Uuid {
    let r = c
        .transact(
            DB,
            &[Operation::Select {
                table: "Open_vSwitch".into(),
                conditions: vec![],
                columns: Some(vec!["_uuid".into()]),
            }],
        )
        .await
        .unwrap();
    r[0].rows.as_ref().unwrap()[0]["_uuid"].as_uuids()[0].clone()
}

/// Inserts an (empty) bridge and hangs it under the root row.
fn add_bridge_ops(root: &Uuid, name: &str) -> Vec<Operation> {
    vec![
        Operation::Insert {
            table: "Bridge".into(),
            row: Row::from([
                ("name".into(), Datum::string(name)),
                ("ports".into(), Datum::empty_set()),
                ("external_ids".into(), Datum::empty_map()),
            ]),
            uuid_name: Some("newbr".into()),
        },
        Operation::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![Condition::uuid(root)],
            mutations: vec![Mutation::new(
                "bridges",
                Mutator::Insert,
                Datum::set(vec![Atom::NamedUuid("newbr".into())]),
            )],
        },
    ]
}

#[tokio::test]
async fn transact_operations_and_errors_keep_the_session() {
    let sb = sandbox(false);
    let c = connect(&sb).await;
    assert!(c.list_dbs().await.unwrap().contains(&DB.to_string()));
    assert!(c.get_schema(DB).await.unwrap()["tables"]["Bridge"].is_object());

    let root = root(&c).await;
    let r = c
        .transact(DB, &add_bridge_ops(&root, "br-a"))
        .await
        .unwrap();
    let br = r[0].uuid.clone().expect("insert returns the uuid");
    assert_eq!(r[1].count, Some(1));
    assert_eq!(sb.vsctl(&["list-br"]).unwrap().trim(), "br-a");

    // update, mutate on a map, select what was written.
    let r = c
        .transact(
            DB,
            &[
                Operation::Update {
                    table: "Bridge".into(),
                    conditions: name_is("br-a"),
                    row: Row::from([(
                        "external_ids".into(),
                        Datum::Map(vec![(Atom::string("a"), Atom::string("1"))]),
                    )]),
                },
                Operation::Mutate {
                    table: "Bridge".into(),
                    conditions: vec![Condition::uuid(&br)],
                    mutations: vec![Mutation::new(
                        "external_ids",
                        Mutator::Insert,
                        Datum::Map(vec![(Atom::string("b"), Atom::string("x\"y"))]),
                    )],
                },
                Operation::Select {
                    table: "Bridge".into(),
                    conditions: name_is("br-a"),
                    columns: Some(vec!["external_ids".into()]),
                },
                Operation::Wait {
                    table: "Bridge".into(),
                    conditions: name_is("br-a"),
                    columns: vec!["name".into()],
                    until: WaitUntil::Eq,
                    rows: vec![Row::from([("name".into(), Datum::string("br-a"))])],
                    timeout_ms: Some(0),
                },
                Operation::Comment("rdo test".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r[0].count, Some(1));
    let ids = r[2].rows.as_ref().unwrap()[0]["external_ids"].as_string_map();
    assert_eq!(ids.get("a").map(String::as_str), Some("1"));
    assert_eq!(ids.get("b").map(String::as_str), Some("x\"y"));
    assert_eq!(
        sb.vsctl(&["get", "Bridge", "br-a", "external_ids:b"])
            .unwrap()
            .trim(),
        "\"x\\\"y\""
    );

    // A failing wait rolls back the whole transaction.
    let err = c
        .transact(
            DB,
            &[
                Operation::Update {
                    table: "Bridge".into(),
                    conditions: name_is("br-a"),
                    row: Row::from([("external_ids".into(), Datum::empty_map())]),
                },
                Operation::Wait {
                    table: "Bridge".into(),
                    conditions: name_is("br-a"),
                    columns: vec!["name".into()],
                    until: WaitUntil::Eq,
                    rows: vec![Row::from([("name".into(), Datum::string("other"))])],
                    timeout_ms: Some(0),
                },
            ],
        )
        .await
        .unwrap_err();
    match err {
        OvsdbError::Transact(e) => {
            assert_eq!(e.index, Some(1));
            assert_eq!(e.error, "timed out");
        }
        other => panic!("expected a refused transaction, got {other}"),
    }
    assert!(
        !sb.vsctl(&["get", "Bridge", "br-a", "external_ids"])
            .unwrap()
            .contains("{}")
    );

    // A commit-time error: a duplicate name in the Bridge index.
    let err = c
        .transact(DB, &add_bridge_ops(&root, "br-a"))
        .await
        .unwrap_err();
    match err {
        OvsdbError::Transact(e) => {
            assert_eq!(e.index, None, "{e}");
            assert_eq!(e.error, "constraint violation");
        }
        other => panic!("expected a constraint violation, got {other}"),
    }

    // A JSON-RPC error comes back as an error and the session lives on.
    let err = c.call("no_such_method", json!([])).await.unwrap_err();
    assert!(
        matches!(err, OvsdbError::Rpc { ref error, .. } if error == "unknown method"),
        "{err}"
    );
    c.echo().await.unwrap();

    // Delete through the reference (unreferenced bridges are garbage-collected).
    let r = c
        .transact(
            DB,
            &[
                Operation::Mutate {
                    table: "Open_vSwitch".into(),
                    conditions: vec![],
                    mutations: vec![Mutation::new(
                        "bridges",
                        Mutator::Delete,
                        Datum::set(vec![Atom::Uuid(br.clone())]),
                    )],
                },
                Operation::Select {
                    table: "Bridge".into(),
                    conditions: vec![],
                    columns: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(r[0].count, Some(1));
    assert_eq!(sb.vsctl(&["list-br"]).unwrap().trim(), "");
    // A plain delete matching nothing any more.
    let r = c
        .transact(
            DB,
            &[Operation::Delete {
                table: "Bridge".into(),
                conditions: vec![Condition::uuid(&br)],
            }],
        )
        .await
        .unwrap();
    assert_eq!(r[0].count, Some(0));
    assert!(!c.is_closed());
}

#[tokio::test]
async fn many_concurrent_requests_are_matched_by_id() {
    let sb = sandbox(false);
    let c = connect(&sb).await;
    let calls = (0..300).map(|i| {
        let c = c.clone();
        async move {
            if i % 3 == 0 {
                c.call("echo", json!([i])).await.map(|v| v == json!([i]))
            } else {
                c.transact(DB, &[Operation::Comment(format!("c{i}"))])
                    .await
                    .map(|r| r.len() == 1)
            }
        }
    });
    for r in join_all(calls).await {
        assert!(r.unwrap());
    }
}

fn monitor_bridges() -> Vec<MonitorRequest> {
    vec![
        MonitorRequest::new("Open_vSwitch", &["bridges"]),
        MonitorRequest::new("Bridge", &["name", "external_ids", "ports"]),
    ]
}

#[tokio::test]
async fn monitor_cond_keeps_a_replica_even_past_thousands_of_updates() {
    let sb = sandbox(false);
    let ep: Endpoint = sb.endpoint().parse().unwrap();
    let mut s = Session::new(SessionConfig::new(ep, DB, monitor_bridges()));
    assert_eq!(s.next_event().await, SessionEvent::Connected);
    assert_eq!(s.replica().len("Bridge"), 0);
    assert_eq!(s.replica().len("Open_vSwitch"), 1);

    sb.vsctl(&["add-br", "br-m"]).unwrap();
    while s.replica().len("Bridge") == 0 {
        assert_eq!(s.next_event().await, SessionEvent::Updated);
    }
    // 2000 separate transactions, pipelined: every update must arrive, in order.
    let c = s.client().unwrap().clone();
    let txns = (0..2000).map(|i| {
        let c = c.clone();
        async move {
            c.transact(
                DB,
                &[Operation::Update {
                    table: "Bridge".into(),
                    conditions: name_is("br-m"),
                    row: Row::from([(
                        "external_ids".into(),
                        Datum::Map(vec![(Atom::string("n"), Atom::string(i.to_string()))]),
                    )]),
                }],
            )
            .await
        }
    });
    let results = join_all(txns).await;
    assert!(results.iter().all(Result::is_ok));
    s.drain();
    let n = s
        .replica()
        .rows("Bridge")
        .next()
        .and_then(|(_, r)| r["external_ids"].as_string_map().get("n").cloned());
    let want = sb
        .vsctl(&["get", "Bridge", "br-m", "external_ids:n"])
        .unwrap()
        .trim()
        .trim_matches('"')
        .to_string();
    assert_eq!(n, Some(want));

    // Deletion shows up too.
    sb.vsctl(&["del-br", "br-m"]).unwrap();
    while s.replica().len("Bridge") != 0 {
        assert_eq!(s.next_event().await, SessionEvent::Updated);
    }
}

#[tokio::test]
async fn legacy_monitor_updates_apply_too() {
    let sb = sandbox(false);
    let ep: Endpoint = sb.endpoint().parse().unwrap();
    let (c, mut notes) = Client::connect(&ep, ClientOptions::for_endpoint(&ep))
        .await
        .unwrap();
    let kinds = column_kinds(&c.get_schema(DB).await.unwrap()).unwrap();
    let mut replica = Replica::new(kinds);
    let initial = c
        .monitor_legacy(DB, "legacy", &monitor_bridges())
        .await
        .unwrap();
    replica.apply(UpdateFormat::Update, &initial).unwrap();
    sb.vsctl(&[
        "add-br",
        "br-l",
        "--",
        "br-set-external-id",
        "br-l",
        "k",
        "v",
    ])
    .unwrap();
    while replica.len("Bridge") == 0 {
        let n = notes.recv().await.unwrap();
        assert_eq!(n.method, "update");
        replica.apply(UpdateFormat::Update, &n.params[1]).unwrap();
    }
    let (_, row) = replica.rows("Bridge").next().unwrap();
    assert_eq!(row["name"], Datum::string("br-l"));
    assert_eq!(row["external_ids"].as_string_map()["k"], "v");
}

#[tokio::test]
async fn a_lost_transaction_reply_is_outcome_unknown_and_disconnect_is_signalled() {
    let sb = sandbox(false);
    let c = connect(&sb).await;
    // A wait the server holds open: the reply can only come after the kill.
    let c1 = c.clone();
    let pending = tokio::spawn(async move {
        c1.transact(
            DB,
            &[Operation::Wait {
                table: "Open_vSwitch".into(),
                conditions: vec![],
                columns: vec!["bridges".into()],
                until: WaitUntil::Ne,
                rows: vec![Row::from([("bridges".into(), Datum::empty_set())])],
                timeout_ms: Some(30_000),
            }],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished());
    sb.kill_ovsdb();
    let r = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("reply must fail promptly")
        .unwrap();
    assert!(matches!(r, Err(OvsdbError::OutcomeUnknown(_))), "{r:?}");
    tokio::time::timeout(Duration::from_secs(5), c.closed())
        .await
        .expect("disconnect signal");
    assert!(matches!(c.echo().await, Err(OvsdbError::Disconnected(_))));
}

#[tokio::test]
async fn session_reconnects_and_resyncs_fully() {
    let sb = sandbox(false);
    sb.vsctl(&["add-br", "br-1"]).unwrap();
    let ep: Endpoint = sb.endpoint().parse().unwrap();
    let mut cfg = SessionConfig::new(ep, DB, monitor_bridges());
    cfg.backoff_min = Duration::from_millis(50);
    let mut s = Session::new(cfg);
    assert_eq!(s.next_event().await, SessionEvent::Connected);
    assert_eq!(s.replica().len("Bridge"), 1);

    sb.kill_ovsdb();
    assert!(matches!(
        s.next_event().await,
        SessionEvent::Disconnected(_)
    ));
    assert!(!s.is_connected());
    // While the server is down, the database changes behind our back.
    let db = format!("{}/conf.db", sb.dir().display());
    let out = std::process::Command::new("ovsdb-tool")
        .args([
            "transact",
            &db,
            &json!([DB, {"op": "delete", "table": "Bridge", "where": []},
                    {"op": "update", "table": "Open_vSwitch", "where": [],
                     "row": {"bridges": ["set", []]}}])
            .to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Connection attempts fail while it is down, with backoff.
    assert!(matches!(
        s.next_event().await,
        SessionEvent::ConnectFailed(_)
    ));
    sb.restart_ovsdb().unwrap();
    let event = loop {
        match s.next_event().await {
            SessionEvent::ConnectFailed(_) => continue,
            other => break other,
        }
    };
    assert_eq!(event, SessionEvent::Connected);
    assert_eq!(s.connects(), 2);
    assert_eq!(
        s.replica().len("Bridge"),
        0,
        "replica rebuilt from the server"
    );
    sb.vsctl(&["add-br", "br-2"]).unwrap();
    while s.replica().len("Bridge") == 0 {
        assert_eq!(s.next_event().await, SessionEvent::Updated);
    }
}

#[tokio::test]
async fn tcp_session_idle_for_more_than_15_seconds_stays_up() {
    let sb = sandbox(true);
    let ep: Endpoint = sb.tcp_endpoint().unwrap().parse().unwrap();
    let mut s = Session::new(SessionConfig::new(ep, DB, monitor_bridges()));
    assert_eq!(s.next_event().await, SessionEvent::Connected);
    // Nothing from us for 16 s: the server probes at 5 s and would drop us at 10 s.
    let idle = tokio::time::timeout(Duration::from_secs(16), s.next_event()).await;
    assert!(idle.is_err(), "session event while idle: {:?}", idle.ok());
    assert!(s.is_connected());
    s.client().unwrap().echo().await.unwrap();
    let log = std::fs::read_to_string(sb.dir().join("ovsdb-server.log")).unwrap();
    assert!(!log.contains("inactivity probe"), "{log}");
    assert_eq!(s.connects(), 1);
}
