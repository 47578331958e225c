//! The API server double's semantics, one test per rule of the Kubernetes API conventions,
//! written only against `kube::Client` so they also run on a real cluster
//! (`MEDIAJOB_E2E_KUBECONFIG=path cargo test --test apiserver_double`).

use crate::support::kube as kube_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use kube_apiserver_double::ApiServerDouble;
use kube_support::{TestCluster, test_cluster, test_cluster_with};
use serde_json::{Value, json};

const GROUP: &str = "doubletest.example.com";

/// A small CRD with a status subresource, a required field, an enum, a number bound,
/// a pattern, and CEL rules including the transition rule `self == oldSelf` and a
/// messageExpression. Every string a rule reads is bounded (`enum`, `maxLength`) and the
/// messageExpression builds no string of unknown size (`string(self)` has one, and a real API
/// server refuses `'size ' + string(self)` as too expensive), so a real cluster accepts it.
fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{GROUP}")},
        "spec": {"group": GROUP, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"],
                        "x-kubernetes-validations": [
                            {"rule": "self.size <= 5 || self.mode == 'slow'",
                             "message": "big widgets must be slow"}],
                        "properties": {
                            "size": {"type": "integer", "minimum": 1, "maximum": 10,
                                "x-kubernetes-validations": [{"rule": "self != 7",
                                    "messageExpression":
                                        "'size %d is unlucky'.format([self])"}]},
                            "mode": {"type": "string", "enum": ["fast", "slow"]},
                            "label": {"type": "string", "pattern": "^[a-z]+$"},
                            "tier": {"type": "string", "default": "standard"},
                            "serial": {"type": "string", "maxLength": 64,
                                "x-kubernetes-validations": [{"rule": "self == oldSelf",
                                    "message": "serial is immutable"}]}}},
                    "status": {"type": "object", "properties": {
                        "phase": {"type": "string"}, "observed": {"type": "integer"}}}}}}}]}
    }))
    .expect("widget CRD")
}

fn widgets(c: &TestCluster) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", "Widget"), "widgets");
    Api::namespaced_with(c.client.clone(), &c.namespace, &ar)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(
        json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget",
        "metadata": {"name": name}, "spec": spec}),
    )
    .expect("widget")
}

fn secret(name: &str, labels: Value) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
        "stringData": {"k": "v"}}))
    .expect("secret")
}

async fn cluster() -> TestCluster {
    test_cluster(vec![widget_crd()]).await
}

fn rv_of(o: &impl kube::ResourceExt) -> u64 {
    o.resource_version()
        .expect("resourceVersion")
        .parse()
        .expect("decimal resourceVersion")
}

fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

