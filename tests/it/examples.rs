//! Every manifest in `examples/` is one a user can apply as is: MediaJobs deserialize into the
//! Rust types (no unknown or mistyped field is silently dropped) and pass the CRD's CEL rules;
//! Secrets carry the keys the operator reads.

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use mediajob_operator::crd::MediaJob;
use serde_json::Value;

fn documents() -> Vec<(String, Value)> {
    let mut docs = vec![];
    let mut paths: Vec<_> = std::fs::read_dir("examples")
        .expect("examples/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let values: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        for value in values.into_iter().filter(|v| !v.is_null()) {
            docs.push((path.display().to_string(), value));
        }
    }
    docs
}

#[test]
fn examples_cover_every_access_mode_and_several_outputs() {
    let jobs: Vec<MediaJob> = documents()
        .into_iter()
        .filter(|(_, v)| v["kind"] == "MediaJob")
        .map(|(_, v)| serde_json::from_value(v).unwrap())
        .collect();
    let modes: Vec<_> = jobs
        .iter()
        .map(|j| j.spec.access.unwrap_or_default())
        .collect();
    for mode in ["presign", "authBlock", "public"] {
        assert!(
            modes
                .iter()
                .any(|m| serde_json::to_value(m).unwrap() == mode),
            "no example uses access {mode}"
        );
    }
    assert!(
        jobs.iter()
            .any(|j| j.spec.outputs.as_ref().is_some_and(|o| o.len() >= 2))
    );
}

#[test]
fn every_example_mediajob_is_valid() {
    let crd = MediaJob::crd();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref(),
    )
    .unwrap();
    let mut checked = 0;
    for (path, doc) in documents() {
        if doc["kind"] != "MediaJob" {
            continue;
        }
        assert_eq!(doc["apiVersion"], "mediajob.io/v1alpha1", "{path}");
        // Round-trip through the types: a field the types do not know would vanish here.
        let typed: MediaJob = serde_json::from_value(doc.clone())
            .unwrap_or_else(|e| panic!("{path}: does not match the MediaJob types: {e}"));
        let mut back = serde_json::to_value(&typed).unwrap();
        back.as_object_mut().unwrap().remove("status");
        assert_eq!(
            back["spec"], doc["spec"],
            "{path}: a field was dropped or rewritten"
        );
        if let Err(errors) = Validator::new().validate(&schema, &doc, None) {
            panic!("{path}: CEL rules refuse it: {errors:?}");
        }
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected at least four example MediaJobs, found {checked}"
    );
}

#[test]
fn example_secrets_name_the_keys_the_operator_reads() {
    let secrets: Vec<Value> = documents()
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == "Secret")
        .collect();
    let keys: Vec<String> = secrets
        .iter()
        .flat_map(|s| {
            s["stringData"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "DOLBYIO_APP_KEY",
        "DOLBYIO_APP_SECRET",
    ] {
        assert!(
            keys.iter().any(|k| k == key),
            "secret-template.yaml lacks {key}"
        );
    }
}

/// The examples as a cluster sees them: created through the API double, which applies the CRD's
/// OpenAPI schema (types, patterns, bounds, unknown fields) and CEL rules like an API server.
#[tokio::test]
async fn every_example_mediajob_is_accepted_by_an_api_server() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};
    let double = kube_apiserver_double::ApiServerDouble::start(vec![MediaJob::crd()])
        .await
        .unwrap();
    let client = double.client();
    for (path, doc) in documents() {
        if doc["kind"] != "MediaJob" {
            continue;
        }
        // One namespace per file: two examples may use the same name.
        let stem = std::path::Path::new(&path)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let ns = stem.replace(['_', '.'], "-");
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        let _ = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await;
        let mut job: MediaJob = serde_json::from_value(doc.clone()).unwrap();
        job.metadata.namespace = Some(ns.clone());
        let created = Api::<MediaJob>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &job)
            .await
            .unwrap_or_else(|e| panic!("{path}: refused: {e}"));
        // Nothing the user wrote was pruned or defaulted away.
        assert_eq!(
            serde_json::to_value(&created.spec).unwrap(),
            doc["spec"],
            "{path}"
        );
    }
    double.shutdown().await;
}

/// Example MediaJobSets round-trip through the types, pass the CRD's rules, are stored by an API
/// server as written, and their source and templates pass the operator's own checks.
#[tokio::test]
async fn every_example_mediajob_set_is_valid_and_accepted() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};
    use mediajob_operator::crd::MediaJobSet;
    let crd = MediaJobSet::crd();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref(),
    )
    .unwrap();
    let double = kube_apiserver_double::ApiServerDouble::start(vec![crd.clone()])
        .await
        .unwrap();
    let client = double.client();
    let mut checked = 0;
    for (path, doc) in documents() {
        if doc["kind"] != "MediaJobSet" {
            continue;
        }
        let typed: MediaJobSet = serde_json::from_value(doc.clone())
            .unwrap_or_else(|e| panic!("{path}: does not match the MediaJobSet types: {e}"));
        assert_eq!(
            serde_json::to_value(&typed.spec).unwrap(),
            doc["spec"],
            "{path}: a field was dropped or rewritten"
        );
        if let Err(errors) = Validator::new().validate(&schema, &doc, None) {
            panic!("{path}: CEL rules refuse it: {errors:?}");
        }
        let spec = &typed.spec;
        mediajob_operator::set::source::SetSource::new(
            &typed.metadata.name.clone().unwrap_or_default(),
            &spec.source.prefix,
            spec.source.include.as_deref().unwrap_or_default(),
            spec.source.exclude.as_deref().unwrap_or_default(),
            &spec.template.output_templates(),
        )
        .unwrap_or_else(|e| panic!("{path}: {e}"));
        let ns = typed.metadata.namespace.clone().unwrap_or("default".into());
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        let _ = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await;
        let created = Api::<MediaJobSet>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &typed)
            .await
            .unwrap_or_else(|e| panic!("{path}: refused: {e}"));
        assert_eq!(
            serde_json::to_value(&created.spec).unwrap(),
            doc["spec"],
            "{path}"
        );
        checked += 1;
    }
    assert!(checked >= 1, "expected an example MediaJobSet");
    double.shutdown().await;
}
