//! Field ownership (`metadata.managedFields`) and server-side apply, simplified:
//! ownership is tracked per leaf field path, and every list is atomic (one leaf), where the
//! real server merges `listType: map/set` lists item by item.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub type Path = Vec<String>;

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// "Apply" or "Update".
    pub operation: String,
    /// "" for the main resource, "status" for the status subresource.
    pub subresource: String,
    pub api_version: String,
    pub time: String,
    pub fields: BTreeSet<Path>,
}

pub fn dotted(p: &Path) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

/// The leaf paths of an object that field ownership tracks: everything but the server's
/// own metadata; in metadata only labels, annotations, finalizers and ownerReferences.
pub fn leaves(obj: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for m in ["labels", "annotations"] {
                    if let Some(inner) = v.get(m) {
                        collect(inner, vec!["metadata".into(), m.into()], &mut out);
                    }
                }
                for m in ["finalizers", "ownerReferences"] {
                    if v.get(m).is_some() {
                        out.insert(vec!["metadata".into(), m.into()]);
                    }
                }
            }
            _ => collect(v, vec![k.clone()], &mut out),
        }
    }
    out
}

fn collect(v: &Value, path: Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, inner) in m {
                let mut p = path.clone();
                p.push(k.clone());
                collect(inner, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

pub fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

pub fn set(v: &mut Value, path: &[String], value: Value) {
    let mut cur = v;
    for k in &path[..path.len() - 1] {
        if !cur.get(k).is_some_and(Value::is_object) {
            cur[k.as_str()] = Value::Object(Map::new());
        }
        cur = &mut cur[k.as_str()];
    }
    cur[path[path.len() - 1].as_str()] = value;
}

/// Remove a leaf, and the maps it leaves empty on the way up.
pub fn remove(v: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = &mut *v;
    for k in parent {
        match cur.get_mut(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
    if parent.len() > 1 && get(v, parent).is_some_and(|p| p.as_object().is_some_and(Map::is_empty))
    {
        remove(v, parent);
    }
}

/// Does `owned` cover `p` (same path, or one is a prefix of the other)?
fn overlaps(owned: &Path, p: &Path) -> bool {
    owned.starts_with(p) || p.starts_with(owned)
}

/// Read the entries from an object's `metadata.managedFields`.
pub fn read_entries(obj: &Value) -> Vec<Entry> {
    let list = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.iter()
        .map(|e| {
            let mut fields = BTreeSet::new();
            from_fields_v1(&e["fieldsV1"], Vec::new(), &mut fields);
            Entry {
                manager: e["manager"].as_str().unwrap_or("").into(),
                operation: e["operation"].as_str().unwrap_or("Update").into(),
                subresource: e["subresource"].as_str().unwrap_or("").into(),
                api_version: e["apiVersion"].as_str().unwrap_or("").into(),
                time: e["time"].as_str().unwrap_or("").into(),
                fields,
            }
        })
        .collect()
}

fn from_fields_v1(v: &Value, path: Path, out: &mut BTreeSet<Path>) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    // A list item key (k:/v:/i:) written by a real server: we treat the whole list as a leaf.
    let is_list = m
        .keys()
        .any(|k| k.starts_with("k:") || k.starts_with("v:") || k.starts_with("i:"));
    if (children.is_empty() || is_list) && !path.is_empty() {
        out.insert(path);
        return;
    }
    for (k, inner) in children {
        let mut p = path.clone();
        p.push(k[2..].to_string());
        from_fields_v1(inner, p, out);
    }
}

fn to_fields_v1(fields: &BTreeSet<Path>) -> Value {
    let mut root = json!({});
    for p in fields {
        let mut cur = &mut root;
        for k in p {
            cur = cur
                .as_object_mut()
                .expect("fieldsV1 nodes are maps")
                .entry(format!("f:{k}"))
                .or_insert_with(|| json!({}));
        }
    }
    root
}

/// Write entries back into `metadata.managedFields` (omitted when empty).
pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation,
                "apiVersion": e.api_version, "time": e.time,
                "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    let meta = &mut obj["metadata"];
    match meta.as_object_mut() {
        Some(m) if list.is_empty() => {
            m.remove("managedFields");
        }
        _ => meta["managedFields"] = Value::Array(list),
    }
}

/// Record a non-apply write (create, update, patch) by `who`: it now owns every leaf it changed.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    mut entries: Vec<Entry>,
    who: Entry,
) -> Vec<Entry> {
    let null = Value::Null;
    let old = old.unwrap_or(&null);
    let (old_leaves, new_leaves) = (leaves(old), leaves(new));
    let changed: BTreeSet<Path> = new_leaves
        .iter()
        .filter(|p| get(old, p) != get(new, p))
        .cloned()
        .collect();
    for e in &mut entries {
        e.fields.retain(|p| !changed.iter().any(|c| overlaps(c, p)));
        e.fields
            .retain(|p| !old_leaves.contains(p) || new_leaves.contains(p));
        e.fields.retain(|p| get(new, p).is_some());
    }
    if changed.is_empty() {
        return entries;
    }
    match entries.iter_mut().find(|e| {
        e.manager == who.manager && e.operation == "Update" && e.subresource == who.subresource
    }) {
        Some(e) => {
            e.fields.extend(changed);
            e.time = who.time;
        }
        None => entries.push(Entry {
            fields: changed,
            ..who
        }),
    }
    entries
}

/// Outcome of an apply: the merged object and entries, or the conflicts as (manager, field).
pub type ApplyResult = Result<(Value, Vec<Entry>), Vec<(String, String)>>;

/// Server-side apply of `config` by `who` onto `live` (an empty object for a create).
/// `scope` keeps only the leaves the endpoint may set (e.g. only `status` on /status).
pub fn apply(
    live: &Value,
    config: &Value,
    mut entries: Vec<Entry>,
    who: Entry,
    force: bool,
    scope: impl Fn(&Path) -> bool,
) -> ApplyResult {
    let applied: BTreeSet<Path> = leaves(config).into_iter().filter(|p| scope(p)).collect();
    let is_mine = |e: &Entry| {
        e.manager == who.manager && e.operation == "Apply" && e.subresource == who.subresource
    };
    let mut conflicts = Vec::new();
    for p in &applied {
        if get(live, p) == get(config, p) {
            continue;
        }
        for e in entries
            .iter()
            .filter(|e| !is_mine(e) && e.manager != who.manager)
        {
            if let Some(owned) = e.fields.iter().find(|o| overlaps(o, p)) {
                conflicts.push((e.manager.clone(), dotted(owned)));
            }
        }
    }
    conflicts.dedup();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut merged = live.clone();
    let previously: BTreeSet<Path> = entries
        .iter()
        .filter(|e| is_mine(e))
        .flat_map(|e| e.fields.clone())
        .collect();
    for e in entries.iter_mut().filter(|e| !is_mine(e)) {
        if force {
            // Forced fields whose value changes move to the applier.
            e.fields.retain(|o| {
                !applied
                    .iter()
                    .any(|p| overlaps(o, p) && get(live, p) != get(config, p))
            });
        }
    }
    for p in previously.difference(&applied) {
        let owned_by_other = entries
            .iter()
            .any(|e| !is_mine(e) && e.fields.iter().any(|o| overlaps(o, p)));
        if !owned_by_other {
            remove(&mut merged, p);
        }
    }
    for p in &applied {
        if let Some(v) = get(config, p) {
            set(&mut merged, p, v.clone());
        }
    }
    entries.retain(|e| !is_mine(e));
    entries.push(Entry {
        fields: applied,
        operation: "Apply".into(),
        ..who
    });
    Ok((merged, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(m: &str) -> Entry {
        Entry {
            manager: m.into(),
            operation: "Apply".into(),
            subresource: String::new(),
            api_version: "v1".into(),
            time: "t".into(),
            fields: BTreeSet::new(),
        }
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"metadata": {"labels": {"a": "1"}, "name": "x"},
            "spec": {"b": [1], "c": {"d": 2}}});
        let l = leaves(&obj);
        let mut with = obj.clone();
        write_entries(
            &mut with,
            &[Entry {
                fields: l.clone(),
                ..who("m")
            }],
        );
        assert_eq!(
            with["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:a": {}}},
                "f:spec": {"f:b": {}, "f:c": {"f:d": {}}}})
        );
        assert_eq!(read_entries(&with)[0].fields, l);
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let all = |_: &Path| true;
        let (obj, entries) = apply(
            &json!({}),
            &json!({"spec": {"a": 1, "b": 2}}),
            vec![],
            who("x"),
            false,
            all,
        )
        .unwrap();
        // y sets a different value for a field x owns: conflict unless forced.
        let conflicts = apply(
            &obj,
            &json!({"spec": {"a": 5}}),
            entries.clone(),
            who("y"),
            false,
            all,
        )
        .unwrap_err();
        assert_eq!(conflicts, vec![("x".to_string(), ".spec.a".to_string())]);
        // Same value: shared ownership, no conflict.
        let (obj2, entries2) = apply(
            &obj,
            &json!({"spec": {"a": 1}}),
            entries.clone(),
            who("y"),
            false,
            all,
        )
        .unwrap();
        // x stops applying a: y still owns it, so it stays; b is dropped.
        let (obj3, _) = apply(
            &obj2,
            &json!({"spec": {"c": 3}}),
            entries2,
            who("x"),
            false,
            all,
        )
        .unwrap();
        assert_eq!(obj3, json!({"spec": {"a": 1, "c": 3}}));
        let (obj4, entries4) = apply(
            &obj,
            &json!({"spec": {"a": 5}}),
            entries,
            who("y"),
            true,
            all,
        )
        .unwrap();
        assert_eq!(obj4["spec"]["a"], 5);
        let x = entries4.iter().find(|e| e.manager == "x").unwrap();
        assert!(
            !x.fields
                .contains(&vec!["spec".to_string(), "a".to_string()])
        );
    }
}