#[tokio::test]
async fn create_sets_server_metadata_and_refuses_duplicates() {
    let c = cluster().await;
    let api = widgets(&c);
    let w = api
        .create(&PostParams::default(), &widget("a", json!({"size": 1})))
        .await
        .unwrap();
    assert!(w.metadata.uid.is_some());
    assert!(w.metadata.creation_timestamp.is_some());
    assert_eq!(w.metadata.generation, Some(1));
    assert_eq!(w.metadata.namespace.as_deref(), Some(c.namespace.as_str()));
    let got = api.get("a").await.unwrap();
    assert_eq!(got.metadata.uid, w.metadata.uid);
    assert_eq!(got.resource_version(), w.resource_version());

    let dup = api_err(
        api.create(&PostParams::default(), &widget("a", json!({"size": 1})))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(
        dup.status,
        Some(kube::core::response::StatusSummary::Failure)
    );

    let mut generated = widget("", json!({"size": 1}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let g = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(
        g.name_any().starts_with("gen-") && g.name_any().len() > 4,
        "{}",
        g.name_any()
    );
    c.cleanup().await;
}

#[tokio::test]
async fn resource_versions_increase_across_resources() {
    let c = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    let s1 = secrets
        .create(&PostParams::default(), &secret("s1", json!({})))
        .await
        .unwrap();
    let w = widgets(&c)
        .create(&PostParams::default(), &widget("w", json!({"size": 2})))
        .await
        .unwrap();
    let s2 = secrets
        .create(&PostParams::default(), &secret("s2", json!({})))
        .await
        .unwrap();
    assert!(rv_of(&s1) < rv_of(&w) && rv_of(&w) < rv_of(&s2));
    let list = secrets.list(&ListParams::default()).await.unwrap();
    let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert!(list_rv >= rv_of(&s2));
    // stringData is write-only: it lands base64-encoded in data.
    assert_eq!(s1.data.unwrap()["k"].0, b"v");
    assert!(s1.string_data.is_none());
    c.cleanup().await;
}

#[tokio::test]
async fn get_missing_object_is_404_status() {
    let c = cluster().await;
    let err = api_err(widgets(&c).get("nope").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert!(
        err.message.contains("\"nope\" not found"),
        "{}",
        err.message
    );
    c.cleanup().await;
}

#[tokio::test]
async fn update_with_stale_resource_version_conflicts() {
    let c = cluster().await;
    let api = widgets(&c);
    let w = api
        .create(&PostParams::default(), &widget("u", json!({"size": 1})))
        .await
        .unwrap();
    let mut first = w.clone();
    first.data["spec"]["size"] = json!(2);
    let updated = api
        .replace("u", &PostParams::default(), &first)
        .await
        .unwrap();
    assert!(rv_of(&updated) > rv_of(&w));
    assert_eq!(updated.metadata.generation, Some(2));
    let mut stale = w.clone();
    stale.data["spec"]["size"] = json!(3);
    let err = api_err(
        api.replace("u", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
    assert_eq!(api.get("u").await.unwrap().data["spec"]["size"], 2);
    c.cleanup().await;
}

#[tokio::test]
async fn merge_patch_sets_and_removes_fields() {
    let c = cluster().await;
    let api = widgets(&c);
    api.create(
        &PostParams::default(),
        &widget("m", json!({"size": 1, "mode": "fast"})),
    )
    .await
    .unwrap();
    let p = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"size": 3, "mode": null}});
    let w = api
        .patch("m", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(w.data["spec"], json!({"size": 3, "tier": "standard"}));
    assert_eq!(w.labels()["a"], "b");
    assert_eq!(w.metadata.generation, Some(2));
    // A resourceVersion in a patch is a precondition.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"size": 4}});
    let err = api_err(
        api.patch("m", &PatchParams::default(), &Patch::Merge(&stale))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    c.cleanup().await;
}

#[tokio::test]
async fn json_patch_with_test_operation() {
    let c = cluster().await;
    let api = widgets(&c);
    api.create(&PostParams::default(), &widget("j", json!({"size": 1})))
        .await
        .unwrap();
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/size", "value": 1},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}]))
    .unwrap();
    let w = api
        .patch("j", &PatchParams::default(), &Patch::Json::<()>(ok))
        .await
        .unwrap();
    assert_eq!(w.finalizers(), ["x/y"]);
    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/size", "value": 9},
        {"op": "remove", "path": "/metadata/finalizers"}]))
    .unwrap();
    let err = api_err(
        api.patch("j", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(api.get("j").await.unwrap().finalizers(), ["x/y"]);
    let clear: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers"}])).unwrap();
    api.patch("j", &PatchParams::default(), &Patch::Json::<()>(clear))
        .await
        .unwrap();
    c.cleanup().await;
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status() {
    let c = cluster().await;
    let api = widgets(&c);
    let mut w = widget("s", json!({"size": 1}));
    w.data["status"] = json!({"phase": "Ignored"});
    let w = api.create(&PostParams::default(), &w).await.unwrap();
    assert!(
        w.data.get("status").is_none(),
        "status on create is ignored"
    );
    // /status: the status changes, the spec change is ignored, generation stays.
    let p = json!({"spec": {"size": 9}, "status": {"phase": "Running", "observed": 1}});
    let s = api
        .patch_status("s", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(s.data["status"]["phase"], "Running");
    assert_eq!(s.data["spec"]["size"], 1);
    assert_eq!(s.metadata.generation, Some(1));
    assert!(rv_of(&s) > rv_of(&w));
    // main resource: the status change is ignored, the spec change bumps generation.
    let p = json!({"spec": {"size": 2}, "status": {"phase": "Hacked"}});
    let m = api
        .patch("s", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(m.data["status"]["phase"], "Running");
    assert_eq!(m.metadata.generation, Some(2));
    // metadata-only change: no generation bump.
    let p = json!({"metadata": {"annotations": {"x": "y"}}});
    let a = api
        .patch("s", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(a.metadata.generation, Some(2));
    let got = api.get_status("s").await.unwrap();
    assert_eq!(got.data["status"]["observed"], 1);
    // PUT /status: same rules, with optimistic concurrency.
    let mut put = got.clone();
    put.data["status"]["phase"] = json!("Done");
    put.data["spec"]["size"] = json!(5);
    let done = api
        .replace_status("s", &PostParams::default(), &put)
        .await
        .unwrap();
    assert_eq!(
        (
            done.data["status"]["phase"].as_str(),
            done.data["spec"]["size"].as_i64()
        ),
        (Some("Done"), Some(2))
    );
    let stale = api_err(
        api.replace_status("s", &PostParams::default(), &put)
            .await
            .unwrap_err(),
    );
    assert_eq!(stale.code, 409);
    c.cleanup().await;
}

#[tokio::test]
async fn server_side_apply_tracks_managers_and_conflicts() {
    let c = cluster().await;
    let api = widgets(&c);
    let a = PatchParams::apply("manager-a");
    let cfg = |spec: Value| widget("ssa", spec);
    let w = api
        .patch(
            "ssa",
            &a,
            &Patch::Apply(cfg(json!({"size": 1, "mode": "fast"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        w.data["spec"],
        json!({"size": 1, "mode": "fast", "tier": "standard"})
    );
    let managers: Vec<String> = w
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["manager-a"]);
    let b = PatchParams::apply("manager-b");
    // B changes a field A owns: 409 listing the conflict.
    let err = api_err(
        api.patch("ssa", &b, &Patch::Apply(cfg(json!({"size": 2}))))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert!(
        err.message.contains("manager-a") && err.message.contains(".spec.size"),
        "{}",
        err.message
    );
    // Same value: shared ownership, no conflict (only managedFields change).
    let shared = api
        .patch("ssa", &b, &Patch::Apply(cfg(json!({"size": 1}))))
        .await
        .unwrap();
    let managers: Vec<String> = shared
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.contains(&"manager-b".to_string()), "{managers:?}");
    // A stops applying mode (owned only by A: removed) and size (B still owns it: kept).
    let w = api
        .patch("ssa", &a, &Patch::Apply(cfg(json!({"serial": "x"}))))
        .await
        .unwrap();
    assert_eq!(
        w.data["spec"],
        json!({"size": 1, "serial": "x", "tier": "standard"})
    );
    // Forced: B takes size over.
    let forced = b.clone().force();
    let w = api
        .patch("ssa", &forced, &Patch::Apply(cfg(json!({"size": 4}))))
        .await
        .unwrap();
    assert_eq!(w.data["spec"]["size"], 4);
    // Re-applying the same configuration is a no-op: the resourceVersion stays.
    let again = api
        .patch("ssa", &forced, &Patch::Apply(cfg(json!({"size": 4}))))
        .await
        .unwrap();
    assert_eq!(again.resource_version(), w.resource_version());
    c.cleanup().await;
}

#[tokio::test]
async fn server_side_apply_on_status_subresource() {
    let c = cluster().await;
    let api = widgets(&c);
    api.create(&PostParams::default(), &widget("st", json!({"size": 1})))
        .await
        .unwrap();
    let mut cfg = widget("st", json!({"size": 7}));
    cfg.data["status"] = json!({"phase": "Done"});
    let w = api
        .patch_status("st", &PatchParams::apply("ctl"), &Patch::Apply(&cfg))
        .await
        .unwrap();
    assert_eq!(w.data["status"]["phase"], "Done");
    assert_eq!(w.data["spec"]["size"], 1);
    c.cleanup().await;
}

#[tokio::test]
async fn finalizers_delay_deletion_until_removed() {
    let c = cluster().await;
    let api = widgets(&c);
    let mut w = widget("f", json!({"size": 1}));
    w.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    api.create(&PostParams::default(), &w).await.unwrap();
    let deleted = api.delete("f", &DeleteParams::default()).await.unwrap();
    let pending = deleted.left().expect("object still present");
    assert!(pending.metadata.deletion_timestamp.is_some());
    let got = api.get("f").await.unwrap();
    assert_eq!(
        got.metadata.deletion_timestamp,
        pending.metadata.deletion_timestamp
    );
    // Adding a finalizer while being deleted is refused.
    let p = json!({"metadata": {"finalizers": ["example.com/cleanup", "example.com/more"]}});
    assert_eq!(
        api_err(
            api.patch("f", &PatchParams::default(), &Patch::Merge(&p))
                .await
                .unwrap_err()
        )
        .code,
        422
    );
    let p = json!({"metadata": {"finalizers": null}});
    api.patch("f", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(api_err(api.get("f").await.unwrap_err()).code, 404);
    c.cleanup().await;
}

#[tokio::test]
async fn delete_without_finalizers_is_immediate() {
    let c = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    secrets
        .create(&PostParams::default(), &secret("d", json!({})))
        .await
        .unwrap();
    let answer = secrets.delete("d", &DeleteParams::default()).await.unwrap();
    assert!(
        answer.is_right(),
        "a built-in type answers an immediate delete with a Status"
    );
    assert_eq!(api_err(secrets.get("d").await.unwrap_err()).code, 404);
    assert_eq!(
        api_err(
            secrets
                .delete("d", &DeleteParams::default())
                .await
                .unwrap_err()
        )
        .code,
        404
    );
    c.cleanup().await;
}

#[tokio::test]
async fn schema_validation_refuses_invalid_objects_and_prunes_unknown_fields() {
    let c = cluster().await;
    let api = widgets(&c);
    let pp = PostParams::default();
    let cases = [
        (json!({}), "spec.size: Required value"),
        (json!({"size": 11}), "spec.size"),
        (
            json!({"size": 1, "mode": "warp"}),
            "spec.mode: Unsupported value: \"warp\"",
        ),
        (json!({"size": 1, "label": "UPPER"}), "spec.label"),
        (json!({"size": "one"}), "spec.size"),
    ];
    for (i, (spec, expected)) in cases.into_iter().enumerate() {
        let err = api_err(
            api.create(&pp, &widget(&format!("bad{i}"), spec))
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (err.code, err.reason.as_str()),
            (422, "Invalid"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains(expected),
            "{expected:?} not in {:?}",
            err.message
        );
    }
    let w = api
        .create(&pp, &widget("pruned", json!({"size": 1, "unknown": true})))
        .await
        .unwrap();
    // Unknown fields are pruned, defaults are stored.
    assert_eq!(w.data["spec"], json!({"size": 1, "tier": "standard"}));
    c.cleanup().await;
}

#[tokio::test]
async fn cel_rules_and_transition_rules_are_enforced() {
    let c = cluster().await;
    let api = widgets(&c);
    let pp = PostParams::default();
    let err = api_err(
        api.create(&pp, &widget("big", json!({"size": 8, "mode": "fast"})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("big widgets must be slow"),
        "{}",
        err.message
    );
    let err = api_err(
        api.create(&pp, &widget("seven", json!({"size": 7})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("size 7 is unlucky"),
        "the messageExpression: {}",
        err.message
    );
    api.create(
        &pp,
        &widget("t", json!({"size": 8, "mode": "slow", "serial": "s1"})),
    )
    .await
    .unwrap();
    let p = json!({"spec": {"serial": "s2"}});
    let err = api_err(
        api.patch("t", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("serial is immutable"),
        "{}",
        err.message
    );
    let p = json!({"spec": {"size": 9}});
    api.patch("t", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    c.cleanup().await;
}

#[tokio::test]
async fn list_pages_with_limit_and_continue() {
    let c = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    for i in 0..5 {
        secrets
            .create(
                &PostParams::default(),
                &secret(&format!("p{i}"), json!({"page": "yes"})),
            )
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().labels("page=yes").limit(2);
    let mut pages = 0;
    let mut first_rv = None;
    loop {
        let page = secrets.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        first_rv.get_or_insert(page.metadata.resource_version.clone());
        // Later pages are from the first page's snapshot, even after a write.
        secrets
            .create(
                &PostParams::default(),
                &secret(&format!("late{pages}"), json!({"page": "yes"})),
            )
            .await
            .unwrap();
        names.extend(page.items.iter().map(|s| s.name_any()));
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);
    c.cleanup().await;
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let c = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    let pp = PostParams::default();
    secrets
        .create(&pp, &secret("web", json!({"app": "web", "tier": "front"})))
        .await
        .unwrap();
    secrets
        .create(&pp, &secret("db", json!({"app": "db"})))
        .await
        .unwrap();
    secrets
        .create(&pp, &secret("none", json!({})))
        .await
        .unwrap();
    let names = |sel: &'static str, field: bool| {
        let secrets = secrets.clone();
        async move {
            let lp = if field {
                ListParams::default().fields(sel)
            } else {
                ListParams::default().labels(sel)
            };
            let mut n: Vec<String> = secrets
                .list(&lp)
                .await
                .unwrap()
                .items
                .iter()
                .map(|s| s.name_any())
                .collect();
            n.sort();
            n
        }
    };
    assert_eq!(names("app=web", false).await, ["web"]);
    assert_eq!(names("app!=web", false).await, ["db", "none"]);
    assert_eq!(names("app in (web,db)", false).await, ["db", "web"]);
    assert_eq!(names("app notin (web)", false).await, ["db", "none"]);
    assert_eq!(names("tier", false).await, ["web"]);
    assert_eq!(names("!app", false).await, ["none"]);
    assert_eq!(names("metadata.name=db", true).await, ["db"]);
    assert_eq!(names("metadata.name!=db", true).await, ["none", "web"]);
    c.cleanup().await;
}

#[tokio::test]
async fn all_namespace_list_sees_every_namespace() {
    let c = cluster().await;
    let other = format!("{}-b", c.namespace);
    let nss: Api<Namespace> = Api::all(c.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": other}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    for n in [&c.namespace, &other] {
        let s: Api<Secret> = Api::namespaced(c.client.clone(), n);
        s.create(
            &PostParams::default(),
            &secret("x", json!({"all": c.namespace.clone()})),
        )
        .await
        .unwrap();
    }
    let all: Api<Secret> = Api::all(c.client.clone());
    let lp = ListParams::default().labels(&format!("all={}", c.namespace));
    let mut found: Vec<String> = all
        .list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|s| s.namespace())
        .collect();
    found.sort();
    assert_eq!(found, [c.namespace.clone(), other.clone()]);
    // Creating in a namespace that does not exist is refused.
    let missing: Api<Secret> =
        Api::namespaced(c.client.clone(), &format!("{}-missing", c.namespace));
    assert_eq!(
        api_err(
            missing
                .create(&PostParams::default(), &secret("x", json!({})))
                .await
                .unwrap_err()
        )
        .code,
        404
    );
    nss.delete(&other, &DeleteParams::default()).await.unwrap();
    c.cleanup().await;
}

#[tokio::test]
async fn watch_from_resource_version_sees_added_modified_deleted() {
    let c = cluster().await;
    let api = widgets(&c);
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let stream = api
        .watch(&WatchParams::default().timeout(10), &start)
        .await
        .unwrap();
    api.create(&PostParams::default(), &widget("w", json!({"size": 1})))
        .await
        .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 2}})),
    )
    .await
    .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    let mut stream = stream.boxed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 3 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(o)))) => {
                seen.push(("ADDED", o.data["spec"]["size"].clone()))
            }
            Ok(Ok(Some(WatchEvent::Modified(o)))) => {
                seen.push(("MODIFIED", o.data["spec"]["size"].clone()))
            }
            Ok(Ok(Some(WatchEvent::Deleted(o)))) => {
                seen.push(("DELETED", o.data["spec"]["size"].clone()))
            }
            Ok(Ok(Some(_))) => {}
            other => panic!("watch ended early: {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            ("ADDED", json!(1)),
            ("MODIFIED", json!(2)),
            ("DELETED", json!(2))
        ]
    );
    c.cleanup().await;
}

#[tokio::test]
async fn label_selector_watch_sees_objects_enter_and_leave() {
    let c = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    let start = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = secrets
        .watch(
            &WatchParams::default().labels("pick=yes").timeout(10),
            &start,
        )
        .await
        .unwrap()
        .boxed();
    secrets
        .create(
            &PostParams::default(),
            &secret("sel", json!({"pick": "no"})),
        )
        .await
        .unwrap();
    let set = |v: &str| json!({"metadata": {"labels": {"pick": v}}});
    secrets
        .patch("sel", &PatchParams::default(), &Patch::Merge(set("yes")))
        .await
        .unwrap();
    secrets
        .patch("sel", &PatchParams::default(), &Patch::Merge(set("no")))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(_)))) => kinds.push("ADDED"),
            Ok(Ok(Some(WatchEvent::Modified(_)))) => kinds.push("MODIFIED"),
            Ok(Ok(Some(WatchEvent::Deleted(_)))) => kinds.push("DELETED"),
            Ok(Ok(Some(_))) => {}
            other => panic!("watch ended early: {other:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED", "DELETED"]);
    c.cleanup().await;
}

#[tokio::test]
async fn watch_honours_timeout_and_sends_bookmarks() {
    let c = test_cluster_with(
        vec![widget_crd()],
        ApiServerDouble::default().bookmark_interval(Duration::from_millis(200)),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    let rv = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let started = Instant::now();
    let stream = secrets
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap();
    let events: Vec<_> = tokio::time::timeout(Duration::from_secs(30), stream.collect::<Vec<_>>())
        .await
        .expect("watch ends");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "ended after {:?}",
        started.elapsed()
    );
    if c.double.is_some() {
        // A real server sends bookmarks about once a minute, so only the double is checked here.
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Ok(WatchEvent::Bookmark(_)))),
            "{events:?}"
        );
    }
    c.cleanup().await;
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_410_gone() {
    let c = test_cluster_with(
        vec![widget_crd()],
        ApiServerDouble::default().history_window(2),
    )
    .await;
    let d = double_only!(c);
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    let first = secrets
        .create(&PostParams::default(), &secret("old", json!({})))
        .await
        .unwrap();
    for i in 0..3 {
        secrets
            .create(&PostParams::default(), &secret(&format!("n{i}"), json!({})))
            .await
            .unwrap();
    }
    let _ = d;
    let mut stream = secrets
        .watch(
            &WatchParams::default().timeout(5),
            &first.resource_version().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await {
        Ok(Ok(Some(WatchEvent::Error(e)))) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    c.cleanup().await;
}

type WatcherItem = Result<watcher::Event<DynamicObject>, watcher::Error>;

/// Collect watcher events until `done` says so (bounded by a deadline).
async fn watch_until(
    stream: impl futures::Stream<Item = WatcherItem> + Send,
    mut done: impl FnMut(&[String]) -> bool,
    mut act: impl FnMut(usize) -> Option<futures::future::BoxFuture<'static, ()>>,
) -> Vec<String> {
    let mut stream = std::pin::pin!(stream);
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&log) {
        assert!(
            Instant::now() < deadline,
            "watcher did not see enough: {log:?}"
        );
        let Ok(next) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await else {
            break;
        };
        match next {
            Some(Ok(watcher::Event::Apply(o))) => {
                log.push(format!("apply {} {}", o.name_any(), o.data["spec"]["size"]));
            }
            Some(Ok(watcher::Event::InitApply(o))) => {
                log.push(format!("init-apply {}", o.name_any()))
            }
            Some(Ok(watcher::Event::Delete(o))) => log.push(format!("delete {}", o.name_any())),
            Some(Ok(watcher::Event::InitDone)) => log.push("init-done".into()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => log.push(format!("error {e}")),
            None => break,
        }
        if let Some(f) = act(log.len()) {
            f.await;
        }
    }
    log
}

#[tokio::test]
async fn runtime_watcher_sees_create_update_delete() {
    let c = cluster().await;
    let api = widgets(&c);
    api.create(&PostParams::default(), &widget("pre", json!({"size": 1})))
        .await
        .unwrap();
    let stream = watcher(api.clone(), watcher::Config::default());
    let a2 = api.clone();
    let log = watch_until(
        stream,
        |l| l.iter().any(|e| e == "delete w"),
        move |n| {
            let a = a2.clone();
            (n == 2).then(|| {
                Box::pin(async move {
                    a.create(&PostParams::default(), &widget("w", json!({"size": 1})))
                        .await
                        .unwrap();
                    a.patch(
                        "w",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"size": 2}})),
                    )
                    .await
                    .unwrap();
                    a.delete("w", &DeleteParams::default()).await.unwrap();
                }) as futures::future::BoxFuture<'static, ()>
            })
        },
    )
    .await;
    let expected = [
        "init-apply pre",
        "init-done",
        "apply w 1",
        "apply w 2",
        "delete w",
    ];
    assert_eq!(log, expected, "{log:?}");
    c.cleanup().await;
}

#[tokio::test]
async fn runtime_watcher_recovers_from_dropped_watches_and_410() {
    let c = test_cluster_with(
        vec![widget_crd()],
        ApiServerDouble::default().history_window(3),
    )
    .await;
    let d = double_only!(c);
    let (faults, api) = (d.faults(), widgets(&c));
    let stream = watcher(api.clone(), watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    let mut names = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut step = 0;
    while names.len() < 2 || step < 3 {
        assert!(Instant::now() < deadline, "watcher stuck: {names:?}");
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("watcher event");
        if let Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) = &ev {
            names.insert(o.name_any(), o.data["spec"]["size"].clone());
        }
        if matches!(ev, Some(Ok(watcher::Event::InitDone))) && step == 0 {
            step = 1;
            // A dropped connection: the watcher re-watches from its last resourceVersion.
            faults.drop_watches();
            tokio::time::sleep(Duration::from_millis(100)).await;
            api.create(
                &PostParams::default(),
                &widget("after-drop", json!({"size": 1})),
            )
            .await
            .unwrap();
        } else if names.contains_key("after-drop") && step == 1 {
            step = 2;
            // Too many changes while disconnected: 410 Gone, so the watcher re-lists.
            faults.drop_watches();
            let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
            for i in 0..5 {
                secrets
                    .create(
                        &PostParams::default(),
                        &secret(&format!("noise{i}"), json!({})),
                    )
                    .await
                    .unwrap();
            }
            api.create(
                &PostParams::default(),
                &widget("after-410", json!({"size": 3})),
            )
            .await
            .unwrap();
            for i in 5..10 {
                secrets
                    .create(
                        &PostParams::default(),
                        &secret(&format!("noise{i}"), json!({})),
                    )
                    .await
                    .unwrap();
            }
        } else if names.contains_key("after-410") && step == 2 {
            step = 3;
        }
    }
    assert_eq!(names.get("after-410"), Some(&json!(3)));
    // The 410 made the watcher list again: one list at start, one after the expiry.
    let lists = d
        .requests()
        .all()
        .into_iter()
        .filter(|r| r.verb == "list" && r.resource == "widgets")
        .count();
    assert_eq!(lists, 2);
    c.cleanup().await;
}

#[tokio::test]
async fn injected_500_and_429_and_delay() {
    let c = cluster().await;
    let d = double_only!(c);
    let (faults, log) = (d.faults(), d.requests());
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    secrets
        .create(&PostParams::default(), &secret("f", json!({})))
        .await
        .unwrap();
    faults.fail_next_matching(1, 500, Some("get"), Some("/secrets/"));
    assert_eq!(api_err(secrets.get("f").await.unwrap_err()).code, 500);
    secrets.get("f").await.unwrap();
    // 429 with Retry-After: kube's client retries by itself, after the advertised delay.
    log.clear();
    faults.throttle_next(2, 1);
    let started = Instant::now();
    secrets.get("f").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(log.all().iter().filter(|r| r.verb == "get").count(), 3);
    faults.set_delay(Duration::from_millis(300));
    let started = Instant::now();
    secrets.get("f").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    faults.set_delay(Duration::ZERO);
    c.cleanup().await;
}

#[tokio::test]
async fn request_log_names_verbs_and_resources() {
    let c = cluster().await;
    let d = double_only!(c);
    let log = d.requests();
    log.clear();
    let api = widgets(&c);
    api.create(&PostParams::default(), &widget("r", json!({"size": 1})))
        .await
        .unwrap();
    api.patch_status(
        "r",
        &PatchParams::apply("ctl"),
        &Patch::Apply(json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "Widget", "status": {"phase": "x"}})),
    )
    .await
    .unwrap();
    api.list(&ListParams::default()).await.unwrap();
    let seen = log.verbs_seen();
    let t = |v: &str, s: &str| {
        (
            v.to_string(),
            GROUP.to_string(),
            "widgets".to_string(),
            s.to_string(),
        )
    };
    assert!(
        seen.contains(&t("create", ""))
            && seen.contains(&t("patch", "status"))
            && seen.contains(&t("list", "")),
        "{seen:?}"
    );
    assert!(
        log.all()
            .iter()
            .any(|r| r.field_manager.as_deref() == Some("ctl"))
    );
    c.cleanup().await;
}

