//! The MediaJob CRD: the YAML in `crds/` matches the Rust types, and every CEL rule accepts what it
//! should and rejects what it should (evaluated client-side with kube's `cel` feature).

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use mediajob_operator::crd::{CRD_FILES, MediaJob, crds_yaml};
use serde_json::{Value, json};

#[test]
fn crds_directory_matches_the_types() {
    for (file, generated) in CRD_FILES.iter().zip(crds_yaml()) {
        let path = format!("crds/{file}");
        let on_disk = std::fs::read_to_string(&path).expect("crds/ holds the generated CRDs");
        assert!(
            on_disk == generated,
            "{path} is out of date: run `cargo run -- crd` and put each CRD in its file of crds/"
        );
    }
    let names: Vec<_> = std::fs::read_dir("crds")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        CRD_FILES.len(),
        "crds/ holds exactly the generated CRDs: {names:?}"
    );
}

#[test]
fn account_claims_are_cluster_wide() {
    let crd = mediajob_operator::crd::MediaApiAccountClaim::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("mediaapiaccountclaims.mediajob.io")
    );
    assert_eq!(
        crd.spec.scope, "Cluster",
        "one release per account in the whole cluster"
    );
}

#[test]
fn crd_has_the_names_users_type() {
    let crd = MediaJob::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("mediajobs.mediajob.io"));
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["mj".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<(String, i32)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.priority.unwrap_or(0)))
        .collect();
    let expected = [
        ("Phase", 0),
        ("Progress", 0),
        ("Job ID", 1),
        ("Attempts", 1),
        ("Age", 0),
        ("Message", 1),
    ];
    assert_eq!(columns, expected.map(|(n, p)| (n.to_string(), p)));
}

#[test]
fn schema_has_no_defaults_and_no_unsigned_formats() {
    // Defaults would be written into stored objects (GitOps drift); uint formats are not Kubernetes'.
    let schema = serde_json::to_string(&MediaJob::crd()).unwrap();
    assert!(
        !schema.contains("\"default\""),
        "the schema must not default fields"
    );
    assert!(
        !schema.contains("uint"),
        "unsigned formats are unknown to Kubernetes"
    );
}

fn schema() -> Value {
    let crd = MediaJob::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref(),
    )
    .unwrap()
}

/// Runs the CEL rules; returns the failure messages.
fn cel(object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema(), object, old) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn job(spec: Value) -> Value {
    json!({
        "apiVersion": "mediajob.io/v1alpha1",
        "kind": "MediaJob",
        "metadata": {"name": "ep42", "namespace": "podcasts"},
        "spec": spec,
    })
}

fn enhance() -> Value {
    json!({
        "operation": "enhance",
        "input": {"url": "s3://raw/ep42.wav"},
        "output": {"url": "s3://out/ep42.wav"},
        "credentials": {"secretRef": {"name": "studio-s3"}},
    })
}

fn with(mut base: Value, patch: Value) -> Value {
    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    if v.is_null() {
                        a.remove(&k);
                    } else {
                        merge(a.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            (a, b) => *a = b,
        }
    }
    merge(&mut base, patch);
    base
}

#[track_caller]
fn accepts(spec: Value) {
    let errors = cel(&job(spec), None);
    assert!(errors.is_empty(), "expected acceptance, got {errors:?}");
}

#[track_caller]
fn rejects(spec: Value, message_part: &str) {
    let errors = cel(&job(spec), None);
    assert!(
        errors.iter().any(|e| e.contains(message_part)),
        "expected a failure containing {message_part:?}, got {errors:?}"
    );
}

#[test]
fn a_plain_presign_job_is_valid() {
    accepts(enhance());
}

#[test]
fn diagnose_takes_no_output() {
    let diagnose = json!({"operation": "diagnose", "input": {"url": "s3://raw/a.wav"},
                          "credentials": {"secretRef": {"name": "s"}}});
    accepts(diagnose.clone());
    rejects(
        with(diagnose, json!({"output": {"url": "s3://out/x"}})),
        "takes no output",
    );
}

#[test]
fn exactly_one_of_output_and_outputs() {
    rejects(
        with(enhance(), json!({"output": null})),
        "exactly one of output or outputs",
    );
    let transcode = with(
        enhance(),
        json!({"operation": "transcode", "outputs": [{"url": "s3://out/a.mp4"}]}),
    );
    rejects(transcode.clone(), "exactly one of output or outputs");
    accepts(with(transcode, json!({"output": null})));
}

#[test]
fn several_outputs_only_for_transcode_and_mastering() {
    let several =
        json!({"output": null, "outputs": [{"url": "s3://out/a"}, {"url": "s3://out/b"}]});
    rejects(with(enhance(), several.clone()), "only for transcode");
    for op in ["transcode", "master", "master/preview"] {
        accepts(with(
            with(enhance(), several.clone()),
            json!({"operation": op}),
        ));
    }
}

