//! Static cost estimation of `x-kubernetes-validations` rules, as a real API server does when a
//! CustomResourceDefinition is created or updated, so that a rule a cluster would refuse is
//! refused here too.
//!
//! A port of the parts that matter of apiextensions-apiserver's check (`validation.go`,
//! `cel_validation.go`, `schema/cel/compilation.go`), the size model of apiserver's
//! `cel/common/schemas.go` and `cel/library/cost.go`, and cel-go's `checker/cost.go` estimator.
//! It is an approximation: the rule is parsed but not type-checked, so types are inferred from
//! the schema and a table of functions. Where this estimator cannot tell a type, it guesses the
//! cheap side, so that it never refuses what a cluster accepts; where it can, it follows cel-go,
//! including its worst cases (a string of unknown size counts as 2^64 - 1 characters). See
//! `docs/apiserver-double.md` for what is and is not modelled.

use std::collections::BTreeMap;

use kube::core::cel::cel::IdedExpr;
use kube::core::cel::cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, LiteralValue, SelectExpr,
};
use serde_json::Value;

/// `StaticEstimatedCostLimit` (apiextensions validation.go): the most one rule or one
/// messageExpression may cost.
pub const STATIC_ESTIMATED_COST_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit` (apiextensions validation.go): the most all rules and message
/// expressions of one schema may cost together.
pub const STATIC_ESTIMATED_CRD_COST_LIMIT: u64 = 100_000_000;
/// `MaxRequestSizeBytes` (apiserver `pkg/cel/limits.go`, 3 MiB): what an unbounded string, list
/// or map is assumed to fill.
pub const MAX_REQUEST_SIZE_BYTES: u64 = 3 * 1024 * 1024;

// cel-go `common/cost.go`.
const SELECT_AND_IDENT_COST: u64 = 1;
const LIST_CREATE_BASE_COST: u64 = 10;
const MAP_CREATE_BASE_COST: u64 = 30;
const STRUCT_CREATE_BASE_COST: u64 = 40;
const STRING_TRAVERSAL_COST_FACTOR: f64 = 0.1;
const REGEX_STRING_LENGTH_COST_FACTOR: f64 = 0.25;

// apiserver `pkg/cel/limits.go`: the smallest JSON a value of each type serialises to, and the
// longest date and duration strings.
const MIN_STRING_SIZE: u64 = 2;
const MIN_BOOL_SIZE: u64 = 4;
const MIN_NUMBER_SIZE: u64 = 1;
const MIN_DURATION_SIZE_JSON: u64 = 3;
const MAX_DURATION_SIZE_JSON: u64 = 32;
const JSON_DATE_SIZE: u64 = 12;
const MIN_DATETIME_SIZE_JSON: u64 = 21;
const MAX_DATETIME_SIZE_JSON: u64 = 32;

/// A `[min, max]` range of either a size or a cost; all arithmetic saturates at `u64::MAX`,
/// as cel-go's does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub min: u64,
    pub max: u64,
}

impl Estimate {
    pub const fn fixed(n: u64) -> Self {
        Estimate { min: n, max: n }
    }

    const UNKNOWN: Estimate = Estimate {
        min: 0,
        max: u64::MAX,
    };

    fn add(self, o: Estimate) -> Self {
        Estimate {
            min: self.min.saturating_add(o.min),
            max: self.max.saturating_add(o.max),
        }
    }

    fn mul(self, o: Estimate) -> Self {
        Estimate {
            min: self.min.saturating_mul(o.min),
            max: self.max.saturating_mul(o.max),
        }
    }

    fn union(self, o: Estimate) -> Self {
        Estimate {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }

    /// cel-go's `MultiplyByCostFactor`: times a factor, rounded up.
    fn factor(self, f: f64) -> Self {
        Estimate {
            min: mul_factor(self.min, f),
            max: mul_factor(self.max, f),
        }
    }
}

/// `ceil(x * f)`, saturating (an `as` cast from f64 saturates too).
fn mul_factor(x: u64, f: f64) -> u64 {
    let xf = x as f64;
    if xf > 0.0 && f > 0.0 && xf > u64::MAX as f64 / f {
        return u64::MAX;
    }
    (xf * f).ceil() as u64
}

/// apiextensions' `multiplyWithOverflowGuard`: a zero cost stays zero whatever the cardinality.
fn times_cardinality(cost: u64, cardinality: u64) -> u64 {
    if cost == 0 {
        0
    } else {
        cost.saturating_mul(cardinality)
    }
}

/// The CEL type of a schema node: apiserver's `DeclType`, reduced to what cost estimation reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    /// `x-kubernetes-int-or-string`.
    Dyn,
    List,
    Map,
    Object,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decl {
    pub kind: Kind,
    /// `MaxElements`: characters (times four for `maxLength`: it counts code points, the size
    /// bytes) of a string, items of a list, properties of a map; 0 for everything else.
    pub max_elements: u64,
    /// `MinSerializedSize`: the shortest JSON of a value, to guess how many fit in a request.
    pub min_size: u64,
    /// Object fields by their CEL (escaped) name.
    pub fields: BTreeMap<String, Decl>,
    /// List items or map values.
    pub elem: Option<Box<Decl>>,
}

/// The key of a map: a string whose size the real server's estimator leaves at 0.
static MAP_KEY: Decl = Decl {
    kind: Kind::String,
    max_elements: 0,
    min_size: MIN_STRING_SIZE,
    fields: BTreeMap::new(),
    elem: None,
};

impl Decl {
    fn simple(kind: Kind, max_elements: u64, min_size: u64) -> Self {
        Decl {
            kind,
            max_elements,
            min_size,
            fields: BTreeMap::new(),
            elem: None,
        }
    }

    /// apiserver's `SchemaDeclType`; None for what CEL cannot see (no type, or a list or map of
    /// such). `resource_root`: the CRD's root or an embedded resource, which always has
    /// apiVersion, kind and metadata.name/generateName.
    pub fn from_schema(s: &Value, resource_root: bool) -> Option<Decl> {
        if s["x-kubernetes-int-or-string"] == Value::Bool(true) {
            let max = match s["maxLength"].as_u64() {
                Some(n) => n.saturating_mul(4),
                None => MAX_REQUEST_SIZE_BYTES - 2,
            };
            return Some(Decl::simple(Kind::Dyn, max, 1));
        }
        let owned;
        let s = if resource_root {
            owned = with_type_and_object_meta(s);
            &owned
        } else {
            s
        };
        match s["type"].as_str()? {
            "array" => {
                let items = s.get("items")?;
                let item = Decl::from_schema(items, embedded(items))?;
                let max = s["maxItems"]
                    .as_u64()
                    .unwrap_or((MAX_REQUEST_SIZE_BYTES - 2) / (item.min_size + 1));
                Some(Decl {
                    elem: Some(Box::new(item)),
                    ..Decl::simple(Kind::List, max, 2)
                })
            }
            "object" => {
                if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                    let value = Decl::from_schema(ap, embedded(ap))?;
                    let max = s["maxProperties"]
                        .as_u64()
                        .unwrap_or((MAX_REQUEST_SIZE_BYTES - 2) / (value.min_size + 6));
                    return Some(Decl {
                        elem: Some(Box::new(value)),
                        ..Decl::simple(Kind::Map, max, 2)
                    });
                }
                let required: Vec<&str> = s["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut obj = Decl::simple(Kind::Object, 0, 2);
                for (name, prop) in s["properties"].as_object().into_iter().flatten() {
                    let Some(field) = Decl::from_schema(prop, embedded(prop)) else {
                        continue;
                    };
                    // Required fields without a default are always in the JSON.
                    if required.contains(&name.as_str()) && prop.get("default").is_none() {
                        obj.min_size += name.len() as u64 + field.min_size + 4;
                    }
                    if let Some(escaped) = escape(name) {
                        obj.fields.insert(escaped, field);
                    }
                }
                Some(obj)
            }
            "string" => Some(match s["format"].as_str() {
                Some("byte") => Decl::simple(
                    Kind::Bytes,
                    s["maxLength"]
                        .as_u64()
                        .unwrap_or(MAX_REQUEST_SIZE_BYTES - 2),
                    MIN_STRING_SIZE,
                ),
                Some("duration") => Decl::simple(
                    Kind::Duration,
                    MAX_DURATION_SIZE_JSON,
                    MIN_DURATION_SIZE_JSON,
                ),
                Some("date") => Decl::simple(Kind::Timestamp, JSON_DATE_SIZE, JSON_DATE_SIZE),
                Some("date-time") => Decl::simple(
                    Kind::Timestamp,
                    MAX_DATETIME_SIZE_JSON,
                    MIN_DATETIME_SIZE_JSON,
                ),
                _ => {
                    let enum_max = s["enum"].as_array().map(|values| {
                        values
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|v| v.len() as u64)
                            .max()
                            .unwrap_or(0)
                    });
                    let max = match (s["maxLength"].as_u64(), enum_max) {
                        (Some(n), _) => n.saturating_mul(4),
                        (None, Some(e)) => e,
                        (None, None) => MAX_REQUEST_SIZE_BYTES - 2,
                    };
                    Decl::simple(Kind::String, max, MIN_STRING_SIZE)
                }
            }),
            "boolean" => Some(Decl::simple(Kind::Bool, 0, MIN_BOOL_SIZE)),
            "number" => Some(Decl::simple(Kind::Double, 0, MIN_NUMBER_SIZE)),
            "integer" => Some(Decl::simple(Kind::Int, 0, MIN_NUMBER_SIZE)),
            _ => None,
        }
    }

    /// `maxCardinality`: how often a rule on a node of this type can run in one request when
    /// some list or map above it is unbounded.
    pub fn max_cardinality(&self) -> u64 {
        MAX_REQUEST_SIZE_BYTES / (self.min_size + 1)
    }
}

fn embedded(s: &Value) -> bool {
    s["x-kubernetes-embedded-resource"] == Value::Bool(true)
}

/// `WithTypeAndObjectMeta`: a resource root always exposes apiVersion, kind and
/// metadata.name/generateName (as unbounded strings, unless the schema already declares them).
fn with_type_and_object_meta(s: &Value) -> Value {
    let is_type = |v: &Value, t: &str| v["type"].as_str() == Some(t);
    let p = &s["properties"];
    if is_type(&p["kind"], "string")
        && is_type(&p["apiVersion"], "string")
        && is_type(&p["metadata"], "object")
        && is_type(&p["metadata"]["properties"]["name"], "string")
        && is_type(&p["metadata"]["properties"]["generateName"], "string")
    {
        return s.clone();
    }
    let mut out = s.clone();
    let string = serde_json::json!({"type": "string"});
    out["properties"]["kind"] = string.clone();
    out["properties"]["apiVersion"] = string.clone();
    out["properties"]["metadata"] = serde_json::json!({"type": "object",
        "properties": {"name": string.clone(), "generateName": string}});
    out
}

/// apiserver's `cel.Escape`: how a property name is spelled in CEL, or None if it cannot be.
pub fn escape(name: &str) -> Option<String> {
    const RESERVED: [&str; 21] = [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
                out.push_str("__underscores__");
            }
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// What the estimator knows of a value's type. `Unknown` is this estimator's own ignorance
/// (cel-go would know): it is costed as cheaply as possible.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    Null,
    List(Box<Ty>),
    Map(Box<Ty>),
    Object,
    /// `x-kubernetes-int-or-string`: sized by the schema like a string.
    Dyn,
    Unknown,
}

impl Ty {
    fn of(d: &Decl) -> Ty {
        match d.kind {
            Kind::Bool => Ty::Bool,
            Kind::Int => Ty::Int,
            Kind::Double => Ty::Double,
            Kind::String => Ty::String,
            Kind::Bytes => Ty::Bytes,
            Kind::Duration => Ty::Duration,
            Kind::Timestamp => Ty::Timestamp,
            Kind::Dyn => Ty::Dyn,
            Kind::List => Ty::List(Box::new(d.elem.as_deref().map_or(Ty::Unknown, Ty::of))),
            Kind::Map => Ty::Map(Box::new(d.elem.as_deref().map_or(Ty::Unknown, Ty::of))),
            Kind::Object => Ty::Object,
        }
    }

    /// cel-go's `isScalar`: a value of a fixed size (1).
    fn scalar(&self) -> bool {
        matches!(
            self,
            Ty::Bool | Ty::Int | Ty::Uint | Ty::Double | Ty::Duration | Ty::Timestamp
        )
    }

    fn stringish(&self) -> bool {
        matches!(self, Ty::String | Ty::Bytes)
    }

    fn elem(&self) -> Ty {
        match self {
            Ty::List(e) | Ty::Map(e) => (**e).clone(),
            _ => Ty::Unknown,
        }
    }
}

/// The sizes of a list or map literal's entries (cel-go's `entrySizeEstimate`).
#[derive(Debug, Clone, Copy)]
struct Entry {
    list: bool,
    key: Estimate,
    val: Estimate,
}

impl Entry {
    fn union(a: Option<Entry>, b: Option<Entry>) -> Option<Entry> {
        let (a, b) = (a?, b?);
        Some(Entry {
            list: a.list,
            key: a.key.union(b.key),
            val: a.val.union(b.val),
        })
    }
}

/// What the estimator knows of one expression (cel-go's `AstNode` plus its computed sizes).
#[derive(Debug, Clone)]
struct Node<'a> {
    ty: Ty,
    /// The schema type, when the value is (part of) `self` or `oldSelf`.
    decl: Option<&'a Decl>,
    /// cel-go's field path: a variable, then field names, `@items`, `@keys`, `@values`.
    path: Vec<String>,
    /// A size the expression itself gives (literals, results of sized calls).
    computed: Option<Estimate>,
    /// A local variable's size, the last resort.
    local: Option<Estimate>,
    entry: Option<Entry>,
    /// A non-negative integer literal (split's limit).
    uint_literal: Option<u64>,
}

impl<'a> Node<'a> {
    fn of(ty: Ty) -> Self {
        Node {
            ty,
            decl: None,
            path: Vec::new(),
            computed: None,
            local: None,
            entry: None,
            uint_literal: None,
        }
    }

    fn sized(ty: Ty, size: Estimate) -> Self {
        Node {
            computed: Some(size),
            ..Node::of(ty)
        }
    }

    fn typed(decl: Option<&'a Decl>, fallback: Ty, path: Vec<String>) -> Self {
        Node {
            ty: decl.map_or(fallback, Ty::of),
            decl,
            path,
            ..Node::of(Ty::Unknown)
        }
    }
}

fn child_path(path: &[String], part: &str) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(part.to_string());
    p
}

/// Parse errors, as the caller reports them.
pub type ParseError = String;

/// The worst-case cost of one expression (a rule or a messageExpression) whose `self` has
/// type `root`; an Err if it does not parse.
pub fn estimate(expression: &str, root: &Decl) -> Result<Estimate, ParseError> {
    let ast = kube::core::cel::cel::parser::Parser::new()
        .parse(expression)
        .map_err(|e| e.to_string())?;
    let mut c = Coster {
        root,
        locals: Vec::new(),
    };
    Ok(c.cost(&ast).0)
}

struct Coster<'a> {
    root: &'a Decl,
    locals: Vec<(String, Node<'a>)>,
}

/// Namespaces of global functions: `strings.quote(x)` is one function, not a call on `strings`.
const NAMESPACES: [&str; 6] = ["strings", "sets", "math", "base64", "optional", "cel"];

impl<'a> Coster<'a> {
    /// The real server's `sizeEstimator`: walk the path (minus its variable) down the type of
    /// `self`. A one-element path therefore gives the size of `self` itself, a quirk kept.
    fn lookup(&self, path: &[String]) -> Option<u64> {
        let (_, rest) = path.split_first()?;
        let mut node = self.root;
        for (i, part) in rest.iter().enumerate() {
            node = match part.as_str() {
                "@items" | "@values" => node.elem.as_deref()?,
                "@keys" if node.kind == Kind::Map && i + 1 == rest.len() => return Some(0),
                "@keys" => return None,
                name => node
                    .fields
                    .get(name)
                    .or_else(|| node.fields.get(&format!("__{name}__")))?,
            };
        }
        Some(node.max_elements)
    }

    /// cel-go's `computeSize`: None when nothing bounds the value.
    fn size(&self, n: &Node) -> Option<Estimate> {
        if let Some(s) = n.computed {
            return Some(s);
        }
        if let Some(max) = self.lookup(&n.path) {
            return Some(Estimate { min: 0, max });
        }
        if n.ty.scalar() {
            return Some(Estimate::fixed(1));
        }
        n.local
    }

    /// cel-go's `sizeOrUnknown`, except that a value of a type this estimator could not infer
    /// counts as empty rather than as 2^64 - 1 long: guessing cheap never refuses a good rule.
    fn size_or_unknown(&self, n: &Node) -> Estimate {
        match self.size(n) {
            Some(s) => s,
            None if n.ty == Ty::Unknown => Estimate::fixed(0),
            None => Estimate::UNKNOWN,
        }
    }

    /// The items of a list, as apiserver's `listElementNode` sees them: by path only.
    fn items_size(&self, list: &Node) -> Estimate {
        if list.path.is_empty() {
            return Estimate::UNKNOWN;
        }
        match self.lookup(&child_path(&list.path, "@items")) {
            Some(max) => Estimate { min: 0, max },
            None => Estimate::UNKNOWN,
        }
    }

    fn local(&self, name: &str) -> Option<&Node<'a>> {
        self.locals
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    fn cost(&mut self, e: &IdedExpr) -> (Estimate, Node<'a>) {
        match &e.expr {
            Expr::Literal(l) => (Estimate::fixed(0), literal(l)),
            Expr::Ident(name) => (Estimate::fixed(SELECT_AND_IDENT_COST), self.ident(name)),
            Expr::Select(sel) => self.select(sel),
            Expr::Call(call) => self.call(call),
            Expr::List(list) => {
                let mut cost = Estimate::fixed(LIST_CREATE_BASE_COST);
                let mut item = Estimate {
                    min: if list.elements.is_empty() {
                        0
                    } else {
                        u64::MAX
                    },
                    max: 0,
                };
                let mut elem_ty = Ty::Unknown;
                for el in &list.elements {
                    let (c, n) = self.cost(el);
                    cost = cost.add(c);
                    item = item.union(self.size_or_unknown(&n));
                    if elem_ty == Ty::Unknown {
                        elem_ty = n.ty.clone();
                    }
                }
                let mut n = Node::sized(
                    Ty::List(Box::new(elem_ty)),
                    Estimate::fixed(list.elements.len() as u64),
                );
                n.entry = Some(Entry {
                    list: true,
                    key: Estimate::fixed(1),
                    val: item,
                });
                (cost, n)
            }
            Expr::Map(map) => {
                let mut cost = Estimate::fixed(MAP_CREATE_BASE_COST);
                let start = if map.entries.is_empty() { 0 } else { u64::MAX };
                let mut key = Estimate { min: start, max: 0 };
                let mut val = key;
                let mut val_ty = Ty::Unknown;
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(m) = &entry.expr {
                        let (kc, kn) = self.cost(&m.key);
                        let (vc, vn) = self.cost(&m.value);
                        cost = cost.add(kc).add(vc);
                        key = key.union(self.size_or_unknown(&kn));
                        val = val.union(self.size_or_unknown(&vn));
                        if val_ty == Ty::Unknown {
                            val_ty = vn.ty.clone();
                        }
                    }
                }
                let mut n = Node::sized(
                    Ty::Map(Box::new(val_ty)),
                    Estimate::fixed(map.entries.len() as u64),
                );
                n.entry = Some(Entry {
                    list: false,
                    key,
                    val,
                });
                (cost, n)
            }
            Expr::Struct(st) => {
                let mut cost = Estimate::fixed(STRUCT_CREATE_BASE_COST);
                for entry in &st.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        cost = cost.add(self.cost(&f.value).0);
                    }
                }
                (cost, Node::of(Ty::Unknown))
            }
            Expr::Comprehension(comp) => self.comprehension(comp),
            Expr::Unspecified => (Estimate::fixed(0), Node::of(Ty::Unknown)),
        }
    }

    fn ident(&self, name: &str) -> Node<'a> {
        if let Some(local) = self.local(name) {
            return Node {
                computed: None,
                uint_literal: None,
                ..local.clone()
            };
        }
        let path = vec![name.to_string()];
        match name {
            "self" | "oldSelf" => Node::typed(Some(self.root), Ty::Unknown, path),
            _ => Node::typed(None, Ty::Unknown, path),
        }
    }

    fn select(&mut self, sel: &SelectExpr) -> (Estimate, Node<'a>) {
        let (cost, operand) = self.cost(&sel.operand);
        if sel.test {
            // has(): the real server sets `PresenceTestHasCost(false)`.
            return (cost, Node::of(Ty::Bool));
        }
        let extra = match operand.ty {
            Ty::Object | Ty::Map(_) => SELECT_AND_IDENT_COST,
            _ => 0,
        };
        let decl = match operand.decl {
            Some(d) if d.kind == Kind::Object => d
                .fields
                .get(&sel.field)
                .or_else(|| d.fields.get(&format!("__{}__", sel.field))),
            Some(d) if d.kind == Kind::Map => d.elem.as_deref(),
            _ => None,
        };
        let fallback = match &operand.ty {
            Ty::Map(v) => (**v).clone(),
            _ => Ty::Unknown,
        };
        let node = Node::typed(decl, fallback, child_path(&operand.path, &sel.field));
        (cost.add(Estimate::fixed(extra)), node)
    }

    fn comprehension(&mut self, comp: &ComprehensionExpr) -> (Estimate, Node<'a>) {
        let (range_cost, range) = self.cost(&comp.iter_range);
        let (init_cost, init) = self.cost(&comp.accu_init);
        let accu = Node {
            local: self.size(&init),
            computed: None,
            ..init.clone()
        };
        self.locals.push((comp.accu_var.clone(), accu));
        let is_list = match range.entry {
            Some(e) => e.list,
            None => matches!(range.ty, Ty::List(_)),
        };
        let item_decl = match range.decl {
            Some(d) if d.kind == Kind::List => d.elem.as_deref(),
            Some(d) if d.kind == Kind::Map => Some(&MAP_KEY),
            _ => None,
        };
        let (key_ty, val_ty) = match &range.ty {
            Ty::List(e) => (Ty::Int, (**e).clone()),
            Ty::Map(v) => (Ty::String, (**v).clone()),
            _ => (Ty::Unknown, Ty::Unknown),
        };
        let pushed = match &comp.iter_var2 {
            // Two-variable comprehensions: index or key, then item or value.
            Some(second) => {
                let key_part = if is_list { "@indices" } else { "@keys" };
                let val_part = if is_list { "@items" } else { "@values" };
                let key = Node {
                    local: range.entry.map(|e| e.key),
                    decl: if is_list { None } else { Some(&MAP_KEY) },
                    ..Node::typed(None, key_ty, child_path(&range.path, key_part))
                };
                let val = Node {
                    local: range.entry.map(|e| e.val),
                    ..Node::typed(
                        range.decl.and_then(|d| d.elem.as_deref()),
                        val_ty,
                        child_path(&range.path, val_part),
                    )
                };
                self.locals.push((comp.iter_var.clone(), key));
                self.locals.push((second.clone(), val));
                2
            }
            None => {
                let (part, size, ty) = if is_list {
                    ("@items", range.entry.map(|e| e.val), val_ty)
                } else {
                    ("@keys", range.entry.map(|e| e.key), key_ty)
                };
                let item = Node {
                    local: size,
                    ..Node::typed(item_decl, ty, child_path(&range.path, part))
                };
                self.locals.push((comp.iter_var.clone(), item));
                1
            }
        };
        let (loop_cost, _) = self.cost(&comp.loop_cond);
        let (step_cost, step) = self.cost(&comp.loop_step);
        for _ in 0..pushed {
            self.locals.pop();
        }
        let (result_cost, result) = self.cost(&comp.result);
        self.locals.pop();
        let count = self.size_or_unknown(&range);
        let cost = range_cost
            .add(init_cost)
            .add(result_cost)
            .add(count.mul(step_cost.add(loop_cost)));
        let mut node = Node::of(match &step.ty {
            Ty::List(_) => step.ty.clone(),
            _ => result.ty.clone(),
        });
        match &comp.accu_init.expr {
            Expr::Literal(_) => node.computed = self.size(&init),
            Expr::List(_) | Expr::Map(_) => {
                node.computed = Some(count);
                node.entry = step.entry;
            }
            _ => {}
        }
        (cost, node)
    }

    fn call(&mut self, call: &CallExpr) -> (Estimate, Node<'a>) {
        let mut name = call.func_name.clone();
        let mut target_expr = call.target.as_deref();
        // `strings.quote(x)`: a namespaced global function, not a method of a variable.
        if let Some(IdedExpr {
            expr: Expr::Ident(ns),
            ..
        }) = target_expr
            && NAMESPACES.contains(&ns.as_str())
            && self.local(ns).is_none()
        {
            name = format!("{ns}.{name}");
            target_expr = None;
        }
        let mut args = Vec::with_capacity(call.args.len());
        for a in &call.args {
            args.push(self.cost(a));
        }
        if name == "dyn" && target_expr.is_none() && args.len() == 1 {
            let (c, n) = args.remove(0);
            return (c.add(Estimate::fixed(1)), n);
        }
        let (target_cost, target) = match target_expr {
            Some(t) => {
                let (c, n) = self.cost(t);
                (c, Some(n))
            }
            None => (Estimate::fixed(0), None),
        };
        let arg_sum = args
            .iter()
            .fold(Estimate::fixed(0), |acc, (c, _)| acc.add(*c));
        let nodes: Vec<&Node> = args.iter().map(|(_, n)| n).collect();
        let (cost, node) = self.function(&name, target.as_ref(), &nodes, arg_sum, &args);
        (target_cost.add(cost), node)
    }

    /// One call's cost (without its target's) and what its result is: apiserver's
    /// `library.CostEstimator` first, then cel-go's `functionCost`, as the real server asks them.
    fn function(
        &self,
        name: &str,
        target: Option<&Node<'a>>,
        args: &[&Node<'a>],
        arg_sum: Estimate,
        costs: &[(Estimate, Node<'a>)],
    ) -> (Estimate, Node<'a>) {
        let ty = result_type(name, target, args);
        let plain = |cost: Estimate| (cost.add(arg_sum), Node::of(ty.clone()));
        let sized =
            |cost: Estimate, size: Estimate| (cost.add(arg_sum), Node::sized(ty.clone(), size));
        let one = Estimate::fixed(1);
        let trav = STRING_TRAVERSAL_COST_FACTOR;
        // apiserver `library/cost.go`.
        match (name, target) {
            ("isSorted" | "sum" | "max" | "min" | "indexOf" | "lastIndexOf", Some(t)) => {
                return match &t.ty {
                    Ty::List(elem) => {
                        let mut per_item = one;
                        if elem.stringish() {
                            per_item = per_item.add(self.items_size(t).factor(trav));
                        }
                        plain(self.size_or_unknown(t).mul(per_item))
                    }
                    _ => plain(self.size_or_unknown(t).factor(trav)),
                };
            }
            ("url", None) if args.len() == 1 => {
                return plain(self.size_or_unknown(args[0]).factor(trav));
            }
            ("lowerAscii" | "upperAscii" | "substring" | "trim", Some(t)) => {
                let sz = self.size_or_unknown(t);
                return sized(sz.factor(trav), sz);
            }
            ("replace", Some(t)) if args.len() >= 2 => {
                let sz = self.size_or_unknown(t);
                let size = replace_size(
                    sz,
                    self.size_or_unknown(args[0]),
                    self.size_or_unknown(args[1]),
                );
                return sized(sz.factor(2.0 * trav), size);
            }
            ("split", Some(t)) => {
                let sz = self.size_or_unknown(t);
                let max = match args.get(1) {
                    Some(limit) if limit.computed.is_some() && limit.uint_literal.is_some() => {
                        limit.uint_literal.unwrap_or(sz.max)
                    }
                    _ => sz.max,
                };
                return sized(sz.factor(2.0 * trav), Estimate { min: 0, max });
            }
            ("join", Some(t)) => {
                let list = self.size_or_unknown(t);
                let mut sz = Estimate::fixed(0);
                if matches!(t.ty, Ty::List(_)) {
                    sz = list.mul(self.items_size(t));
                }
                if let Some(sep) = args.first() {
                    let separators = Estimate {
                        min: list.min.saturating_sub(1),
                        max: list.max.saturating_sub(1),
                    };
                    sz = sz.add(self.size_or_unknown(sep).mul(separators));
                }
                return sized(sz.factor(trav), sz);
            }
            ("find" | "findAll", Some(t)) if !args.is_empty() => {
                let sz = self.size_or_unknown(t);
                let str_cost = sz.add(one).factor(trav);
                let regex_cost = self
                    .size_or_unknown(args[0])
                    .factor(REGEX_STRING_LENGTH_COST_FACTOR);
                return sized(
                    str_cost.mul(regex_cost),
                    Estimate {
                        min: 0,
                        max: sz.max,
                    },
                );
            }
            ("cidr" | "isIP" | "isCIDR" | "quantity" | "isQuantity", Some(_))
                if !args.is_empty() =>
            {
                return plain(self.size_or_unknown(args[0]).factor(trav));
            }
            ("ip", Some(_)) if !args.is_empty() => {
                return plain(self.size_or_unknown(args[0]).factor(trav));
            }
            ("ip", Some(_))
            | (
                "masked"
                | "prefixLength"
                | "family"
                | "isUnspecified"
                | "isLoopback"
                | "isLinkLocalMulticast"
                | "isLinkLocalUnicast",
                _,
            )
            | (
                "sign" | "asInteger" | "isInteger" | "asApproximateFloat" | "isGreaterThan"
                | "isLessThan" | "compareTo" | "add" | "sub",
                _,
            ) => return plain(one),
            ("containsIP" | "containsCIDR", Some(_)) if !args.is_empty() => {
                let ip = Estimate { min: 4, max: 16 };
                let mut cost = ip.add(ip).factor(trav);
                if name == "containsCIDR" {
                    cost = cost.add(ip.factor(trav)).add(one);
                }
                if args[0].ty == Ty::String {
                    cost = cost.add(self.size_or_unknown(args[0]).factor(trav));
                }
                return plain(cost);
            }
            _ => {}
        }
        // cel-go `checker/cost.go`.
        match (name, target) {
            ("format", Some(t)) if args.len() == 1 => {
                // Newer cel-go bounds the result by the format and its arguments; older leaves
                // it unknown. The bounded one is the cheaper guess.
                let sz = self.size_or_unknown(t);
                sized(sz.factor(trav), sz.add(self.size_or_unknown(args[0])))
            }
            ("bytes", None) if args.len() == 1 && args[0].ty == Ty::String => {
                let sz = self.size_or_unknown(args[0]);
                sized(
                    sz.factor(trav),
                    Estimate {
                        min: sz.min,
                        max: sz.max.saturating_mul(4),
                    },
                )
            }
            ("string", None) if args.len() == 1 && args[0].ty == Ty::Bytes => {
                let sz = self.size_or_unknown(args[0]);
                sized(
                    sz.factor(trav),
                    Estimate {
                        min: sz.min / 4,
                        max: sz.max,
                    },
                )
            }
            ("strings.quote", None) if args.len() == 1 => {
                let sz = self.size_or_unknown(args[0]);
                sized(
                    sz.factor(trav),
                    Estimate {
                        min: sz.min.saturating_add(2),
                        max: sz.max.saturating_mul(2).saturating_add(2),
                    },
                )
            }
            ("startsWith" | "endsWith", Some(_)) if args.len() == 1 => {
                plain(self.size_or_unknown(args[0]).factor(trav))
            }
            ("@in", None) if args.len() == 2 && matches!(args[1].ty, Ty::List(_)) => {
                plain(self.size_or_unknown(args[1]))
            }
            ("matches", Some(t)) if args.len() == 1 => {
                let str_cost = self.size_or_unknown(t).add(one).factor(trav);
                let regex_cost = self
                    .size_or_unknown(args[0])
                    .factor(REGEX_STRING_LENGTH_COST_FACTOR);
                plain(str_cost.mul(regex_cost))
            }
            ("contains", Some(t))
                if args.len() == 1 && matches!(t.ty, Ty::String | Ty::Unknown) =>
            {
                let str_cost = self.size_or_unknown(t).factor(trav);
                let sub_cost = self.size_or_unknown(args[0]).factor(trav);
                plain(str_cost.mul(sub_cost))
            }
            ("_||_" | "_&&_", None) if costs.len() == 2 => {
                let (lhs, rhs) = (costs[0].0, costs[1].0);
                let cost = Estimate {
                    min: lhs.min,
                    max: lhs.max.saturating_add(rhs.max),
                };
                (cost, Node::of(Ty::Bool))
            }
            ("_?_:_", None) if costs.len() == 3 => {
                let cost = costs[0].0.add(costs[1].0.union(costs[2].0));
                let size = self
                    .size_or_unknown(args[1])
                    .union(self.size_or_unknown(args[2]));
                let mut node = Node::sized(ty.clone(), size);
                node.entry = Entry::union(args[1].entry, args[2].entry);
                (cost, node)
            }
            ("_+_", None) if args.len() == 2 => {
                let (l, r) = (args[0], args[1]);
                let either = |f: fn(&Ty) -> bool| f(&l.ty) || f(&r.ty);
                if either(|t| matches!(t, Ty::String | Ty::Bytes)) {
                    let size = self.size_or_unknown(l).add(self.size_or_unknown(r));
                    sized(size.factor(trav), size)
                } else if either(|t| matches!(t, Ty::List(_))) {
                    let size = self.size_or_unknown(l).add(self.size_or_unknown(r));
                    let mut node = Node::sized(ty.clone(), size);
                    node.entry = Entry::union(l.entry, r.entry);
                    (one.add(arg_sum), node)
                } else {
                    plain(one)
                }
            }
            ("_<_" | "_<=_" | "_>_" | "_>=_", None)
                if args.len() == 2 && (args[0].ty.stringish() || args[1].ty.stringish()) =>
            {
                plain(self.comparison(args[0], args[1]))
            }
            ("_==_" | "_!=_", None) if args.len() == 2 => plain(self.comparison(args[0], args[1])),
            ("_[_]", None) if args.len() == 2 => {
                let (part, decl) = match (&args[0].ty, args[0].decl) {
                    (Ty::List(_), d) => ("@items", d.and_then(|d| d.elem.as_deref())),
                    (Ty::Map(_), d) => ("@values", d.and_then(|d| d.elem.as_deref())),
                    _ => return plain(one),
                };
                let mut node = Node::typed(decl, ty.clone(), child_path(&args[0].path, part));
                node.computed = args[0].entry.map(|e| e.val);
                (one.add(arg_sum), node)
            }
            _ => plain(one),
        }
    }

    /// Equality and string ordering: one traversal of the shorter operand.
    fn comparison(&self, l: &Node, r: &Node) -> Estimate {
        let smallest = self.size_or_unknown(l).max.min(self.size_or_unknown(r).max);
        Estimate {
            min: u64::from(smallest > 0),
            max: smallest,
        }
        .factor(STRING_TRAVERSAL_COST_FACTOR)
    }
}

fn literal<'a>(l: &LiteralValue) -> Node<'a> {
    match l {
        LiteralValue::String(s) => {
            Node::sized(Ty::String, Estimate::fixed(s.chars().count() as u64))
        }
        LiteralValue::Bytes(b) => Node::sized(Ty::Bytes, Estimate::fixed(b.len() as u64)),
        LiteralValue::Boolean(_) => Node::sized(Ty::Bool, Estimate::fixed(1)),
        LiteralValue::Double(_) => Node::sized(Ty::Double, Estimate::fixed(1)),
        LiteralValue::Null => Node::sized(Ty::Null, Estimate::fixed(1)),
        LiteralValue::Int(i) => Node {
            uint_literal: u64::try_from(**i).ok(),
            ..Node::sized(Ty::Int, Estimate::fixed(1))
        },
        LiteralValue::UInt(u) => Node {
            uint_literal: Some(**u),
            ..Node::sized(Ty::Uint, Estimate::fixed(1))
        },
    }
}

/// apiserver's estimate of the size of `s.replace(from, to)`.
fn replace_size(sz: Estimate, from: Estimate, to: Estimate) -> Estimate {
    let mut count = Estimate::fixed(0);
    let mut retained = Estimate::fixed(0);
    if from.min == 0 {
        count.max = if sz.max < u64::MAX {
            sz.max + 1
        } else {
            sz.max
        };
        retained.max = sz.max;
    } else if to.max <= from.min {
        retained.max = sz.max;
    } else {
        count.max = (sz.max as f64 / from.min as f64).ceil() as u64;
    }
    if from.max == 0 {
        count.min = if sz.min < u64::MAX {
            sz.min + 1
        } else {
            sz.min
        };
        retained.min = sz.min;
    } else if from.max <= to.min {
        retained.min = sz.min;
    } else {
        count.min = (sz.min as f64 / from.max as f64).ceil() as u64;
    }
    count.mul(to).add(retained)
}

/// The type of a call's result, from a table of CEL's and Kubernetes' functions; `Unknown` for
/// the rest.
fn result_type(name: &str, target: Option<&Node>, args: &[&Node]) -> Ty {
    let first = target.or(args.first().copied());
    match name {
        "_==_"
        | "_!=_"
        | "_<_"
        | "_<=_"
        | "_>_"
        | "_>=_"
        | "_&&_"
        | "_||_"
        | "!_"
        | "@in"
        | "@not_strictly_false"
        | "contains"
        | "startsWith"
        | "endsWith"
        | "matches"
        | "hasValue"
        | "isSorted"
        | "sets.contains"
        | "sets.equivalent"
        | "sets.intersects" => Ty::Bool,
        n if n.starts_with("is") => Ty::Bool,
        "size" | "int" | "indexOf" | "lastIndexOf" | "compareTo" | "sign" | "asInteger" => Ty::Int,
        "uint" => Ty::Uint,
        "double" | "asApproximateFloat" => Ty::Double,
        "bool" => Ty::Bool,
        "bytes" => Ty::Bytes,
        "duration" => Ty::Duration,
        "timestamp" => Ty::Timestamp,
        "string" | "lowerAscii" | "upperAscii" | "trim" | "substring" | "replace" | "charAt"
        | "format" | "join" | "reverse" | "find" | "strings.quote" | "getHost" | "getScheme"
        | "getPath" | "getQuery" | "getEscapedPath" | "getPort" => Ty::String,
        "split" | "findAll" => Ty::List(Box::new(Ty::String)),
        "max" | "min" | "sum" | "_[_]" => first.map_or(Ty::Unknown, |n| n.ty.elem()),
        "_?_:_" => match (args.get(1), args.get(2)) {
            (Some(a), _) if !matches!(a.ty, Ty::Unknown | Ty::Null) => a.ty.clone(),
            (_, Some(b)) => b.ty.clone(),
            _ => Ty::Unknown,
        },
        "_+_" | "_-_" | "_*_" | "_/_" | "_%_" | "-_" => args
            .iter()
            .map(|a| a.ty.clone())
            .find(|t| *t != Ty::Unknown)
            .unwrap_or(Ty::Unknown),
        _ => Ty::Unknown,
    }
}

/// (field path, message) of a refusal, the message starting with its kind ("Forbidden: …").
pub type Causes = Vec<(String, String)>;

/// apiextensions' `getCostErrorMessage`.
pub fn cost_error_message(what: &str, cost: u64, limit: u64) -> String {
    let f = cost as f64 / limit as f64;
    let factor = if f > 100.0 {
        "more than 100x".to_string()
    } else if f < 1.5 {
        format!("{f:.6}x")
    } else {
        format!("{f:.1}x")
    };
    format!(
        "{what} exceeds budget by factor of {factor} (try simplifying the rule, or adding \
         maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

/// One costed expression, for reports and the schema total.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpressionCost {
    /// `…x-kubernetes-validations[i].rule` or `….messageExpression`.
    pub path: String,
    /// What the real server compares with its limit: a rule's estimate times how often it can
    /// run; a messageExpression's estimate alone.
    pub cost: u64,
}

/// The cost check of one `openAPIV3Schema`, as apiextensions runs it on create and update.
#[derive(Debug, Default)]
pub struct SchemaCosts {
    pub expressions: Vec<ExpressionCost>,
    pub causes: Causes,
    pub total: u64,
}

/// Estimate every rule and messageExpression of `schema` (rooted at `path`, e.g.
/// `spec.validation.openAPIV3Schema`). `per_expression`: false on an update that leaves this
/// schema unchanged, where the real server skips the per-expression limit (not the total).
pub fn check_schema(schema: &Value, path: &str, per_expression: bool) -> SchemaCosts {
    let mut out = SchemaCosts::default();
    walk(schema, path, Some(1), true, per_expression, &mut out);
    if out.total > STATIC_ESTIMATED_CRD_COST_LIMIT {
        // The four most expensive expressions of at least 1% of the limit, most expensive first.
        let mut expensive: Vec<&ExpressionCost> = out
            .expressions
            .iter()
            .filter(|e| e.cost >= STATIC_ESTIMATED_CRD_COST_LIMIT / 100)
            .collect();
        expensive.sort_by_key(|e| std::cmp::Reverse(e.cost));
        let mut causes: Causes = expensive
            .into_iter()
            .take(4)
            .map(|e| {
                (
                    e.path.clone(),
                    "Forbidden: contributed to estimated rule cost total \
                     exceeding cost limit for entire OpenAPIv3 schema"
                        .to_string(),
                )
            })
            .collect();
        causes.push((
            path.to_string(),
            format!(
                "Forbidden: {}",
                cost_error_message(
                    "x-kubernetes-validations estimated rule cost total for \
                     entire OpenAPIv3 schema",
                    out.total,
                    STATIC_ESTIMATED_CRD_COST_LIMIT,
                )
            ),
        ));
        out.causes.extend(causes);
    }
    out
}

/// How many times the children of `schema` can occur per occurrence of it (apiextensions'
/// `extractMaxElements`): None for an unbounded list or map.
fn child_factor(schema: &Value) -> Option<u64> {
    match schema["type"].as_str() {
        Some("object") if schema.get("additionalProperties").is_some() => {
            schema["maxProperties"].as_u64()
        }
        Some("array") => schema["maxItems"].as_u64(),
        _ => Some(1),
    }
}

fn walk(
    schema: &Value,
    path: &str,
    cardinality: Option<u64>,
    resource_root: bool,
    per_expression: bool,
    out: &mut SchemaCosts,
) {
    if let Some(rules) = schema["x-kubernetes-validations"]
        .as_array()
        .filter(|r| !r.is_empty())
        && let Some(decl) = Decl::from_schema(schema, resource_root || embedded(schema))
    {
        let times = cardinality.unwrap_or_else(|| decl.max_cardinality());
        for (i, rule) in rules.iter().enumerate() {
            let at = format!("{path}.x-kubernetes-validations[{i}]");
            let text = rule["rule"].as_str().unwrap_or("").trim();
            if text.is_empty() {
                continue;
            }
            match estimate(text, &decl) {
                Ok(cost) => {
                    let cost = times_cardinality(cost.max, times);
                    out.observe(
                        format!("{at}.rule"),
                        cost,
                        "estimated rule cost",
                        per_expression,
                    );
                }
                Err(e) => out.causes.push((
                    format!("{at}.rule"),
                    format!("Invalid value: {:?}: compilation failed: {e}", text),
                )),
            }
            let message = rule["messageExpression"].as_str().unwrap_or("").trim();
            if message.is_empty() {
                continue;
            }
            match estimate(message, &decl) {
                Ok(cost) => out.observe(
                    format!("{at}.messageExpression"),
                    cost.max,
                    "estimated messageExpression cost",
                    per_expression,
                ),
                Err(e) => out.causes.push((
                    format!("{at}.messageExpression"),
                    format!(
                        "Invalid value: {:?}: messageExpression compilation failed: {e}",
                        message
                    ),
                )),
            }
        }
    }
    let child = cardinality.and_then(|c| child_factor(schema).map(|f| times_cardinality(c, f)));
    if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        walk(
            ap,
            &format!("{path}.additionalProperties"),
            child,
            false,
            per_expression,
            out,
        );
    }
    for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
        walk(
            prop,
            &format!("{path}.properties[{name}]"),
            child,
            false,
            per_expression,
            out,
        );
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        walk(
            items,
            &format!("{path}.items"),
            child,
            false,
            per_expression,
            out,
        );
    }
}

impl SchemaCosts {
    fn observe(&mut self, path: String, cost: u64, what: &str, per_expression: bool) {
        if per_expression && cost > STATIC_ESTIMATED_COST_LIMIT {
            self.causes.push((
                path.clone(),
                format!(
                    "Forbidden: {}",
                    cost_error_message(what, cost, STATIC_ESTIMATED_COST_LIMIT)
                ),
            ));
        }
        self.total = self.total.saturating_add(cost);
        self.expressions.push(ExpressionCost { path, cost });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cost(rule: &str, schema: Value) -> u64 {
        let decl = Decl::from_schema(&schema, false).expect("a CEL type");
        estimate(rule, &decl).expect("parses").max
    }

    fn obj(props: Value) -> Value {
        json!({"type": "object", "properties": props})
    }

    const UNBOUNDED: u64 = MAX_REQUEST_SIZE_BYTES - 2;

    #[test]
    fn estimates_arithmetic_saturates_and_rounds_up() {
        assert_eq!(mul_factor(15, 0.1), 2);
        // Float arithmetic, as in cel-go: about a tenth of 2^64, not saturated.
        let tenth = mul_factor(u64::MAX, 0.1);
        assert!(tenth > u64::MAX / 10 && tenth < u64::MAX / 9, "{tenth}");
        assert_eq!(mul_factor(u64::MAX, 2.0), u64::MAX);
        let big = Estimate::fixed(u64::MAX);
        assert_eq!(big.add(Estimate::fixed(1)).max, u64::MAX);
        assert_eq!(big.mul(Estimate::fixed(2)).max, u64::MAX);
        assert_eq!(times_cardinality(0, u64::MAX), 0);
    }

    #[test]
    fn schema_types_carry_the_real_servers_size_bounds() {
        let s = obj(json!({
            "free": {"type": "string"},
            "short": {"type": "string", "maxLength": 10},
            "mode": {"type": "string", "enum": ["fast", "slower"]},
            "when": {"type": "string", "format": "date-time"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "few": {"type": "array", "maxItems": 3, "items": {"type": "integer"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "port": {"x-kubernetes-int-or-string": true},
            "any": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "untyped": {"x-kubernetes-preserve-unknown-fields": true},
            "my-field": {"type": "boolean"}
        }));
        let d = Decl::from_schema(&s, false).unwrap();
        let f = |n: &str| d.fields[n].max_elements;
        assert_eq!(f("free"), UNBOUNDED);
        assert_eq!(
            f("short"),
            40,
            "maxLength counts code points, the size bytes"
        );
        assert_eq!(f("mode"), 6);
        assert_eq!(
            (f("when"), d.fields["when"].kind.clone()),
            (32, Kind::Timestamp)
        );
        assert_eq!(
            f("tags"),
            UNBOUNDED / 3,
            "strings are at least 2 bytes plus a comma"
        );
        assert_eq!(f("few"), 3);
        assert_eq!(f("labels"), UNBOUNDED / 8);
        assert_eq!(f("port"), UNBOUNDED);
        assert_eq!(d.fields["any"].kind, Kind::Object);
        assert!(!d.fields.contains_key("untyped"), "no type, no CEL");
        assert!(d.fields.contains_key("my__dash__field"));
        let root = Decl::from_schema(&obj(json!({})), true).unwrap();
        assert!(root.fields.contains_key("apiVersion"));
        assert!(root.fields["metadata"].fields.contains_key("generateName"));
    }

    #[test]
    fn minimum_sizes_count_required_fields_without_defaults() {
        let s = json!({"type": "object", "required": ["name", "size"], "properties": {
            "name": {"type": "string"},
            "size": {"type": "integer", "default": 1},
            "note": {"type": "string"}}});
        let d = Decl::from_schema(&s, false).unwrap();
        assert_eq!(d.min_size, 2 + 4 + 2 + 4);
        assert_eq!(d.max_cardinality(), MAX_REQUEST_SIZE_BYTES / 13);
    }

    #[test]
    fn escaping_follows_the_real_server() {
        assert_eq!(
            escape("a-b.c/d").as_deref(),
            Some("a__dash__b__dot__c__slash__d")
        );
        assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(escape("a__b").as_deref(), Some("a__underscores__b"));
        assert_eq!(escape("1a"), None);
        assert_eq!(escape("a b"), None);
    }

    #[test]
    fn simple_rules_cost_what_cel_go_says() {
        let s = obj(
            json!({"size": {"type": "integer"}, "mode": {"type": "string",
            "enum": ["slow", "fast"]}}),
        );
        // self(1) + .size(1), literal 0, `<=` 1; `||` adds no cost of its own.
        assert_eq!(cost("self.size <= 5", s.clone()), 3);
        // `==` on strings traverses the shorter: 'slow' is 4 → ceil(0.4) = 1.
        assert_eq!(cost("self.mode == 'slow'", s.clone()), 3);
        assert_eq!(cost("self.size <= 5 || self.mode == 'slow'", s.clone()), 6);
        assert_eq!(cost("has(self.mode)", s), 1);
    }

    #[test]
    fn unbounded_strings_cost_their_request_sized_worst_case() {
        let free = obj(json!({"name": {"type": "string"}}));
        let bounded = obj(json!({"name": {"type": "string", "maxLength": 63}}));
        // contains: ceil(size × 0.1) × ceil(arg × 0.1).
        let big = cost("self.name.contains('x')", free.clone());
        assert_eq!(big, 314_573 + 2);
        assert_eq!(cost("self.name.contains('x')", bounded.clone()), 26 + 2);
        // matches: ceil((size + 1) × 0.1) × ceil(len(regex) × 0.25).
        assert_eq!(
            cost("self.name.matches('^[a-z]+$')", bounded.clone()),
            26 * 2 + 2
        );
        // A concatenation traverses both sides.
        assert_eq!(
            cost("self.name + 'x' == 'y'", free.clone()),
            314_573 + 2 + 1
        );
        assert_eq!(cost("self.name.lowerAscii() == 'x'", bounded), 26 + 2 + 1);
        // A string of unknown size (`string(int)`) saturates the estimate.
        let n = obj(json!({"n": {"type": "integer"}}));
        assert!(
            cost("'n=' + string(self.n) == 'x'", n.clone()) > 100 * STATIC_ESTIMATED_COST_LIMIT
        );
        assert!(cost("'%d'.format([self.n]) == '1'", n) < 100);
    }

    #[test]
    fn string_library_functions_follow_the_kubernetes_estimator() {
        let s = obj(json!({"name": {"type": "string", "maxLength": 10},
            "tags": {"type": "array", "maxItems": 4,
                "items": {"type": "string", "maxLength": 5}}}));
        // split: twice the traversal, ceil(40 × 0.2) = 8; the result has at most 40 items.
        assert_eq!(
            cost("self.name.split(',').size() <= 3", s.clone()),
            2 + 8 + 1 + 1
        );
        // join: 4 items of 20 plus 3 separators = 83 → ceil(8.3); `==` then costs 1.
        assert_eq!(cost("self.tags.join(',') == 'a'", s.clone()), 2 + 9 + 1);
        // replace: ceil(40 × 0.2); the result can double ('a' → 'bb'), 80.
        assert_eq!(
            cost("self.name.replace('a', 'bb') == 'x'", s.clone()),
            2 + 8 + 1
        );
        assert_eq!(
            replace_size(Estimate::fixed(40), Estimate::fixed(1), Estimate::fixed(2)),
            Estimate { min: 40, max: 80 }
        );
        // indexOf on a list of strings: per item 1 + ceil(20 × 0.1).
        assert_eq!(
            cost("self.tags.indexOf('a') >= 0", s.clone()),
            2 + 4 * 3 + 1
        );
        // `in` walks the list.
        assert_eq!(cost("'a' in self.tags", s), 2 + 4);
    }

    #[test]
    fn comprehensions_multiply_by_the_list_size() {
        let unbounded = obj(json!({"items": {"type": "array", "items": {"type": "string"}}}));
        let bounded = obj(json!({"items": {"type": "array", "maxItems": 10,
            "items": {"type": "string", "maxLength": 20}}}));
        // all(): the range (2) and the result (1), then per item `@not_strictly_false(@result)`
        // (2) + `@result && …` (1) + the body (i: 1, startsWith: ceil(0.1)).
        let body = "self.items.all(i, i.startsWith('a'))";
        assert_eq!(cost(body, bounded.clone()), 2 + 1 + 10 * (2 + 1 + 1 + 1));
        assert_eq!(cost(body, unbounded.clone()), 2 + 1 + (UNBOUNDED / 3) * 5);
        let exists = "self.items.exists(i, i.contains('a'))";
        assert_eq!(cost(exists, bounded.clone()), 2 + 1 + 10 * (3 + 1 + 1 + 8));
        assert!(cost(exists, unbounded) > STATIC_ESTIMATED_COST_LIMIT);
        // map(): starts from `[]` (10); each step builds a one-item list (10 + 1) and appends
        // it to the accumulator (1 + 1); then `==` on two lists of at most 10 (ceil(1.0)).
        let map = "self.items.map(i, i) == self.items";
        assert_eq!(cost(map, bounded), 2 + 10 + 1 + 10 * 13 + 2 + 1);
    }

    #[test]
    fn maps_iterate_keys_and_index_values() {
        let labels = obj(json!({"labels": {"type": "object", "maxProperties": 5,
            "additionalProperties": {"type": "string", "maxLength": 10}}}));
        assert_eq!(
            cost("self.labels.all(k, self.labels[k].contains('x'))", labels),
            2 + 1 + 5 * (2 + 1 + 4 + 4)
        );
    }

    fn causes_of(schema: Value) -> Vec<String> {
        check_schema(&schema, "spec.validation.openAPIV3Schema", true)
            .causes
            .into_iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect()
    }

    #[test]
    fn rules_under_unbounded_lists_run_once_per_possible_item() {
        // 12 per item: self.name (2) + matches: ceil(4.1) × ceil(8 × 0.25).
        let item = json!({"type": "object", "properties": {"name": {"type": "string",
            "maxLength": 10}}, "x-kubernetes-validations": [
                {"rule": "self.name.matches('^[a-z]+$')"}]});
        let unbounded = obj(json!({"spec": obj(json!({"things": {"type": "array",
            "items": item.clone()}}))}));
        let causes = causes_of(unbounded);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(
            causes[0],
            "spec.validation.openAPIV3Schema.properties[spec].properties[things].items.\
             x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by \
             factor of 1.258291x (try simplifying the rule, or adding maxItems, maxProperties, \
             and maxLength where arrays, maps, and strings are declared)"
        );
        let bounded = obj(json!({"spec": obj(json!({"things": {"type": "array",
            "maxItems": 100, "items": item}}))}));
        assert!(causes_of(bounded).is_empty());
    }

    /// The example of the Kubernetes documentation ("Resource use by validation functions"):
    /// refused unbounded, allowed with maxItems 25 and maxLength 10, on the list or its items.
    #[test]
    fn the_documentations_example_is_refused_then_allowed() {
        let foo = |list: Value| obj(json!({"spec": obj(json!({"foo": list}))}));
        let on_list = |bounds: Value| {
            let mut l = json!({"type": "array", "items": {"type": "string"},
                "x-kubernetes-validations": [{"rule": "self.all(x, x.contains('a string'))"}]});
            if let Some(n) = bounds.get("maxItems") {
                l["maxItems"] = n.clone();
            }
            if let Some(n) = bounds.get("maxLength") {
                l["items"]["maxLength"] = n.clone();
            }
            foo(l)
        };
        let causes = causes_of(on_list(json!({})));
        assert!(
            causes[0].starts_with(
                "spec.validation.openAPIV3Schema.properties[spec].properties[foo].\
                 x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget \
                 by factor of more than 100x"
            ),
            "{causes:?}"
        );
        let bounds = json!({"maxItems": 25, "maxLength": 10});
        assert!(causes_of(on_list(bounds)).is_empty());
        let on_items = foo(
            json!({"type": "array", "maxItems": 25, "items": {"type": "string",
            "maxLength": 10, "x-kubernetes-validations": [{"rule": "self.contains('a string')"}]}}),
        );
        let costs = check_schema(&on_items, "p", true);
        assert!(costs.causes.is_empty());
        assert_eq!(costs.total, 25 * (1 + 4));
    }

    /// A list whose items are bounded but whose length is not: the rule runs over a possible
    /// million items (`(3 MiB - 2) / 3`), each `matches` costing ceil(25.3) × ceil(4.25).
    #[test]
    fn an_unbounded_list_of_bounded_strings_is_refused_by_its_length() {
        let spec = |max_items: Option<u64>| {
            let mut tags = json!({"type": "array", "items": {"type": "string", "maxLength": 63}});
            if let Some(n) = max_items {
                tags["maxItems"] = json!(n);
            }
            obj(
                json!({"spec": {"type": "object", "properties": {"tags": tags},
                "x-kubernetes-validations": [{"rule":
                    "!has(self.tags) || self.tags.all(t, t.matches('^[a-z][-a-z0-9]*$'))"}]}}),
            )
        };
        let costs = check_schema(&spec(None), "s", true);
        assert_eq!(
            costs.total,
            2 + 2 + 1 + (UNBOUNDED / 3) * (2 + 1 + 1 + 26 * 5)
        );
        assert!(
            costs.causes[0].1.starts_with(
                "Forbidden: estimated rule cost exceeds budget by factor of 14.1x (try"
            ),
            "{:?}",
            costs.causes
        );
        assert_eq!(check_schema(&spec(Some(16)), "s", true).total, 5 + 16 * 134);
    }

    #[test]
    fn message_expressions_have_their_own_limit_without_cardinality() {
        let s = obj(
            json!({"size": {"type": "integer", "x-kubernetes-validations": [
                {"rule": "self != 7", "messageExpression": "'size ' + string(self) + ' is unlucky'"}
            ]}}),
        );
        let causes = causes_of(s);
        let at = "spec.validation.openAPIV3Schema.properties[size].x-kubernetes-validations[0].\
                  messageExpression";
        assert_eq!(
            causes[0],
            format!(
                "{at}: Forbidden: estimated messageExpression cost exceeds budget by factor of \
                 more than 100x (try simplifying the rule, or adding maxItems, maxProperties, \
                 and maxLength where arrays, maps, and strings are declared)"
            )
        );
        // Its cost alone also exceeds the schema's total, which the real server reports too.
        assert_eq!(causes.len(), 3, "{causes:?}");
        assert!(causes[1].starts_with(&format!("{at}: Forbidden: contributed to")));
        let s = obj(
            json!({"size": {"type": "integer", "x-kubernetes-validations": [
                {"rule": "self != 7", "messageExpression": "'size %d is unlucky'.format([self])"}
            ]}}),
        );
        assert!(causes_of(s).is_empty());
    }

    #[test]
    fn the_schema_total_has_a_limit_of_its_own() {
        // Each rule costs 7.9M (an unbounded string × a 100-character regex): under the
        // per-expression limit, but twenty of them exceed the total.
        let rule = format!("self.name.matches('{}')", "a".repeat(100));
        let rules: Vec<Value> = (0..20).map(|_| json!({"rule": rule})).collect();
        let s = json!({"type": "object", "properties": {"name": {"type": "string"}},
            "x-kubernetes-validations": rules});
        let costs = check_schema(&s, "p", true);
        assert!(
            costs.total > STATIC_ESTIMATED_CRD_COST_LIMIT,
            "{}",
            costs.total
        );
        let causes: Vec<String> = costs
            .causes
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect();
        assert_eq!(causes.len(), 5, "{causes:?}");
        assert!(
            causes[0].starts_with("p.x-kubernetes-validations["),
            "{causes:?}"
        );
        assert!(
            causes[0].ends_with("cost limit for entire OpenAPIv3 schema"),
            "{causes:?}"
        );
        assert!(
            causes[4].starts_with(
                "p: Forbidden: x-kubernetes-validations estimated rule cost total for entire \
                 OpenAPIv3 schema exceeds budget by factor of"
            ),
            "{causes:?}"
        );
    }

    #[test]
    fn unchanged_schemas_skip_the_per_expression_limit() {
        let rule = format!("self.matches('{}')", "a".repeat(200));
        let s = obj(
            json!({"name": {"type": "string", "x-kubernetes-validations": [
            {"rule": rule}]}}),
        );
        assert_eq!(check_schema(&s, "p", true).causes.len(), 1);
        assert!(check_schema(&s, "p", false).causes.is_empty());
    }

    #[test]
    fn the_factor_is_printed_like_the_real_server() {
        let m = |c| cost_error_message("x", c, 10);
        assert!(m(11).starts_with("x exceeds budget by factor of 1.100000x ("));
        assert!(m(25).starts_with("x exceeds budget by factor of 2.5x ("));
        assert!(m(1001).starts_with("x exceeds budget by factor of more than 100x ("));
    }

    #[test]
    fn rules_that_do_not_parse_are_invalid() {
        let s = obj(json!({"a": {"type": "string", "x-kubernetes-validations": [
            {"rule": "self.size() >"}]}}));
        let causes = causes_of(s);
        assert_eq!(causes.len(), 1);
        assert!(causes[0].contains("x-kubernetes-validations[0].rule: Invalid value"));
    }
}