#[tokio::test]
async fn leases_and_events_round_trip() {
    let c = cluster().await;
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), &c.namespace);
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}))
    .unwrap();
    let l = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut taken = l.clone();
    taken.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("leader", &PostParams::default(), &taken)
        .await
        .unwrap();
    // The old holder's write, based on the old resourceVersion, loses.
    assert_eq!(
        api_err(
            leases
                .replace("leader", &PostParams::default(), &l)
                .await
                .unwrap_err()
        )
        .code,
        409
    );
    let events: Api<Event> = Api::namespaced(c.client.clone(), &c.namespace);
    let ev: Event = serde_json::from_value(json!({"metadata": {"generateName": "w-"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Started", "action": "Reconcile",
        "reportingController": "example.com/ctl", "reportingInstance": "ctl-1", "type": "Normal",
        "note": "hello", "regarding": {"kind": "Widget", "name": "w", "namespace": c.namespace}}))
    .unwrap();
    let created = events.create(&PostParams::default(), &ev).await.unwrap();
    assert_eq!(
        events
            .get(&created.name_any())
            .await
            .unwrap()
            .note
            .as_deref(),
        Some("hello")
    );
    c.cleanup().await;
}

#[tokio::test]
async fn version_endpoint_answers() {
    let c = cluster().await;
    let v = c.client.apiserver_version().await.unwrap();
    assert!(!v.git_version.is_empty());
    c.cleanup().await;
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_then_changes() {
    let c = cluster().await;
    let api = widgets(&c);
    api.create(&PostParams::default(), &widget("s0", json!({"size": 1})))
        .await
        .unwrap();
    let stream = watcher(api.clone(), watcher::Config::default().streaming_lists());
    let a2 = api.clone();
    let log = watch_until(
        stream,
        |l| l.iter().any(|e| e == "apply s1 1"),
        move |n| {
            let a = a2.clone();
            (n == 2).then(|| {
                Box::pin(async move {
                    a.create(&PostParams::default(), &widget("s1", json!({"size": 1})))
                        .await
                        .unwrap();
                }) as futures::future::BoxFuture<'static, ()>
            })
        },
    )
    .await;
    assert_eq!(log, ["init-apply s0", "init-done", "apply s1 1"]);
    if let Some(log) = c.requests() {
        assert!(
            log.all().iter().all(|r| r.verb != "list"),
            "no list call with streaming lists"
        );
    }
    c.cleanup().await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_content() {
    let c = cluster().await;
    let name = format!("{}-gone", c.namespace);
    let nss: Api<Namespace> = Api::all(c.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &name);
    secrets
        .create(&PostParams::default(), &secret("inside", json!({})))
        .await
        .unwrap();
    nss.delete(&name, &DeleteParams::default()).await.unwrap();
    // A real cluster's namespace controller takes a few seconds; the double is immediate.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match nss.get(&name).await {
            Err(kube::Error::Api(s)) if s.code == 404 => break,
            Ok(n) => assert!(n.metadata.deletion_timestamp.is_some()),
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "namespace not deleted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(api_err(secrets.get("inside").await.unwrap_err()).code, 404);
    c.cleanup().await;
}

#[tokio::test]
async fn kubeconfig_yaml_gives_a_working_client() {
    let c = cluster().await;
    let d = double_only!(c);
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&d.kubeconfig_yaml()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();
    let nss: Api<Namespace> = Api::all(client);
    nss.get(&c.namespace).await.unwrap();
    c.cleanup().await;
}

#[tokio::test]
async fn runtime_event_recorder_publishes_events() {
    use kube::runtime::events::{Event as RtEvent, EventType, Recorder, Reporter};
    let c = cluster().await;
    let api = widgets(&c);
    let w = api
        .create(&PostParams::default(), &widget("ev", json!({"size": 1})))
        .await
        .unwrap();
    let reporter = Reporter {
        controller: "doubletest-ctl".into(),
        instance: Some("ctl-0".into()),
    };
    let recorder = Recorder::new(c.client.clone(), reporter);
    let ev = RtEvent {
        type_: EventType::Normal,
        reason: "Started".into(),
        note: Some("first".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = w.object_ref(&ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, "v1", "Widget"),
        "widgets",
    ));
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events: Api<Event> = Api::namespaced(c.client.clone(), &c.namespace);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        list.items.len(),
        1,
        "a repeated event is a series on one object"
    );
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Started"));
    assert_eq!(
        e.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("ev")
    );
    assert!(
        e.series.as_ref().is_some_and(|s| s.count >= 2),
        "{:?}",
        e.series
    );
    c.cleanup().await;
}

#[tokio::test]
async fn runtime_controller_reconciles_and_settles() {
    use kube::runtime::{Controller, controller::Action};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let c = cluster().await;
    let api = widgets(&c);
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", "Widget"), "widgets");
    let runs = Arc::new(AtomicUsize::new(0));
    type Ctx = (Api<DynamicObject>, Arc<AtomicUsize>);
    let reconcile = |obj: Arc<DynamicObject>, ctx: Arc<Ctx>| async move {
        ctx.1.fetch_add(1, Ordering::SeqCst);
        let observed = obj.metadata.generation.unwrap_or(0);
        let status = json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget",
            "status": {"observed": observed, "phase": "Seen"}});
        let pp = PatchParams::apply("doubletest-ctl").force();
        ctx.0
            .patch_status(&obj.name_any(), &pp, &Patch::Apply(status))
            .await?;
        Ok::<_, kube::Error>(Action::await_change())
    };
    let error_policy = |_: Arc<DynamicObject>, _: &kube::Error, _: Arc<Ctx>| {
        Action::requeue(Duration::from_millis(200))
    };
    let ctl = Controller::new_with(api.clone(), watcher::Config::default(), ar)
        .run(
            reconcile,
            error_policy,
            Arc::new((api.clone(), runs.clone())),
        )
        .for_each(|_| async {});
    let handle = tokio::spawn(ctl);
    let observed = |want: i64| {
        let api = api.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let w = api.get("ctl").await.unwrap();
                if w.data["status"]["observed"] == want {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "status never observed {want}: {:?}",
                    w.data
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    api.create(&PostParams::default(), &widget("ctl", json!({"size": 1})))
        .await
        .unwrap();
    observed(1).await;
    api.patch(
        "ctl",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 2}})),
    )
    .await
    .unwrap();
    observed(2).await;
    // The controller's own identical status apply is a no-op, so it does not wake itself forever.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = runs.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        settled,
        "controller keeps reconciling"
    );
    assert!(settled <= 6, "{settled} reconciles for two changes");
    handle.abort();
    c.cleanup().await;
}

