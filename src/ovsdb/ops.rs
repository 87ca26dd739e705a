//! OVSDB data (RFC 7047 §5.1) and transaction operations (§5.2), typed.
//!
//! Encoding rules that are easy to get wrong and are pinned by tests here: a set is
//! always `["set", [...]]` and a map `["map", [[k, v], ...]]`, also when empty (a bare
//! `[]` is not an OVSDB value); UUIDs are `["uuid", "..."]` and references to rows
//! inserted earlier in the same transaction are `["named-uuid", "name"]`.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// A row UUID as the server spells it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub String);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One scalar OVSDB value.
#[derive(Clone, Debug, PartialEq)]
pub enum Atom {
    /// `integer`.
    Integer(i64),
    /// `real`.
    Real(f64),
    /// `boolean`.
    Boolean(bool),
    /// `string`.
    String(String),
    /// `uuid` of an existing row.
    Uuid(Uuid),
    /// A row inserted earlier in the same transaction under this `uuid-name`.
    NamedUuid(String),
}

/// A column value: a single atom, a set or a map.
#[derive(Clone, Debug, PartialEq)]
pub enum Datum {
    /// One atom (also how the server may send a set of exactly one element).
    Atom(Atom),
    /// A set of atoms (possibly empty).
    Set(Vec<Atom>),
    /// A map (possibly empty), in the order given.
    Map(Vec<(Atom, Atom)>),
}

/// A row: column name → value.
pub type Row = BTreeMap<String, Datum>;

/// Why a JSON value is not OVSDB data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not an OVSDB value: {0}")]
pub struct DataError(pub String);

impl Atom {
    /// A string atom.
    pub fn string(s: impl Into<String>) -> Self {
        Atom::String(s.into())
    }

    /// JSON encoding (see its [`Serialize`]).
    pub fn to_json(&self) -> Value {
        to_value(self)
    }

    /// Decodes one atom.
    pub fn from_json(v: &Value) -> Result<Self, DataError> {
        match v {
            Value::Bool(b) => Ok(Atom::Boolean(*b)),
            Value::String(s) => Ok(Atom::String(s.clone())),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(Atom::Integer(i)),
                None => n
                    .as_f64()
                    .map(Atom::Real)
                    .ok_or_else(|| DataError(v.to_string())),
            },
            Value::Array(a) => match (a.first().and_then(Value::as_str), a.get(1), a.len()) {
                (Some("uuid"), Some(Value::String(u)), 2) => Ok(Atom::Uuid(Uuid(u.clone()))),
                (Some("named-uuid"), Some(Value::String(n)), 2) => Ok(Atom::NamedUuid(n.clone())),
                _ => Err(DataError(v.to_string())),
            },
            _ => Err(DataError(v.to_string())),
        }
    }

    /// The string, if this is a string atom.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer atom.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The UUID, if this is a uuid atom.
    pub fn as_uuid(&self) -> Option<&Uuid> {
        match self {
            Atom::Uuid(u) => Some(u),
            _ => None,
        }
    }
}

impl Datum {
    /// An empty set (encoded `["set", []]`).
    pub fn empty_set() -> Self {
        Datum::Set(Vec::new())
    }

    /// An empty map (encoded `["map", []]`).
    pub fn empty_map() -> Self {
        Datum::Map(Vec::new())
    }

    /// A string atom.
    pub fn string(s: impl Into<String>) -> Self {
        Datum::Atom(Atom::String(s.into()))
    }

    /// An integer atom.
    pub fn integer(i: i64) -> Self {
        Datum::Atom(Atom::Integer(i))
    }

