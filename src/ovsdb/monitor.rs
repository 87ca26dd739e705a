//! Monitors and the local replica they feed (RFC 7047 §4.1.5–4.1.6, ovsdb-server(7)
//! `monitor_cond` / `update2`).
//!
//! `update2` sends only what changed: for a `modify`, a scalar column carries its new
//! value, a set column the elements to toggle (symmetric difference) and a map column the
//! pairs to add, remove or replace. Which rule applies depends on the column's type, and
//! a one-element set is sent as a bare atom, so the replica keeps the column kinds from
//! the schema and stores every set as a set.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::ops::{Atom, DataError, Datum, Row, Uuid, row_from_json};

/// Which columns of a table to monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorRequest {
    /// Table.
    pub table: String,
    /// Columns (`_uuid` is always implied).
    pub columns: Vec<String>,
}

impl MonitorRequest {
    /// A request for `columns` of `table`.
    pub fn new(table: &str, columns: &[&str]) -> Self {
        MonitorRequest {
            table: table.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }
}

/// The `<monitor-requests>` object for `monitor` and `monitor_cond`.
pub fn requests_json(requests: &[MonitorRequest]) -> Value {
    Value::Object(
        requests
            .iter()
            .map(|r| (r.table.clone(), json!([{"columns": r.columns}])))
            .collect(),
    )
}

/// Which notification format a monitor delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateFormat {
    /// `monitor` → `update` with old/new rows.
    Update,
    /// `monitor_cond` → `update2` with diffs.
    Update2,
}

/// Shape of a column's type, which decides how an `update2` diff applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Exactly one atom.
    Scalar,
    /// A set (including optional values, min 0 max 1).
    Set,
    /// A map.
    Map,
}

/// Column kinds per table and column, read from a `get_schema` reply.
pub type ColumnKinds = BTreeMap<String, BTreeMap<String, ColumnKind>>;

/// Reads the column kinds of every table from a schema.
pub fn column_kinds(schema: &Value) -> Result<ColumnKinds, DataError> {
    let tables = schema
        .get("tables")
        .and_then(Value::as_object)
        .ok_or_else(|| DataError("schema without tables".into()))?;
    let mut out = ColumnKinds::new();
    for (table, t) in tables {
        let cols = t
            .get("columns")
            .and_then(Value::as_object)
            .ok_or_else(|| DataError(format!("table {table} without columns")))?;
        let kinds = out.entry(table.clone()).or_default();
        for (col, c) in cols {
            let ty = c
                .get("type")
                .ok_or_else(|| DataError(format!("column {table}.{col} without type")))?;
            let kind = match ty {
                Value::String(_) => ColumnKind::Scalar,
                Value::Object(o) => {
                    let min = o.get("min").and_then(Value::as_u64).unwrap_or(1);
                    let max = match o.get("max") {
                        Some(Value::String(s)) if s == "unlimited" => u64::MAX,
                        Some(v) => v.as_u64().unwrap_or(1),
                        None => 1,
                    };
                    if o.contains_key("value") {
                        ColumnKind::Map
                    } else if min == 1 && max == 1 {
                        ColumnKind::Scalar
                    } else {
                        ColumnKind::Set
                    }
                }
                other => return Err(DataError(format!("column type {other}"))),
            };
            kinds.insert(col.clone(), kind);
        }
    }
    Ok(out)
}

/// Rows (table, UUID) inserted, modified or deleted since a reader last asked; `None` =
/// every row (a replica the reader has not seen before).
pub type Touched = Option<BTreeSet<(String, Uuid)>>;

/// A local copy of the monitored rows.
#[derive(Clone, Debug, Default)]
pub struct Replica {
    kinds: ColumnKinds,
    tables: BTreeMap<String, BTreeMap<Uuid, Row>>,
    /// Lets a reader keep a typed view up to date by the rows that changed, instead of
    /// reading every row after each update.
    touched: Touched,
}

impl Replica {
    /// An empty replica for a database with these column kinds.
    pub fn new(kinds: ColumnKinds) -> Self {
        Replica {
            kinds,
            tables: BTreeMap::new(),
            touched: None,
        }
    }

    /// The rows touched since the last call (`None` the first time: all of them). Meant
    /// for one reader: a second one would miss what the first took.
    pub fn take_touched(&mut self) -> Touched {
        self.touched.replace(BTreeSet::new())
    }

    fn touch(&mut self, table: &str, uuid: &Uuid) {
        if let Some(t) = &mut self.touched {
            t.insert((table.to_string(), uuid.clone()));
        }
    }

    /// The rows of `table` (empty when none).
    pub fn rows(&self, table: &str) -> impl Iterator<Item = (&Uuid, &Row)> {
        self.tables.get(table).into_iter().flat_map(|t| t.iter())
    }