#[tokio::test]
async fn list_at_an_exact_or_too_new_resource_version() {
    use kube::api::VersionMatch;
    let c = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    secrets
        .create(&PostParams::default(), &secret("v", json!({"gen": "one"})))
        .await
        .unwrap();
    let then = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let set = json!({"metadata": {"labels": {"gen": "two"}}});
    secrets
        .patch("v", &PatchParams::default(), &Patch::Merge(&set))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &secret("later", json!({})))
        .await
        .unwrap();
    let lp = ListParams::default()
        .at(&then)
        .matching(VersionMatch::Exact);
    let old = secrets.list(&lp).await.unwrap();
    assert_eq!(
        old.metadata.resource_version.as_deref(),
        Some(then.as_str())
    );
    let names: Vec<(String, String)> = old
        .items
        .iter()
        .map(|s| (s.name_any(), s.labels()["gen"].clone()))
        .collect();
    assert_eq!(names, [("v".to_string(), "one".to_string())]);
    // A version the server has not reached: 504 with Retry-After, which kube's client retries
    // for minutes (on a real server too), so this part runs on the double with retries off.
    if let Some(d) = c.double.as_ref() {
        let mut config = kube::Config::new(d.url().parse().unwrap());
        config.default_retry = false;
        let no_retry = kube::Client::try_from(config).unwrap();
        let secrets: Api<Secret> = Api::namespaced(no_retry, &c.namespace);
        let future = (then.parse::<u64>().unwrap() + 1_000_000).to_string();
        let lp = ListParams::default()
            .at(&future)
            .matching(VersionMatch::NotOlderThan);
        let err = api_err(secrets.list(&lp).await.unwrap_err());
        assert_eq!(
            (err.code, err.reason.as_str()),
            (504, "Timeout"),
            "{}",
            err.message
        );
    }
    c.cleanup().await;
}