#[test]
fn master_writes_at_most_five_outputs() {
    let outputs = |n: usize| -> Value {
        (0..n)
            .map(|i| json!({"url": format!("s3://out/{i}.wav")}))
            .collect::<Vec<_>>()
            .into()
    };
    let master = |n| {
        with(
            enhance(),
            json!({"operation": "master", "output": null, "outputs": outputs(n)}),
        )
    };
    accepts(master(5));
    rejects(master(6), "at most five outputs");
}

#[test]
fn only_auth_blocks_need_a_credentials_secret() {
    // Without one, presign signs with the operator's own identity where allowed (decided by
    // the operator per namespace, not by the schema).
    accepts(with(enhance(), json!({"credentials": null})));
    accepts(with(
        enhance(),
        json!({"credentials": null, "access": "presign"}),
    ));
    rejects(
        with(
            enhance(),
            json!({"credentials": null, "access": "authBlock"}),
        ),
        "access authBlock sends the keys of spec.credentials",
    );
    accepts(with(
        enhance(),
        json!({"credentials": null, "access": "public"}),
    ));
}

#[test]
fn auth_block_needs_s3_urls() {
    let auth = with(enhance(), json!({"access": "authBlock"}));
    accepts(auth.clone());
    rejects(
        with(
            auth.clone(),
            json!({"input": {"url": "https://raw.s3.amazonaws.com/ep42.wav"}}),
        ),
        "authBlock needs s3:// URLs",
    );
    rejects(
        with(
            auth,
            json!({"output": {"url": "https://out.s3.amazonaws.com/x.wav"}}),
        ),
        "authBlock needs s3:// URLs",
    );
}

#[test]
fn plain_http_only_for_public_objects() {
    let http_in = json!({"input": {"url": "http://127.0.0.1:9000/raw/ep42.wav"}});
    rejects(
        with(enhance(), http_in.clone()),
        "only allowed with access public",
    );
    accepts(with(
        with(enhance(), http_in),
        json!({"access": "public", "credentials": null}),
    ));
    accepts(with(
        enhance(),
        json!({"input": {"url": "https://raw.s3.eu-west-1.amazonaws.com/a.wav"}}),
    ));
}

#[test]
fn s3_urls_need_a_valid_bucket_and_a_key() {
    let message = mediajob_operator::crd::S3_URL_MESSAGE;
    for bad in [
        "s3:///a.wav",
        "s3://ab/x",
        "s3://Bad_Bucket/x",
        "s3://-bucket/x",
        "s3://bucket-/x",
        "s3://bucket",
        "s3://bucket/",
    ] {
        rejects(with(enhance(), json!({"input": {"url": bad}})), message);
        rejects(with(enhance(), json!({"output": {"url": bad}})), message);
        // Public access names s3:// URLs too; they must still name an object.
        rejects(
            with(
                enhance(),
                json!({"access": "public", "credentials": null, "input": {"url": bad}}),
            ),
            message,
        );
    }
    let long = format!("s3://{}/x", "b".repeat(64));
    rejects(with(enhance(), json!({"input": {"url": long}})), message);
    let transcode = with(
        enhance(),
        json!({"operation": "transcode", "output": null,
               "outputs": [{"url": "s3://out/a.mp4"}, {"url": "s3://Out/b.mp4"}]}),
    );
    rejects(transcode, message);
    for good in [
        "s3://abc/x",
        "s3://my.bucket-1/dir/a b.wav",
        &format!("s3://{}/x", "b".repeat(63)),
    ] {
        accepts(with(enhance(), json!({"input": {"url": good}})));
    }
}

#[test]
fn urls_carry_no_fragment() {
    let message = mediajob_operator::crd::NO_FRAGMENT_MESSAGE;
    rejects(
        with(enhance(), json!({"input": {"url": "s3://raw/k#frag"}})),
        message,
    );
    rejects(
        with(enhance(), json!({"output": {"url": "s3://out/k#"}})),
        message,
    );
    rejects(
        with(
            enhance(),
            json!({"access": "public", "credentials": null, "input": {"url": "https://h/x#frag"}}),
        ),
        message,
    );
    accepts(with(
        enhance(),
        json!({"input": {"url": "https://raw.s3.amazonaws.com/a%23b.wav"}}),
    ));
}

#[test]
fn ttl_is_capped_at_seven_days() {
    accepts(with(enhance(), json!({"urls": {"ttl": "168h"}})));
    rejects(
        with(enhance(), json!({"urls": {"ttl": "169h"}})),
        "at most 7 days",
    );
}

#[test]
fn ttl_has_a_floor() {
    rejects(
        with(
            enhance(),
            json!({"urls": {"ttl": "1m", "refreshBefore": "30s"}}),
        ),
        "at least 5m",
    );
    accepts(with(
        enhance(),
        json!({"urls": {"ttl": "5m", "refreshBefore": "1m"}}),
    ));
}