    /// One row.
    pub fn row(&self, table: &str, uuid: &Uuid) -> Option<&Row> {
        self.tables.get(table)?.get(uuid)
    }

    /// Number of rows in `table`.
    pub fn len(&self, table: &str) -> usize {
        self.tables.get(table).map_or(0, |t| t.len())
    }

    /// Whether no table holds a row.
    pub fn is_empty(&self) -> bool {
        self.tables.values().all(|t| t.is_empty())
    }

    fn kind(&self, table: &str, column: &str) -> Option<ColumnKind> {
        self.kinds.get(table)?.get(column).copied()
    }

    /// Stores sets as sets even when the server sent a bare atom.
    fn normalize(&self, table: &str, row: Row) -> Row {
        row.into_iter()
            .map(|(col, d)| {
                let d = match (self.kind(table, &col), d) {
                    (Some(ColumnKind::Set), Datum::Atom(a)) => Datum::Set(vec![a]),
                    (_, d) => d,
                };
                (col, d)
            })
            .collect()
    }

    /// Applies the params' table-updates of an `update` or `update2` notification, or
    /// the initial reply of a monitor request.
    pub fn apply(&mut self, format: UpdateFormat, updates: &Value) -> Result<(), DataError> {
        let Value::Object(tables) = updates else {
            return Err(DataError(format!("table updates: {updates}")));
        };
        for (table, rows) in tables {
            let Value::Object(rows) = rows else {
                return Err(DataError(format!("row updates of {table}: {rows}")));
            };
            for (uuid, change) in rows {
                let uuid = Uuid(uuid.clone());
                self.touch(table, &uuid);
                match format {
                    UpdateFormat::Update2 => self.apply_update2(table, uuid, change)?,
                    UpdateFormat::Update => self.apply_update(table, uuid, change)?,
                }
            }
        }
        Ok(())
    }

    fn apply_update(&mut self, table: &str, uuid: Uuid, change: &Value) -> Result<(), DataError> {
        match change.get("new") {
            None | Some(Value::Null) => {
                self.tables
                    .entry(table.to_string())
                    .or_default()
                    .remove(&uuid);
            }
            Some(new) => {
                let new = self.normalize(table, row_from_json(new)?);
                let row = self
                    .tables
                    .entry(table.to_string())
                    .or_default()
                    .entry(uuid)
                    .or_default();
                row.extend(new);
            }
        }
        Ok(())
    }

    fn apply_update2(&mut self, table: &str, uuid: Uuid, change: &Value) -> Result<(), DataError> {
        let Value::Object(o) = change else {
            return Err(DataError(format!("row update2: {change}")));
        };
        let (op, body) = o
            .iter()
            .next()
            .filter(|_| o.len() == 1)
            .ok_or_else(|| DataError(format!("row update2: {change}")))?;
        match op.as_str() {
            "initial" | "insert" => {
                let row = self.normalize(table, row_from_json(body)?);
                self.tables
                    .entry(table.to_string())
                    .or_default()
                    .insert(uuid, row);
            }
            "delete" => {
                self.tables
                    .entry(table.to_string())
                    .or_default()
                    .remove(&uuid);
            }
            "modify" => {
                let diff = row_from_json(body)?;
                let kinds: Vec<_> = diff.keys().map(|c| self.kind(table, c)).collect();
                let Some(row) = self.tables.get_mut(table).and_then(|t| t.get_mut(&uuid)) else {
                    return Err(DataError(format!("modify of unknown row {table} {uuid}")));
                };
                for ((col, d), kind) in diff.into_iter().zip(kinds) {
                    let merged = apply_diff(kind, row.get(&col), d);
                    row.insert(col, merged);
                }
            }
            other => return Err(DataError(format!("row update2 kind {other}"))),
        }
        Ok(())
    }
}