#[tokio::test]
async fn metadata_only_get_list_and_watch() {
    use kube::core::PartialObjectMeta;
    let c = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.namespace);
    secrets
        .create(&PostParams::default(), &secret("meta", json!({"m": "1"})))
        .await
        .unwrap();
    let got = secrets.get_metadata("meta").await.unwrap();
    assert_eq!(got.metadata.labels.unwrap()["m"], "1");
    assert_eq!(
        got.types.map(|t| t.kind).as_deref(),
        Some("PartialObjectMetadata")
    );
    let list = secrets.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let metas: Api<PartialObjectMeta<Secret>> = Api::namespaced(c.client.clone(), &c.namespace);
    let stream = watcher(metas, watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    let mut created = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "metadata watcher saw nothing");
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap();
        match ev {
            Some(Ok(watcher::Event::InitDone)) if !created => {
                created = true;
                secrets
                    .create(&PostParams::default(), &secret("meta2", json!({})))
                    .await
                    .unwrap();
            }
            Some(Ok(watcher::Event::Apply(m))) if m.name_any() == "meta2" => break,
            Some(Err(e)) => panic!("{e}"),
            _ => {}
        }
    }
    c.cleanup().await;
}

#[tokio::test]
async fn discovery_finds_builtins_and_the_crd() {
    use kube::discovery::{Discovery, Scope};
    let c = cluster().await;
    let discovery = Discovery::new(c.client.clone()).run().await.unwrap();
    let gvk = GroupVersionKind::gvk(GROUP, "v1", "Widget");
    let (ar, caps) = discovery.resolve_gvk(&gvk).expect("widgets discovered");
    assert_eq!(ar.plural, "widgets");
    assert!(matches!(caps.scope, Scope::Namespaced));
    assert!(
        caps.subresources.iter().any(|(s, _)| s.plural == "status"),
        "{caps:?}"
    );
    for (group, kind) in [
        ("", "Secret"),
        ("coordination.k8s.io", "Lease"),
        ("events.k8s.io", "Event"),
    ] {
        let gvk = GroupVersionKind::gvk(group, "v1", kind);
        assert!(
            discovery.resolve_gvk(&gvk).is_some(),
            "{kind} not discovered"
        );
    }
    c.cleanup().await;
}