#[test]
fn refresh_before_is_shorter_than_ttl_with_defaults_applied() {
    accepts(with(enhance(), json!({"urls": {"ttl": "1h"}})));
    accepts(with(
        enhance(),
        json!({"urls": {"ttl": "2h", "refreshBefore": "1h30m"}}),
    ));
    rejects(
        with(
            enhance(),
            json!({"urls": {"ttl": "1h", "refreshBefore": "1h"}}),
        ),
        "refreshBefore must be shorter than ttl",
    );
    // The default refreshBefore (30m) does not fit in a 20m ttl.
    rejects(
        with(enhance(), json!({"urls": {"ttl": "20m"}})),
        "refreshBefore must be shorter than ttl",
    );
    // The default ttl (6h) bounds an explicit refreshBefore.
    rejects(
        with(enhance(), json!({"urls": {"refreshBefore": "7h"}})),
        "refreshBefore must be shorter than ttl",
    );
}

fn submitted(spec: Value, phase: &str) -> Value {
    with(
        job(spec),
        json!({"status": {"phase": phase, "jobId": "ad4bcd54",
                          "submission": {"attempt": 1, "intentTime": "2026-11-28T10:00:00Z", "jobId": "ad4bcd54"}}}),
    )
}

#[track_caller]
fn update(old: &Value, new_spec: Value) -> Vec<String> {
    let mut new = old.clone();
    new["spec"] = new_spec;
    cel(&new, Some(old))
}

#[test]
fn what_was_submitted_cannot_change() {
    let old = submitted(enhance(), "Running");
    for change in [
        json!({"input": {"url": "s3://raw/other.wav"}}),
        json!({"output": {"url": "s3://out/other.wav"}}),
        json!({"operation": "analyze"}),
        json!({"credentials": {"secretRef": {"name": "other"}}}),
        json!({"access": "authBlock"}),
        json!({"s3": {"region": "eu-west-1"}}),
        json!({"mediaApiCredentials": {"secretRef": {"name": "mine"}}}),
    ] {
        let errors = update(&old, with(enhance(), change.clone()));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("cannot change once the job is submitted")),
            "{change} should be refused, got {errors:?}"
        );
    }
}

#[test]
fn policies_can_change_after_submission() {
    let old = submitted(enhance(), "Running");
    for change in [
        json!({"suspend": true}),
        json!({"deletionPolicy": "Orphan"}),
        json!({"ttlSecondsAfterFinished": 60}),
        json!({"activeDeadlineSeconds": 600}),
        json!({"retry": {"limit": 5}}),
        json!({"urls": {"ttl": "12h"}}),
        json!({"access": "presign"}), // the default, written out
    ] {
        let errors = update(&old, with(enhance(), change.clone()));
        assert!(
            errors.is_empty(),
            "{change} should be allowed, got {errors:?}"
        );
    }
}

#[test]
fn spec_is_free_before_submission_and_after_failure() {
    let change = with(enhance(), json!({"input": {"url": "s3://raw/fixed.wav"}}));
    assert!(update(&job(enhance()), change.clone()).is_empty());
    let mut pending = job(enhance());
    pending["status"] = json!({"phase": "Pending"});
    assert!(update(&pending, change.clone()).is_empty());
    assert!(update(&submitted(enhance(), "Failed"), change).is_empty());
}

/// The chart's ValidatingAdmissionPolicy for label-selected releases, evaluated with kube's CEL:
/// its `object`/`oldObject` become the validator's `self`/`oldSelf`.
#[test]
fn labels_are_locked_while_a_submission_is_in_flight() {
    use mediajob_operator::crd::admission_policy::LABELS_LOCKED_IN_FLIGHT;
    let rule = LABELS_LOCKED_IN_FLIGHT
        .replace("oldObject", "oldSelf")
        .replace("object", "self");
    let schema = json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-validations": [{"rule": rule}],
    });
    let allowed =
        |old: &Value, new: &Value| Validator::new().validate(&schema, new, Some(old)).is_ok();
    let labelled = |team: &str, status: Value| {
        let mut job = job(enhance());
        job["metadata"]["labels"] = json!({"team": team});
        if !status.is_null() {
            job["status"] = status;
        }
        job
    };
    let in_flight = json!({"phase": "Running", "submission": {"attempt": 1, "intentTime": "2026-12-01T00:00:00Z"}});
    assert!(
        !allowed(
            &labelled("a", in_flight.clone()),
            &labelled("b", in_flight.clone())
        ),
        "in flight: locked"
    );
    let mut unlabelled = labelled("a", in_flight.clone());
    unlabelled["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("labels");
    assert!(
        !allowed(&labelled("a", in_flight.clone()), &unlabelled),
        "removing them too"
    );
    assert!(
        allowed(
            &labelled("a", in_flight.clone()),
            &labelled("a", in_flight.clone())
        ),
        "other edits pass"
    );
    let queued = json!({"phase": "Queued"});
    assert!(
        allowed(&labelled("a", queued.clone()), &labelled("b", queued)),
        "not submitted yet"
    );
    assert!(
        allowed(&labelled("a", Value::Null), &labelled("b", Value::Null)),
        "no status"
    );
    for phase in ["Succeeded", "Failed", "Cancelled"] {
        let done = json!({"phase": phase, "submission": {"attempt": 1, "intentTime": "2026-12-01T00:00:00Z"}});
        assert!(
            allowed(&labelled("a", done.clone()), &labelled("b", done)),
            "{phase}"
        );
    }
}
