//! A scripted, in-memory Kubernetes API server for tests that run several components
//! together (controller + agent + real OVS). It is a `tower::Service`, handed to
//! `kube::Client::new`, and implements just what this project's components use, with the
//! semantics they depend on:
//! - list and watch (label selectors; watches return the events after the given
//!   resourceVersion, waiting briefly for new ones);
//! - get, create, delete with finalizers (deletionTimestamp until the last finalizer is
//!   removed) and owner-reference garbage collection;
//! - merge patches with optimistic concurrency on `metadata.resourceVersion`, and
//!   server-side apply as a recursive merge for a single field manager (enough here: every
//!   object has one writer per part), with the `status` subresource kept apart;
//! - `metadata.generation` bumped when the spec changes.
//!
//! Every request is logged so tests can assert on what was written.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// One logged request.
#[derive(Clone, Debug)]
pub struct Logged {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Body (JSON), `Null` when empty.
    pub body: Value,
    /// When it arrived.
    pub at: tokio::time::Instant,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    /// `api/v1` or `apis/<group>/<version>`.
    group_version: String,
    plural: String,
    namespace: Option<String>,
    name: String,
}

#[derive(Clone, Debug)]
struct WatchEvent {
    rv: u64,
    key: Key,
    kind: &'static str,
    object: Value,
}

/// A scripted failure: the next `count` requests whose method and path match get `code`
/// (0 = no answer at all: the request hangs).
#[derive(Clone, Debug)]
struct Failure {
    method: String,
    path_suffix: String,
    code: u16,
    count: usize,
}

#[derive(Default)]
struct State {
    failures: Vec<Failure>,
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    events: Vec<WatchEvent>,
    log: Vec<Logged>,
}

/// The fake API server; clone it freely (all clones share the state).
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

/// A parsed request path.
struct Route {
    group_version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group_version, rest) = match *parts.first()? {
        "api" => (format!("api/{}", parts.get(1)?), &parts[2..]),
        "apis" => (
            format!("apis/{}/{}", parts.get(1)?, parts.get(2)?),
            &parts[3..],
        ),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        _ => (None, rest),
    };
    let plural = rest.first()?.to_string();
    Some(Route {
        group_version,
        plural,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        status: rest.get(2) == Some(&"status"),
    })
}

fn kind_of(plural: &str) -> &'static str {
    match plural {
        "nodes" => "Node",
        "remotedevices" => "RemoteDevice",
        "tunnelports" => "TunnelPort",
        "leases" => "Lease",
        "events" => "Event",
        _ => "Unknown",
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| {
            v.replace("%2F", "/")
                .replace("%3D", "=")
                .replace("%2C", ",")
        })
    })
}

fn labels_match(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => object["metadata"]["labels"][k].as_str() == Some(v),
        None => !object["metadata"]["labels"][term].is_null(),
    })
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(map) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in map {
                if v.is_null() {
                    target.as_object_mut().unwrap().remove(k);
                } else {
                    merge_patch(
                        target
                            .as_object_mut()
                            .unwrap()
                            .entry(k.clone())
                            .or_insert(Value::Null),
                        v,
                    );
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn status_response(code: u16, reason: &str, message: String) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(code).unwrap(),
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message}),
    )
}

impl FakeApi {
    /// A new, empty API server.
    pub fn new() -> Self {
        Self::default()
    }

    /// A kube client talking to this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// Creates or replaces an object, as `kubectl apply` would (spec and metadata).
    pub fn apply(&self, object: Value) {
        let api_version = object["apiVersion"].as_str().unwrap().to_string();
        let group_version = if api_version.contains('/') {
            format!("apis/{api_version}")
        } else {
            format!("api/{api_version}")
        };
        let plural = match object["kind"].as_str().unwrap() {
            "Node" => "nodes",
            "RemoteDevice" => "remotedevices",
            "TunnelPort" => "tunnelports",
            other => panic!("unsupported kind {other}"),
        };
        let key = Key {
            group_version,
            plural: plural.into(),
            namespace: object["metadata"]["namespace"].as_str().map(str::to_string),
            name: object["metadata"]["name"].as_str().unwrap().to_string(),
        };
        let mut state = self.state.lock().unwrap();
        let merged = match state.objects.get(&key).cloned() {
            Some(mut existing) => {
                merge_patch(&mut existing, &object);
                existing
            }
            None => object,
        };
        Self::store(&mut state, key, merged, None);
        drop(state);
        self.changed.notify_waiters();
    }

    /// Deletes an object as `kubectl delete` would (finalizers and owners respected).
    pub fn delete(&self, group_version: &str, plural: &str, namespace: Option<&str>, name: &str) {
        let key = Key {
            group_version: group_version.into(),
            plural: plural.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        };
        let mut state = self.state.lock().unwrap();
        Self::delete_key(&mut state, &key);
        drop(state);
        self.changed.notify_waiters();
    }