#[tokio::test]
async fn fields_set_by_an_update_conflict_with_a_later_apply() {
    let c = cluster().await;
    let api = widgets(&c);
    let ctl = PatchParams::apply("ctl");
    api.patch(
        "mix",
        &ctl,
        &Patch::Apply(widget("mix", json!({"size": 1}))),
    )
    .await
    .unwrap();
    // Another client merge-patches the field: it becomes that manager's (operation Update).
    let editor = PatchParams {
        field_manager: Some("editor".into()),
        ..Default::default()
    };
    let w = api
        .patch("mix", &editor, &Patch::Merge(json!({"spec": {"size": 2}})))
        .await
        .unwrap();
    let ops: Vec<(String, String)> = w
        .managed_fields()
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(ops.contains(&("editor".into(), "Update".into())), "{ops:?}");
    let err = api_err(
        api.patch(
            "mix",
            &ctl,
            &Patch::Apply(widget("mix", json!({"size": 3}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert!(err.message.contains("editor"), "{}", err.message);
    let forced = api
        .patch(
            "mix",
            &ctl.clone().force(),
            &Patch::Apply(widget("mix", json!({"size": 3}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["size"], 3);
    c.cleanup().await;
}

// CEL cost: a CRD whose rules a real API server estimates as too expensive is refused when it
// is created (422, the rule named), and the same CRD with its strings, lists and maps bounded
// is accepted and serves objects. Each test also passes against a real cluster.

const COSTS_GROUP: &str = "costs.doubletest.example.com";

/// A CRD of [`COSTS_GROUP`] whose objects have `spec` of the given schema.
fn cost_crd(plural: &str, kind: &str, spec: Value) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{COSTS_GROUP}")},
        "spec": {"group": COSTS_GROUP, "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "properties": {"spec": spec}}}}]}
    }))
    .expect("cost test CRD")
}

fn crds(c: &TestCluster) -> Api<CustomResourceDefinition> {
    Api::all(c.client.clone())
}

/// Delete a CRD and wait until it is gone (a real cluster may keep one from an earlier run).
async fn delete_crd(c: &TestCluster, name: &str) {
    let _ = crds(c).delete(name, &DeleteParams::default()).await;
    for _ in 0..300 {
        if crds(c).get_opt(name).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("CRD {name} was not deleted");
}

/// Creating `crd` is refused for its CEL cost: a 422 whose message names each of `expected`.
async fn refused_on_cost(c: &TestCluster, crd: &CustomResourceDefinition, expected: &[&str]) {
    let name = crd.metadata.name.clone().unwrap();
    delete_crd(c, &name).await;
    let err = api_err(
        crds(c)
            .create(&PostParams::default(), crd)
            .await
            .expect_err("a real API server refuses this CRD"),
    );
    assert_eq!(
        (err.code, err.reason.as_str()),
        (422, "Invalid"),
        "{}",
        err.message
    );
    let prefix = format!("CustomResourceDefinition.apiextensions.k8s.io \"{name}\" is invalid: ");
    assert!(err.message.starts_with(&prefix), "{}", err.message);
    for e in expected {
        assert!(err.message.contains(e), "{e:?} not in {}", err.message);
    }
    let causes = err
        .details
        .as_ref()
        .map(|d| d.causes.clone())
        .unwrap_or_default();
    assert!(
        causes.iter().all(|c| c.reason == "FieldValueForbidden"),
        "{causes:?}"
    );
}

/// Create `crd`, wait until it is established, and return the API of its objects.
async fn established(c: &TestCluster, crd: &CustomResourceDefinition) -> Api<DynamicObject> {
    let name = crd.metadata.name.clone().unwrap();
    delete_crd(c, &name).await;
    crds(c)
        .create(&PostParams::default(), crd)
        .await
        .expect("the bounded CRD is accepted");
    for _ in 0..100 {
        let got = crds(c).get(&name).await.unwrap();
        let conditions = got.status.and_then(|s| s.conditions).unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
        {
            let gvk = GroupVersionKind::gvk(COSTS_GROUP, "v1", &crd.spec.names.kind);
            let ar = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
            return Api::namespaced_with(c.client.clone(), &c.namespace, &ar);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("CRD {name} not established");
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(
        json!({"apiVersion": format!("{COSTS_GROUP}/v1"), "kind": kind,
        "metadata": {"name": name}, "spec": spec}),
    )
    .expect("object")
}

/// Whether creating `obj` is refused with a message containing `expected`.
async fn refused(api: &Api<DynamicObject>, obj: &DynamicObject, expected: &str) {
    let err = api_err(api.create(&PostParams::default(), obj).await.unwrap_err());
    assert_eq!(err.code, 422, "{}", err.message);
    assert!(
        err.message.contains(expected),
        "{expected:?} not in {}",
        err.message
    );
}

const RULE_0: &str = "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0]";
const RULE_1: &str = "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[1]";

#[tokio::test]
async fn crd_rule_on_unbounded_strings_is_refused_until_they_are_bounded() {
    let c = test_cluster(vec![]).await;
    let person = |max_length: Option<u64>| {
        let mut name = json!({"type": "string"});
        if let Some(n) = max_length {
            name["maxLength"] = json!(n);
        }
        cost_crd(
            "people",
            "Person",
            json!({"type": "object", "required": ["first", "last", "nickname"],
            "properties": {"first": name, "last": name, "nickname": name},
            "x-kubernetes-validations": [{
                "rule": "(self.first + ' ' + self.last).lowerAscii()\
                         .contains(self.nickname.lowerAscii())",
                "message": "the nickname must be part of the full name"}]}),
        )
    };
    // `contains` costs the product of both lengths: two concatenated strings of up to 3 MiB
    // searched for a third.
    let forbidden = format!(
        "{RULE_0}.rule: Forbidden: estimated rule cost exceeds budget by factor of more than 100x \
         (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where \
         arrays, maps, and strings are declared)"
    );
    refused_on_cost(&c, &person(None), &[&forbidden]).await;
    let api = established(&c, &person(Some(64))).await;
    api.create(
        &PostParams::default(),
        &object(
            "Person",
            "ada",
            json!({"first": "Ada", "last": "Lovelace", "nickname": "love"}),
        ),
    )
    .await
    .unwrap();
    let bob = object(
        "Person",
        "bob",
        json!({"first": "Robert", "last": "Smith", "nickname": "Bob"}),
    );
    refused(&api, &bob, "the nickname must be part of the full name").await;
    delete_crd(&c, "people.costs.doubletest.example.com").await;
    c.cleanup().await;
}

#[tokio::test]
async fn crd_rules_iterating_an_unbounded_list_are_refused_until_it_is_bounded() {
    let c = test_cluster(vec![]).await;
    let team = |max_items: Option<u64>| {
        let mut tags = json!({"type": "array", "items": {"type": "string", "maxLength": 63}});
        if let Some(n) = max_items {
            tags["maxItems"] = json!(n);
        }
        cost_crd(
            "teams",
            "Team",
            json!({"type": "object", "properties": {
                "tags": tags, "owner": {"type": "string", "maxLength": 63}},
            "x-kubernetes-validations": [
                {"rule": "!has(self.tags) || self.tags.all(t, t.matches('^[a-z][-a-z0-9]*$'))",
                 "message": "tags are lowercase words"},
                {"rule": "!has(self.owner) || (has(self.tags) && self.tags.exists(t, t == self.owner))",
                 "message": "the owner must be one of the tags"}]}),
        )
    };
    // Items are bounded, the list is not: each rule runs once per item of a list that could
    // hold a million (3 MiB of `"",`).
    let all = format!("{RULE_0}.rule: Forbidden: estimated rule cost exceeds budget by factor of");
    let exists =
        format!("{RULE_1}.rule: Forbidden: estimated rule cost exceeds budget by factor of");
    refused_on_cost(&c, &team(None), &[&all, &exists]).await;
    let api = established(&c, &team(Some(16))).await;
    let ok = object(
        "Team",
        "ok",
        json!({"tags": ["infra", "oncall"], "owner": "infra"}),
    );
    api.create(&PostParams::default(), &ok).await.unwrap();
    let upper = object("Team", "upper", json!({"tags": ["Infra"]}));
    refused(&api, &upper, "tags are lowercase words").await;
    let stranger = object(
        "Team",
        "stranger",
        json!({"tags": ["infra"], "owner": "ops"}),
    );
    refused(&api, &stranger, "the owner must be one of the tags").await;
    delete_crd(&c, "teams.costs.doubletest.example.com").await;
    c.cleanup().await;
}

#[tokio::test]
async fn crd_message_expression_on_an_unbounded_field_is_refused_until_it_is_bounded() {
    let c = test_cluster(vec![]).await;
    let labelled = |bounded: bool| {
        let mut tags = json!({"type": "array", "items": {"type": "string"}});
        if bounded {
            tags["maxItems"] = json!(32);
            tags["items"]["maxLength"] = json!(63);
        }
        cost_crd(
            "labelleds",
            "Labelled",
            json!({"type": "object", "properties": {"tags": tags},
            "x-kubernetes-validations": [{"rule": "!has(self.tags) || size(self.tags) <= 3",
                "messageExpression": "'at most 3 tags, got: ' + self.tags.join(', ')"}]}),
        )
    };
    // The rule is cheap; its message joins a million strings of up to 3 MiB each. A
    // messageExpression is costed on its own (not per occurrence), and counts in the total.
    let forbidden = format!(
        "{RULE_0}.messageExpression: Forbidden: estimated messageExpression cost exceeds budget \
         by factor of more than 100x"
    );
    let total = "spec.validation.openAPIV3Schema: Forbidden: x-kubernetes-validations estimated \
                 rule cost total for entire OpenAPIv3 schema exceeds budget";
    refused_on_cost(&c, &labelled(false), &[&forbidden, total]).await;
    let api = established(&c, &labelled(true)).await;
    let many = object("Labelled", "many", json!({"tags": ["a", "b", "c", "d"]}));
    refused(&api, &many, "at most 3 tags, got: a, b, c, d").await;
    delete_crd(&c, "labelleds.costs.doubletest.example.com").await;
    c.cleanup().await;
}

#[tokio::test]
async fn updating_a_crd_with_an_expensive_rule_is_refused_too() {
    let c = test_cluster(vec![]).await;
    let cheap = cost_crd(
        "gadgets",
        "Gadget",
        json!({"type": "object", "properties": {"name": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "has(self.name)"}]}),
    );
    established(&c, &cheap).await;
    let name = "gadgets.costs.doubletest.example.com";
    let mut expensive = crds(&c).get(name).await.unwrap();
    let schema = expensive.spec.versions[0].schema.as_mut().unwrap();
    schema
        .open_api_v3_schema
        .as_mut()
        .unwrap()
        .properties
        .as_mut()
        .unwrap()
        .get_mut("spec")
        .unwrap()
        .x_kubernetes_validations = serde_json::from_value(json!([
            {"rule": "self.name.contains(self.name.lowerAscii())"}]))
    .unwrap();
    let err = api_err(
        crds(&c)
            .replace(name, &PostParams::default(), &expensive)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{}", err.message);
    assert!(
        err.message.contains(&format!(
            "{RULE_0}.rule: Forbidden: estimated rule cost exceeds budget by factor of"
        )),
        "{}",
        err.message
    );
    delete_crd(&c, name).await;
    c.cleanup().await;
}

/// The project's own CRD: every rule within the real API server's cost limits, so a rule added
/// to MediaJob that a cluster would refuse fails here, in CI.
#[tokio::test]
async fn the_mediajob_crd_passes_the_cel_cost_check() {
    use kube::CustomResourceExt;
    use mediajob_operator::crd::MediaJob;
    let crd = MediaJob::crd();
    let costs = kube_apiserver_double::crd_costs(&crd);
    for e in &costs.expressions {
        eprintln!("{:>12}  {}", e.cost, e.path);
    }
    assert!(
        costs.refusals.is_empty(),
        "a real API server would refuse the MediaJob CRD:\n{}",
        costs.refusals.join("\n")
    );
    assert!(
        !costs.expressions.is_empty(),
        "the MediaJob CRD has CEL rules"
    );
    let total: u64 = costs.expressions.iter().map(|e| e.cost).sum();
    assert!(total <= kube_apiserver_double::STATIC_ESTIMATED_CRD_COST_LIMIT);
    // And the double (or the cluster) takes it through the API.
    let c = test_cluster(vec![crd]).await;
    let got = crds(&c).get("mediajobs.mediajob.io").await.unwrap();
    let established = got
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);
    c.cleanup().await;
}

/// A lagging watch cache: watches and lists at resourceVersion "0" see a change only once it is
/// as old as the lag; a consistent list (no resourceVersion) and a get see it at once.
#[tokio::test]
async fn a_lagging_watch_cache_hides_young_changes_from_watches_and_cached_lists() {
    let c = cluster().await;
    let Some(faults) = c.faults() else { return };
    let api = widgets(&c);
    api.create(&PostParams::default(), &widget("old", json!({"size": 1})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    faults.set_cache_lag(Duration::from_secs(1));
    let written = Instant::now();
    api.create(&PostParams::default(), &widget("young", json!({"size": 2})))
        .await
        .unwrap();
    let names = |list: kube::core::ObjectList<DynamicObject>| -> Vec<String> {
        list.items.iter().map(|o| o.name_any()).collect()
    };
    let cached = api.list(&ListParams::default().match_any()).await.unwrap();
    assert_eq!(names(cached), ["old"], "a cached list lags");
    let consistent = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        names(consistent),
        ["old", "young"],
        "a consistent list does not"
    );
    assert!(api.get("young").await.is_ok());
    // A watch started now (from the cache: resourceVersion "0") begins at the cache's state and
    // sees the new object a lag later.
    let mut events = api
        .watch(&kube::api::WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let seen_at = loop {
        match events.try_next().await.unwrap().unwrap() {
            kube::api::WatchEvent::Added(o) if o.name_any() == "young" => {
                break written.elapsed();
            }
            _ => {}
        }
    };
    assert!(
        seen_at >= Duration::from_millis(950),
        "seen after {seen_at:?}"
    );
    assert!(seen_at < Duration::from_secs(3), "seen after {seen_at:?}");
    c.cleanup().await;
}

/// `dryRun=All` (what `kubectl diff` and Flux's drift check send): the answer is the object the
/// write would store, and nothing is stored: no object, no new resourceVersion.
#[tokio::test]
async fn dry_run_writes_answer_what_they_would_store_and_store_nothing() {
    let c = cluster().await;
    let api = widgets(&c);
    let dry_post = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let would = api
        .create(&dry_post, &widget("dry", json!({"size": 1})))
        .await
        .unwrap();
    assert_eq!(would.data["spec"]["size"], 1);
    assert!(would.metadata.resource_version.is_none(), "{would:?}");
    assert_eq!(api_err(api.get("dry").await.unwrap_err()).code, 404);

    let live = api
        .create(&PostParams::default(), &widget("w", json!({"size": 1})))
        .await
        .unwrap();
    let dry_patch = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let patched = api
        .patch("w", &dry_patch, &Patch::Merge(json!({"spec": {"size": 2}})))
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["size"], 2);
    assert_eq!(
        patched.metadata.resource_version,
        live.metadata.resource_version
    );
    let dry_apply = PatchParams {
        dry_run: true,
        ..PatchParams::apply("diff").force()
    };
    let applied = api
        .patch(
            "w",
            &dry_apply,
            &Patch::Apply(
                json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget",
                "metadata": {"name": "w"}, "spec": {"size": 3}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["size"], 3);
    assert_eq!(
        applied.metadata.generation,
        Some(2),
        "what the write would make"
    );
    let now = api.get("w").await.unwrap();
    assert_eq!(now.data["spec"]["size"], 1);
    assert_eq!(
        now.metadata.resource_version,
        live.metadata.resource_version
    );
    assert_eq!(now.metadata.generation, Some(1));
}