    /// A map of strings to strings.
    pub fn string_map<'a>(m: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        Datum::Map(
            m.into_iter()
                .map(|(k, v)| (Atom::String(k.clone()), Atom::String(v.clone())))
                .collect(),
        )
    }

    /// A set of UUIDs or named UUIDs.
    pub fn set(atoms: Vec<Atom>) -> Self {
        Datum::Set(atoms)
    }

    /// JSON encoding.
    pub fn to_json(&self) -> Value {
        to_value(self)
    }

    /// Decodes a column value.
    pub fn from_json(v: &Value) -> Result<Self, DataError> {
        if let Value::Array(a) = v {
            match (a.first().and_then(Value::as_str), a.get(1), a.len()) {
                (Some("set"), Some(Value::Array(items)), 2) => {
                    return items
                        .iter()
                        .map(Atom::from_json)
                        .collect::<Result<_, _>>()
                        .map(Datum::Set);
                }
                (Some("map"), Some(Value::Array(pairs)), 2) => {
                    return pairs
                        .iter()
                        .map(|p| match p {
                            Value::Array(kv) if kv.len() == 2 => {
                                Ok((Atom::from_json(&kv[0])?, Atom::from_json(&kv[1])?))
                            }
                            _ => Err(DataError(p.to_string())),
                        })
                        .collect::<Result<_, _>>()
                        .map(Datum::Map);
                }
                _ => {}
            }
        }
        Atom::from_json(v).map(Datum::Atom)
    }

    /// The elements of a set-valued column (a single atom counts as a set of one).
    pub fn as_set(&self) -> Vec<&Atom> {
        match self {
            Datum::Atom(a) => vec![a],
            Datum::Set(s) => s.iter().collect(),
            Datum::Map(_) => Vec::new(),
        }
    }

    /// A string→string map column (non-string entries are skipped).
    pub fn as_string_map(&self) -> BTreeMap<String, String> {
        match self {
            Datum::Map(m) => m
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// The single string of a string column or optional string (`None` when empty).
    pub fn as_str(&self) -> Option<&str> {
        self.as_set().first().and_then(|a| a.as_str())
    }

    /// The single integer of an integer column or optional integer.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_set().first().and_then(|a| a.as_i64())
    }

    /// The UUIDs of a reference column.
    pub fn as_uuids(&self) -> Vec<Uuid> {
        self.as_set()
            .into_iter()
            .filter_map(|a| a.as_uuid().cloned())
            .collect()
    }
}

/// Decodes a row object.
pub fn row_from_json(v: &Value) -> Result<Row, DataError> {
    let Value::Object(o) = v else {
        return Err(DataError(v.to_string()));
    };
    o.iter()
        .map(|(k, v)| Ok((k.clone(), Datum::from_json(v)?)))
        .collect()
}

/// Encodes what the [`Serialize`] impls below encode; they cannot fail (every map key is a
/// string), so a failure would only ever show as `null`.
fn to_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

// The encoding itself, written straight to the output: a 1000-port transaction is 600 KB
// of JSON, and building it as a `Value` first cost the agent ~10 ms at a cold start.
impl Serialize for Atom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Atom::Integer(i) => s.serialize_i64(*i),
            Atom::Real(r) => s.serialize_f64(*r),
            Atom::Boolean(b) => s.serialize_bool(*b),
            Atom::String(v) => s.serialize_str(v),
            Atom::Uuid(u) => ("uuid", &u.0).serialize(s),
            Atom::NamedUuid(n) => ("named-uuid", n).serialize(s),
        }
    }
}

impl Serialize for Datum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Datum::Atom(a) => a.serialize(s),
            Datum::Set(v) => ("set", v).serialize(s),
            Datum::Map(m) => ("map", m).serialize(s),
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.column, self.function.as_str(), &self.value).serialize(s)
    }
}

impl Serialize for Mutation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.column, self.mutator.as_str(), &self.value).serialize(s)
    }
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            Operation::Insert {
                table,
                row,
                uuid_name,
            } => {
                m.serialize_entry("op", "insert")?;
                m.serialize_entry("table", table)?;
                m.serialize_entry("row", row)?;
                if let Some(n) = uuid_name {
                    m.serialize_entry("uuid-name", n)?;
                }
            }
            Operation::Select {
                table,
                conditions,
                columns,
            } => {
                m.serialize_entry("op", "select")?;
                m.serialize_entry("table", table)?;
                m.serialize_entry("where", conditions)?;
                if let Some(c) = columns {
                    m.serialize_entry("columns", c)?;
                }
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => {
                m.serialize_entry("op", "update")?;
                m.serialize_entry("table", table)?;
                m.serialize_entry("where", conditions)?;
                m.serialize_entry("row", row)?;
            }
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => {
                m.serialize_entry("op", "mutate")?;
                m.serialize_entry("table", table)?;
                m.serialize_entry("where", conditions)?;
                m.serialize_entry("mutations", mutations)?;
            }
            Operation::Delete { table, conditions } => {
                m.serialize_entry("op", "delete")?;
                m.serialize_entry("table", table)?;
                m.serialize_entry("where", conditions)?;
            }
            Operation::Wait {
                table,
                conditions,
                columns,
                until,
                rows,
                timeout_ms,
            } => {
                m.serialize_entry("op", "wait")?;
                m.serialize_entry("table", table)?;
                m.serialize_entry("where", conditions)?;
                m.serialize_entry("columns", columns)?;
                let until = match until {
                    WaitUntil::Eq => "==",
                    WaitUntil::Ne => "!=",
                };
                m.serialize_entry("until", until)?;
                m.serialize_entry("rows", rows)?;
                if let Some(t) = timeout_ms {
                    m.serialize_entry("timeout", t)?;
                }
            }
            Operation::Comment(c) => {
                m.serialize_entry("op", "comment")?;
                m.serialize_entry("comment", c)?;
            }
        }
        m.end()
    }
}