    /// The stored objects of a plural (all namespaces).
    pub fn list(&self, plural: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .objects
            .iter()
            .filter(|(k, _)| k.plural == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Makes the next `count` requests with this method and a path ending in
    /// `path_suffix` fail with HTTP `code` (409, 500, …), as a busy or racing server would.
    pub fn fail_next(&self, method: &str, path_suffix: &str, code: u16, count: usize) {
        self.state.lock().unwrap().failures.push(Failure {
            method: method.into(),
            path_suffix: path_suffix.into(),
            code,
            count,
        });
    }

    /// Makes the next `count` matching requests hang without an answer.
    pub fn hang_next(&self, method: &str, path_suffix: &str, count: usize) {
        self.fail_next(method, path_suffix, 0, count);
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    fn store(state: &mut State, key: Key, mut object: Value, previous: Option<&Value>) {
        state.rv += 1;
        let rv = state.rv;
        let fresh = !state.objects.contains_key(&key);
        if fresh {
            state.uid += 1;
            object["metadata"]["uid"] = json!(format!("uid-{}", state.uid));
            object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            object["metadata"]["generation"] = json!(1);
        } else {
            let old = previous
                .cloned()
                .or_else(|| state.objects.get(&key).cloned())
                .unwrap();
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let bumped = if old.get("spec") != object.get("spec") {
                generation + 1
            } else {
                generation
            };
            object["metadata"]["generation"] = json!(bumped);
            object["metadata"]["uid"] = old["metadata"]["uid"].clone();
            object["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
        }
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        object["kind"] = json!(kind_of(&key.plural));
        let api_version = key
            .group_version
            .trim_start_matches("apis/")
            .trim_start_matches("api/")
            .to_string();
        object["apiVersion"] = json!(api_version);
        // The last finalizer of a deleted object gone: the object goes.
        let deleting = !object["metadata"]["deletionTimestamp"].is_null();
        let finalizers = object["metadata"]["finalizers"]
            .as_array()
            .map(|f| !f.is_empty())
            .unwrap_or(false);
        if deleting && !finalizers {
            state.objects.remove(&key);
            state.events.push(WatchEvent {
                rv,
                key,
                kind: "DELETED",
                object,
            });
            return;
        }
        state.objects.insert(key.clone(), object.clone());
        state.events.push(WatchEvent {
            rv,
            key,
            kind: if fresh { "ADDED" } else { "MODIFIED" },
            object,
        });
    }

    fn delete_key(state: &mut State, key: &Key) -> Option<Value> {
        let mut object = state.objects.get(key).cloned()?;
        let uid = object["metadata"]["uid"].clone();
        let has_finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if object["metadata"]["deletionTimestamp"].is_null() {
                object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:01Z");
                Self::store(state, key.clone(), object.clone(), None);
            }
        } else {
            state.rv += 1;
            let rv = state.rv;
            state.objects.remove(key);
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            state.events.push(WatchEvent {
                rv,
                key: key.clone(),
                kind: "DELETED",
                object: object.clone(),
            });
        }
        // Garbage collection of dependents (background propagation).
        let owned: Vec<Key> = state
            .objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| o["uid"] == uid)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for dependent in owned {
            Self::delete_key(state, &dependent);
        }
        Some(object)
    }

    async fn handle(&self, request: Request<Body>) -> (StatusCode, Value, bool) {
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let content_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        self.state.lock().unwrap().log.push(Logged {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
            at: tokio::time::Instant::now(),
        });
        let scripted = {
            let mut state = self.state.lock().unwrap();
            state
                .failures
                .iter_mut()
                .find(|f| f.count > 0 && f.method == method && path.ends_with(&f.path_suffix))
                .map(|f| {
                    f.count -= 1;
                    f.code
                })
        };
        match scripted {
            Some(0) => std::future::pending::<()>().await,
            Some(code) => {
                let (code, value) =
                    status_response(code, "Scripted", format!("scripted failure {code}"));
                return (code, value, false);
            }
            None => {}
        }
        let Some(route) = parse_path(&path) else {
            let (code, value) = status_response(404, "NotFound", format!("no route {path}"));
            return (code, value, false);
        };
        let watch = query_param(&query, "watch").as_deref() == Some("true");
        match (method.as_str(), &route.name) {
            ("GET", None) if watch => {
                let since: u64 = query_param(&query, "resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let selector = query_param(&query, "labelSelector");
                let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
                loop {
                    let notified = self.changed.notified();
                    let events: Vec<Value> = {
                        let state = self.state.lock().unwrap();
                        state
                            .events
                            .iter()
                            .filter(|e| e.rv > since && e.key.plural == route.plural)
                            .filter(|e| {
                                route.namespace.is_none() || e.key.namespace == route.namespace
                            })
                            .filter(|e| labels_match(&e.object, selector.as_deref()))
                            .map(|e| json!({"type": e.kind, "object": e.object}))
                            .collect()
                    };
                    if !events.is_empty() || tokio::time::Instant::now() >= deadline {
                        return (StatusCode::OK, Value::Array(events), true);
                    }
                    let _ = tokio::time::timeout_at(deadline, notified).await;
                }
            }
            ("GET", None) => {
                let selector = query_param(&query, "labelSelector");
                let state = self.state.lock().unwrap();
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|(k, _)| {
                        k.plural == route.plural && k.group_version == route.group_version
                    })
                    .filter(|(k, _)| route.namespace.is_none() || k.namespace == route.namespace)
                    .filter(|(_, v)| labels_match(v, selector.as_deref()))
                    .map(|(_, v)| v.clone())
                    .collect();
                let list = json!({"apiVersion": route.group_version.trim_start_matches("apis/").trim_start_matches("api/"),
                    "kind": format!("{}List", kind_of(&route.plural)),
                    "metadata": {"resourceVersion": state.rv.to_string()}, "items": items});
                (StatusCode::OK, list, false)
            }
            (_, name) => {
                let key_name = name.clone().unwrap_or_else(|| {
                    body["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                });
                let key = Key {
                    group_version: route.group_version.clone(),
                    plural: route.plural.clone(),
                    namespace: route.namespace.clone(),
                    name: key_name.clone(),
                };
                let result = self.write(&method, &key, route.status, &content_type, body);
                self.changed.notify_waiters();
                let (code, value) = result;
                (code, value, false)
            }
        }
    }

    fn write(
        &self,
        method: &str,
        key: &Key,
        status: bool,
        content_type: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut state = self.state.lock().unwrap();
        let existing = state.objects.get(key).cloned();
        let not_found = || {
            status_response(
                404,
                "NotFound",
                format!("{} {:?} not found", key.plural, key.name),
            )
        };
        match method {
            "GET" => existing
                .map(|o| (StatusCode::OK, o))
                .unwrap_or_else(not_found),
            "POST" => {
                if existing.is_some() {
                    return status_response(
                        409,
                        "AlreadyExists",
                        format!("{} {:?} already exists", key.plural, key.name),
                    );
                }
                Self::store(&mut state, key.clone(), body, None);
                (
                    StatusCode::CREATED,
                    state.objects.get(key).cloned().unwrap_or(Value::Null),
                )
            }
            "DELETE" => match Self::delete_key(&mut state, key) {
                Some(object) => (StatusCode::OK, object),
                None => not_found(),
            },
            "PATCH" => {
                let apply = content_type.starts_with("application/apply-patch");
                let mut object = match existing.clone() {
                    Some(o) => o,
                    None if apply && !status => {
                        json!({"metadata": {"name": key.name, "namespace": key.namespace}})
                    }
                    None => return not_found(),
                };
                if !apply
                    && let Some(rv) = body["metadata"]["resourceVersion"].as_str()
                    && Some(rv) != object["metadata"]["resourceVersion"].as_str()
                {
                    return status_response(409, "Conflict", "the object has been modified".into());
                }
                let mut patch = body;
                if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("resourceVersion");
                }
                if status {
                    // The status subresource changes status only.
                    let new_status = patch.get("status").cloned().unwrap_or(Value::Null);
                    if apply {
                        object["status"] = new_status;
                    } else {
                        merge_patch(&mut object["status"], &new_status);
                    }
                } else {
                    if let Some(p) = patch.as_object_mut() {
                        p.remove("status");
                    }
                    if apply
                        && let (Some(spec), Some(_)) =
                            (patch.get("spec").cloned(), object.get("spec"))
                    {
                        // One manager owns the whole spec: apply replaces it.
                        object["spec"] = spec;
                    }
                    merge_patch(&mut object, &patch);
                }
                Self::store(&mut state, key.clone(), object, existing.as_ref());
                (
                    StatusCode::OK,
                    state.objects.get(key).cloned().unwrap_or(Value::Null),
                )
            }
            other => status_response(405, "MethodNotAllowed", format!("{other} not supported")),
        }
    }
}

impl tower::Service<Request<Body>> for FakeApi {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (code, value, watch) = this.handle(request).await;
            let bytes = match (watch, value) {
                // A watch body is a stream of JSON events, one per line.
                (true, Value::Array(events)) => events
                    .iter()
                    .map(|e| serde_json::to_string(e).unwrap() + "\n")
                    .collect::<String>()
                    .into_bytes(),
                (_, value) => serde_json::to_vec(&value).unwrap(),
            };
            Ok(Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(bytes)))
                .unwrap())
        })
    }
}