/// One column's `update2` diff applied to its old value.
fn apply_diff(kind: Option<ColumnKind>, old: Option<&Datum>, diff: Datum) -> Datum {
    match (kind, diff) {
        (Some(ColumnKind::Set), diff) => {
            let mut items: Vec<Atom> = old
                .map(|d| d.as_set().into_iter().cloned().collect())
                .unwrap_or_default();
            for a in diff.as_set() {
                if let Some(i) = items.iter().position(|x| x == a) {
                    items.remove(i);
                } else {
                    items.push(a.clone());
                }
            }
            Datum::Set(items)
        }
        (Some(ColumnKind::Map), Datum::Map(changes)) | (None, Datum::Map(changes)) => {
            let mut pairs = match old {
                Some(Datum::Map(m)) => m.clone(),
                _ => Vec::new(),
            };
            for (k, v) in changes {
                match pairs.iter().position(|(ok, _)| *ok == k) {
                    Some(i) if pairs[i].1 == v => {
                        pairs.remove(i);
                    }
                    Some(i) => pairs[i].1 = v,
                    None => pairs.push((k, v)),
                }
            }
            Datum::Map(pairs)
        }
        // Scalars (and anything unknown) are sent whole.
        (_, diff) => diff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> ColumnKinds {
        column_kinds(&json!({"tables": {"T": {"columns": {
            "name": {"type": "string"},
            "ofport": {"type": {"key": "integer", "min": 0, "max": 1}},
            "ports": {"type": {"key": {"type": "uuid", "refTable": "P"}, "min": 0, "max": "unlimited"}},
            "opts": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}
        }}}}))
        .unwrap()
    }

    fn row<'a>(r: &'a Replica, u: &str) -> &'a Row {
        r.row("T", &Uuid(u.into())).unwrap()
    }

    #[test]
    fn schema_kinds() {
        let k = kinds();
        assert_eq!(k["T"]["name"], ColumnKind::Scalar);
        assert_eq!(k["T"]["ofport"], ColumnKind::Set);
        assert_eq!(k["T"]["ports"], ColumnKind::Set);
        assert_eq!(k["T"]["opts"], ColumnKind::Map);
        assert!(column_kinds(&json!({"x": 1})).is_err());
    }

    #[test]
    fn update2_initial_modify_delete() {
        let mut r = Replica::new(kinds());
        r.apply(
            UpdateFormat::Update2,
            &json!({"T": {"u1": {"initial": {"name": "a", "ofport": ["set", []],
                "ports": ["uuid", "p1"], "opts": ["map", [["k", "1"], ["j", "2"]]]}}}}),
        )
        .unwrap();
        // A one-element set sent bare is stored as a set.
        assert_eq!(
            row(&r, "u1")["ports"],
            Datum::Set(vec![Atom::Uuid(Uuid("p1".into()))])
        );

        r.apply(
            UpdateFormat::Update2,
            &json!({"T": {"u1": {"modify": {"name": "b", "ofport": 5,
                "ports": ["uuid", "p2"], "opts": ["map", [["k", "1"], ["j", "3"], ["n", "4"]]]}}}}),
        )
        .unwrap();
        let got = row(&r, "u1");
        assert_eq!(got["name"], Datum::string("b"));
        assert_eq!(got["ofport"].as_i64(), Some(5));
        assert_eq!(got["ports"].as_uuids().len(), 2);
        let opts = got["opts"].as_string_map();
        assert_eq!(
            opts.get("k"),
            None,
            "same value in a map diff removes the key"
        );
        assert_eq!(opts.get("j").map(String::as_str), Some("3"));
        assert_eq!(opts.get("n").map(String::as_str), Some("4"));

        // ofport 5 -> 7 is sent as the set {5, 7}; p1 removed is sent as p1.
        r.apply(
            UpdateFormat::Update2,
            &json!({"T": {"u1": {"modify": {"ofport": ["set", [5, 7]], "ports": ["uuid", "p1"]}}}}),
        )
        .unwrap();
        assert_eq!(row(&r, "u1")["ofport"].as_i64(), Some(7));
        assert_eq!(row(&r, "u1")["ports"].as_uuids(), vec![Uuid("p2".into())]);

        r.apply(
            UpdateFormat::Update2,
            &json!({"T": {"u1": {"delete": null}}}),
        )
        .unwrap();
        assert_eq!(r.len("T"), 0);
    }

    #[test]
    fn legacy_update() {
        let mut r = Replica::new(kinds());
        r.apply(
            UpdateFormat::Update,
            &json!({"T": {"u1": {"new": {"name": "a", "ofport": 3}}}}),
        )
        .unwrap();
        r.apply(
            UpdateFormat::Update,
            &json!({"T": {"u1": {"old": {"name": "a"}, "new": {"name": "b", "ofport": 3}}}}),
        )
        .unwrap();
        assert_eq!(row(&r, "u1")["name"], Datum::string("b"));
        assert_eq!(row(&r, "u1")["ofport"], Datum::Set(vec![Atom::Integer(3)]));
        r.apply(
            UpdateFormat::Update,
            &json!({"T": {"u1": {"old": {"name": "b"}}}}),
        )
        .unwrap();
        assert!(r.is_empty());
    }

    #[test]
    fn bad_updates_are_errors() {
        let mut r = Replica::new(kinds());
        for bad in [
            json!([]),
            json!({"T": []}),
            json!({"T": {"u": {"explode": {}}}}),
            json!({"T": {"u": {"modify": {"name": "x"}}}}),
            json!({"T": {"u": {"insert": {"name": ["bogus"]}}}}),
        ] {
            assert!(r.apply(UpdateFormat::Update2, &bad).is_err(), "{bad}");
        }
    }
}