/// Comparison of a `where` clause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `includes`
    Includes,
    /// `excludes`
    Excludes,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Function {
    fn as_str(self) -> &'static str {
        match self {
            Function::Eq => "==",
            Function::Ne => "!=",
            Function::Includes => "includes",
            Function::Excludes => "excludes",
            Function::Lt => "<",
            Function::Le => "<=",
            Function::Gt => ">",
            Function::Ge => ">=",
        }
    }
}

/// One `where` condition: `[column, function, value]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// Column.
    pub column: String,
    /// Comparison.
    pub function: Function,
    /// Value compared with.
    pub value: Datum,
}

impl Condition {
    /// `column == value`.
    pub fn eq(column: &str, value: Datum) -> Self {
        Condition {
            column: column.to_string(),
            function: Function::Eq,
            value,
        }
    }

    /// `_uuid == uuid`.
    pub fn uuid(uuid: &Uuid) -> Self {
        Self::eq("_uuid", Datum::Atom(Atom::Uuid(uuid.clone())))
    }
}

/// How a `mutate` changes a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutator {
    /// `+=`
    Add,
    /// `-=`
    Sub,
    /// `*=`
    Mul,
    /// `/=`
    Div,
    /// `%=`
    Mod,
    /// `insert` into a set or map.
    Insert,
    /// `delete` from a set or map.
    Delete,
}

impl Mutator {
    fn as_str(self) -> &'static str {
        match self {
            Mutator::Add => "+=",
            Mutator::Sub => "-=",
            Mutator::Mul => "*=",
            Mutator::Div => "/=",
            Mutator::Mod => "%=",
            Mutator::Insert => "insert",
            Mutator::Delete => "delete",
        }
    }
}

/// One mutation: `[column, mutator, value]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation {
    /// Column.
    pub column: String,
    /// Operation.
    pub mutator: Mutator,
    /// Operand.
    pub value: Datum,
}

impl Mutation {
    /// A mutation of `column`.
    pub fn new(column: &str, mutator: Mutator, value: Datum) -> Self {
        Mutation {
            column: column.to_string(),
            mutator,
            value,
        }
    }
}

/// What a `wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitUntil {
    /// Until the selected rows equal `rows`.
    Eq,
    /// Until they differ.
    Ne,
}

/// One operation of a `transact` (RFC 7047 §5.2).
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    /// Inserts a row; `uuid_name` lets later operations reference it.
    Insert {
        /// Table.
        table: String,
        /// Column values (others get defaults).
        row: Row,
        /// `uuid-name`.
        uuid_name: Option<String>,
    },
    /// Reads rows.
    Select {
        /// Table.
        table: String,
        /// Conditions (all must hold).
        conditions: Vec<Condition>,
        /// Columns to return (`None` = all).
        columns: Option<Vec<String>>,
    },
    /// Sets columns of the matching rows.
    Update {
        /// Table.
        table: String,
        /// Conditions.
        conditions: Vec<Condition>,
        /// New column values.
        row: Row,
    },
    /// Changes columns of the matching rows relative to their current value.
    Mutate {
        /// Table.
        table: String,
        /// Conditions.
        conditions: Vec<Condition>,
        /// Mutations.
        mutations: Vec<Mutation>,
    },
    /// Deletes the matching rows.
    Delete {
        /// Table.
        table: String,
        /// Conditions.
        conditions: Vec<Condition>,
    },
    /// Aborts (or blocks up to `timeout_ms`) unless the matching rows' `columns` compare
    /// with `rows` as `until` says: optimistic concurrency.
    Wait {
        /// Table.
        table: String,
        /// Conditions.
        conditions: Vec<Condition>,
        /// Columns compared.
        columns: Vec<String>,
        /// Comparison.
        until: WaitUntil,
        /// Expected rows (only `columns`).
        rows: Vec<Row>,
        /// How long the server may wait; `None` or 0 = check once.
        timeout_ms: Option<u64>,
    },
    /// Writes a comment to the database log.
    Comment(String),
}

impl Operation {
    /// JSON encoding (see its [`Serialize`]).
    pub fn to_json(&self) -> Value {
        to_value(self)
    }
}

/// The result of one successful operation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpResult {
    /// `insert`: the new row's UUID.
    pub uuid: Option<Uuid>,
    /// `update`, `mutate`, `delete`: rows affected.
    pub count: Option<u64>,
    /// `select`: the rows.
    pub rows: Option<Vec<Row>>,
}

/// A transaction the server refused; everything in it was rolled back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} failed: {error}{}", match .index { Some(i) => format!("operation {i}"), None => "commit".to_string() }, if .details.is_empty() { String::new() } else { format!(" ({})", .details) })]
pub struct TransactError {
    /// Index of the failing operation; `None` for a commit-time error (e.g. a
    /// duplicate in an index, a referential integrity violation).
    pub index: Option<usize>,
    /// The error tag (`constraint violation`, `timed out`, ...).
    pub error: String,
    /// The server's details.
    pub details: String,
}

/// Decodes a `transact` result for `n_ops` operations.
pub fn parse_transact_result(
    result: &Value,
    n_ops: usize,
) -> Result<Result<Vec<OpResult>, TransactError>, DataError> {
    let Value::Array(items) = result else {
        return Err(DataError(result.to_string()));
    };
    let mut out = Vec::with_capacity(n_ops);
    for (i, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            if item.is_null() {
                continue; // operations after a failed one are not run
            }
            return Err(DataError(item.to_string()));
        };
        if let Some(e) = o.get("error") {
            let error = e
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string());
            let details = o
                .get("details")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Ok(Err(TransactError {
                index: (i < n_ops).then_some(i),
                error,
                details,
            }));
        }
        let uuid = match o.get("uuid") {
            Some(u) => Some(
                Atom::from_json(u)?
                    .as_uuid()
                    .cloned()
                    .ok_or_else(|| DataError(u.to_string()))?,
            ),
            None => None,
        };
        let rows = match o.get("rows") {
            Some(Value::Array(rows)) => {
                Some(rows.iter().map(row_from_json).collect::<Result<_, _>>()?)
            }
            Some(other) => return Err(DataError(other.to_string())),
            None => None,
        };
        out.push(OpResult {
            uuid,
            count: o.get("count").and_then(Value::as_u64),
            rows,
        });
    }
    Ok(Ok(out))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn empty_set_and_map_are_tagged() {
        assert_eq!(Datum::empty_set().to_json(), json!(["set", []]));
        assert_eq!(Datum::empty_map().to_json(), json!(["map", []]));
    }

    #[test]
    fn data_round_trip() {
        let cases = vec![
            Datum::integer(-5),
            Datum::string("x\"y"),
            Datum::Atom(Atom::Boolean(true)),
            Datum::Atom(Atom::Real(1.5)),
            Datum::Atom(Atom::Uuid(Uuid("0f0e...".into()))),
            Datum::Atom(Atom::NamedUuid("p0".into())),
            Datum::Set(vec![
                Atom::Uuid(Uuid("a".into())),
                Atom::Uuid(Uuid("b".into())),
            ]),
            Datum::Map(vec![(Atom::string("k"), Atom::string("v"))]),
            Datum::empty_set(),
            Datum::empty_map(),
        ];
        for d in cases {
            assert_eq!(Datum::from_json(&d.to_json()).unwrap(), d, "{d:?}");
        }
    }

    #[test]
    fn accessors() {
        let m = Datum::from_json(&json!(["map", [["a", "1"], ["b", "2"]]])).unwrap();
        assert_eq!(m.as_string_map().get("b").map(String::as_str), Some("2"));
        assert_eq!(
            Datum::from_json(&json!(["set", []])).unwrap().as_i64(),
            None
        );
        assert_eq!(Datum::from_json(&json!(7)).unwrap().as_i64(), Some(7));
        assert_eq!(
            Datum::from_json(&json!(["set", [["uuid", "u1"]]]))
                .unwrap()
                .as_uuids(),
            vec![Uuid("u1".into())]
        );
    }

    #[test]
    fn bad_data_is_an_error() {
        for v in [
            json!(null),
            json!({}),
            json!(["set"]),
            json!(["map", [["a"]]]),
            json!(["uuid", 1]),
            json!(["bogus", "x"]),
        ] {
            assert!(Datum::from_json(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn operations_encode() {
        let mut row = Row::new();
        row.insert("name".into(), Datum::string("p"));
        row.insert(
            "interfaces".into(),
            Datum::set(vec![Atom::NamedUuid("i".into())]),
        );
        let ops = [
            Operation::Insert {
                table: "Port".into(),
                row: row.clone(),
                uuid_name: Some("p".into()),
            },
            Operation::Mutate {
                table: "Bridge".into(),
                conditions: vec![Condition::eq("name", Datum::string("br"))],
                mutations: vec![Mutation::new(
                    "ports",
                    Mutator::Insert,
                    Datum::set(vec![Atom::NamedUuid("p".into())]),
                )],
            },
            Operation::Wait {
                table: "Bridge".into(),
                conditions: vec![],
                columns: vec!["name".into()],
                until: WaitUntil::Eq,
                rows: vec![],
                timeout_ms: Some(0),
            },
            Operation::Delete {
                table: "Port".into(),
                conditions: vec![Condition::uuid(&Uuid("u".into()))],
            },
            Operation::Select {
                table: "Port".into(),
                conditions: vec![],
                columns: Some(vec!["name".into()]),
            },
            Operation::Update {
                table: "Interface".into(),
                conditions: vec![],
                row: Row::from([("options".to_string(), Datum::empty_map())]),
            },
            Operation::Comment("why".into()),
        ];
        let got: Vec<Value> = ops.iter().map(Operation::to_json).collect();
        assert_eq!(
            Value::Array(got),
            json!([
                {"op":"insert","table":"Port","uuid-name":"p",
                 "row":{"interfaces":["set",[["named-uuid","i"]]],"name":"p"}},
                {"op":"mutate","table":"Bridge","where":[["name","==","br"]],
                 "mutations":[["ports","insert",["set",[["named-uuid","p"]]]]]},
                {"op":"wait","table":"Bridge","where":[],"columns":["name"],"until":"==",
                 "rows":[],"timeout":0},
                {"op":"delete","table":"Port","where":[["_uuid","==",["uuid","u"]]]},
                {"op":"select","table":"Port","where":[],"columns":["name"]},
                {"op":"update","table":"Interface","where":[],"row":{"options":["map",[]]}},
                {"op":"comment","comment":"why"}
            ])
        );
    }

    #[test]
    fn transact_results() {
        let ok = parse_transact_result(
            &json!([{"uuid":["uuid","u1"]},{"count":2},{"rows":[{"name":"a"}]},{}]),
            4,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok[0].uuid, Some(Uuid("u1".into())));
        assert_eq!(ok[1].count, Some(2));
        assert_eq!(ok[2].rows.as_ref().unwrap()[0]["name"], Datum::string("a"));

        let op_err = parse_transact_result(
            &json!([{"count":1},{"error":"constraint violation","details":"bad"},null]),
            3,
        )
        .unwrap()
        .unwrap_err();
        assert_eq!(op_err.index, Some(1));
        assert_eq!(
            op_err.to_string(),
            "operation 1 failed: constraint violation (bad)"
        );

        let commit_err = parse_transact_result(
            &json!([{"uuid":["uuid","u1"]},{"error":"referential integrity violation"}]),
            1,
        )
        .unwrap()
        .unwrap_err();
        assert_eq!(commit_err.index, None);
        assert!(parse_transact_result(&json!({"x":1}), 1).is_err());
    }
}
