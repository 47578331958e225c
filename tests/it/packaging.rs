//! The ways the operator is installed stay true to the operator itself:
//! - the chart's CRD template and `deploy/crds/` are `crds/` (the generated CRD), the chart's copy
//!   only adding Helm's keep annotation;
//! - RBAC grants exactly the API calls in `tests/operator-api-calls.yaml`, in the namespaces the
//!   Deployment tells the operator to watch;
//! - the pod is hardened, probes the admin endpoints, and sets every operator flag through an
//!   environment variable the binary reads, with values the binary's own parsers accept;
//! - the kustomize base lists every manifest in `deploy/`.
//!
//! `deploy/` is checked always. The Helm chart's renderings are checked when
//! `MEDIAJOB_CHART_RENDER_DIR` names a directory of `chart-*.yaml` files (`.ci/chart-checks`
//! renders every `charts/*/ci` scenario there with the real Helm and sets it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{Args, Command, FromArgMatches};
use mediajob_operator::config::OperatorArgs;
use serde_json::Value;

use crate::support::api_calls;
use api_calls::{Grant, Installation, expected_grants};

use mediajob_operator::crd::CRD_FILES;

fn crd_path(file: &str) -> String {
    format!("crds/{file}")
}
fn chart_crd_path(file: &str) -> String {
    format!("charts/mediajob-operator/templates/crds/{file}")
}
fn deploy_crd_path(file: &str) -> String {
    format!("deploy/crds/{file}")
}
/// Read by the binary outside clap (tracing's filter and the log format).
const LOGGING_ENV: [&str; 2] = ["RUST_LOG", "MEDIAJOB_LOG_FORMAT"];
/// Flags the chart sets only when a value turns them on (the binary's default is right otherwise).
const CONDITIONAL_ENV: [&str; 6] = [
    "MEDIAJOB_WATCH_NAMESPACES",
    "MEDIAJOB_SELECTOR",
    "MEDIAJOB_AMBIENT_AWS_NAMESPACES",
    "MEDIAJOB_CALLBACK_URL",
    "MEDIAJOB_CALLBACK_LISTEN",
    "MEDIAJOB_CALLBACK_KEY",
];
/// Flags whose value is a credential: from a Secret, never a literal in the manifest.
const SECRET_ENV: [&str; 1] = ["MEDIAJOB_CALLBACK_KEY"];

fn parse_docs(text: &str, what: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn read_docs(path: impl AsRef<Path>) -> Vec<Value> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_docs(&text, &path.display().to_string())
}

fn single(docs: Vec<Value>, what: &str) -> Value {
    assert_eq!(docs.len(), 1, "{what}: expected one document");
    docs.into_iter().next().unwrap()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn the<'a>(docs: &'a [Value], kind: &str, what: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "{what}: expected exactly one {kind}");
    found[0]
}

fn str_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// CRD copies

/// Each of the chart's CRD templates is crds/ inside the `crds.install` guard, plus the keep
/// annotation.
#[test]
fn chart_crd_templates_are_the_generated_crds_kept_on_uninstall() {
    for file in CRD_FILES {
        chart_crd_template_is_the_generated_crd_kept_on_uninstall(
            &crd_path(file),
            &chart_crd_path(file),
        );
    }
}

fn chart_crd_template_is_the_generated_crd_kept_on_uninstall(crd: &str, chart_crd: &str) {
    let template = std::fs::read_to_string(chart_crd).unwrap();
    let lines: Vec<&str> = template.lines().collect();
    assert_eq!(lines.first(), Some(&"{{- if .Values.crds.install }}"));
    assert_eq!(lines.last(), Some(&"{{- end }}"));
    let body: Vec<&str> = lines[1..lines.len() - 1].to_vec();
    assert!(
        body.iter().all(|l| !l.contains("{{")),
        "only the guard may be a template directive"
    );
    let mut chart = single(parse_docs(&body.join("\n"), chart_crd), chart_crd);
    let annotations = chart["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    assert_eq!(
        annotations,
        Some(serde_json::json!({"helm.sh/resource-policy": "keep"})),
        "the chart's CRD must survive helm uninstall"
    );
    let generated = single(read_docs(crd), crd);
    assert!(
        chart == generated,
        "{chart_crd} differs from {crd}: run deploy/render.sh"
    );
}

#[test]
fn deploy_crds_are_copies_of_the_generated_crds() {
    for file in CRD_FILES {
        let (crd, deploy) = (crd_path(file), deploy_crd_path(file));
        assert!(
            std::fs::read(&deploy).unwrap() == std::fs::read(&crd).unwrap(),
            "{deploy} differs from {crd}: run deploy/render.sh"
        );
    }
}

/// Every alert links a runbook entry that exists in docs/observability.md.
#[test]
fn every_alert_links_its_runbook_entry() {
    let rules =
        std::fs::read_to_string("charts/mediajob-operator/templates/prometheusrule.yaml").unwrap();
    let docs = std::fs::read_to_string("docs/observability.md").unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    for alert in alerts {
        let anchor = format!("runbook-{}", alert.to_lowercase());
        assert!(
            rules.contains(&format!("runbook_url: {{{{ $rule.runbookUrl }}}}#{anchor}")),
            "{alert} has no runbook_url"
        );
        assert!(
            docs.contains(&format!("<a id=\"{anchor}\"></a>`{alert}`")),
            "docs/observability.md has no runbook entry for {alert}"
        );
    }
}

/// The chart's admission policy holds the operator's expression and message, to the letter.
#[test]
fn the_chart_admission_policy_is_the_operators_rule() {
    use mediajob_operator::crd::admission_policy::{
        LABELS_LOCKED_IN_FLIGHT, LABELS_LOCKED_MESSAGE,
    };
    let template =
        std::fs::read_to_string("charts/mediajob-operator/templates/admission-policy.yaml")
            .unwrap();
    let quoted = |text: &str| format!("\"{text}\"");
    assert!(
        template.contains(&format!(
            "- expression: {}",
            quoted(LABELS_LOCKED_IN_FLIGHT)
        )),
        "the chart's ValidatingAdmissionPolicy differs from crd::admission_policy"
    );
    assert!(template.contains(&format!("message: {}", quoted(LABELS_LOCKED_MESSAGE))));
}

// ---------------------------------------------------------------------------------------------
// deploy/

fn deploy_resources() -> Vec<String> {
    let kustomization = single(read_docs("deploy/kustomization.yaml"), "kustomization");
    assert_eq!(kustomization["kind"], "Kustomization");
    str_list(&kustomization["resources"])
}

fn deploy_docs() -> Vec<Value> {
    deploy_resources()
        .iter()
        .flat_map(|r| read_docs(Path::new("deploy").join(r)))
        .collect()
}

fn yaml_files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files_under(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            found.push(path);
        }
    }
}

#[test]
fn kustomization_lists_every_manifest_in_deploy() {
    let mut files = vec![];
    yaml_files_under(Path::new("deploy"), &mut files);
    let not_resources = [
        "kustomization.yaml",
        "helm-values.yaml",
        "media-api-secret.example.yaml",
    ];
    let on_disk: BTreeSet<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix("deploy")
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|p| !not_resources.contains(&p.as_str()))
        // Argo CD's health checks (a ConfigMap entry, see docs/install.md) and their tests.
        .filter(|p| !p.starts_with("argocd/"))
        .collect();
    let listed: BTreeSet<String> = deploy_resources().into_iter().collect();
    assert_eq!(listed, on_disk);
}

#[test]
fn deploy_installs_namespace_crd_rbac_and_operator_but_no_secret() {
    let docs = deploy_docs();
    let kinds: BTreeSet<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.contains(kind), "deploy/ has no {kind}");
    }
    assert!(
        !kinds.contains("Secret"),
        "credentials are the user's to create"
    );
    let namespace = the(&docs, "Namespace", "deploy/")["metadata"]["name"].clone();
    for doc in &docs {
        let ns = &doc["metadata"]["namespace"];
        assert!(
            ns.is_null() || *ns == namespace,
            "{} is outside the operator's namespace",
            doc["metadata"]["name"]
        );
    }
    // The namespace enforces the restricted Pod Security Standard, which the pod must meet.
    let labels = &the(&docs, "Namespace", "deploy/")["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    check_installation(&docs, "deploy/");
}

// ---------------------------------------------------------------------------------------------
// Helm renderings

#[test]
fn every_rendered_chart_scenario_is_sound() {
    let Some(dir) = std::env::var_os("MEDIAJOB_CHART_RENDER_DIR") else {
        eprintln!(
            "MEDIAJOB_CHART_RENDER_DIR unset: chart renderings are checked by .ci/chart-checks"
        );
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("chart-")
        })
        .collect();
    files.sort();
    let scenarios = std::fs::read_dir("charts/mediajob-operator/ci")
        .unwrap()
        .count();
    assert_eq!(files.len(), scenarios, "one rendering per ci/ scenario");
    let mut namespaced = 0;
    let mut selecting = 0;
    for file in &files {
        let what = file.display().to_string();
        let docs = read_docs(file);
        let settings = check_installation(&docs, &what);
        namespaced += usize::from(!settings.watch_namespaces.is_empty());
        if let Some(selector) = &settings.args.selector {
            selecting += 1;
            // A release that selects must have a Lease of its own (the binary refuses the default).
            assert_ne!(
                settings.args.lease_name, "mediajob-operator",
                "{what}: {selector}"
            );
        }
        let rendered = of_kind(&docs, "CustomResourceDefinition");
        if !rendered.is_empty() {
            assert_eq!(rendered.len(), CRD_FILES.len(), "{what}: every CRD or none");
        }
        for crd in rendered {
            let mut crd = crd.clone();
            crd["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("annotations");
            let generated = CRD_FILES
                .iter()
                .map(|f| single(read_docs(crd_path(f)), f))
                .find(|g| g["metadata"]["name"] == crd["metadata"]["name"]);
            assert!(
                Some(&crd) == generated.as_ref(),
                "{what}: CRD {} differs",
                crd["metadata"]["name"]
            );
        }
    }
    assert!(namespaced > 0, "no scenario watches listed namespaces");
    assert!(selecting > 0, "no scenario selects MediaJobs by label");
}

// ---------------------------------------------------------------------------------------------
// What every installation must get right

/// The operator's settings as the Deployment passes them, parsed by the binary's own flags.
struct Settings {
    namespace: String,
    service_account: String,
    watch_namespaces: Vec<String>,
    args: OperatorArgs,
    /// The Secret the callback key comes from, when callbacks are on.
    callback_key_secret: Option<String>,
}

fn operator_flags() -> Command {
    OperatorArgs::augment_args(Command::new("run").no_binary_name(true))
}

/// Every env var the Deployment sets is one the binary reads, every flag is set (or deliberately
/// left to its default), and the binary accepts the values.
fn check_env(deployment: &Value, what: &str) -> Settings {
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let namespace = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let mut env: BTreeMap<String, Value> = BTreeMap::new();
    for var in container["env"].as_array().expect("env") {
        let name = var["name"].as_str().unwrap().to_string();
        assert!(
            env.insert(name.clone(), var.clone()).is_none(),
            "{what}: {name} twice"
        );
    }
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace",
        "{what}: POD_NAMESPACE must come from the downward API"
    );

    let flags = operator_flags();
    let by_env: BTreeMap<String, String> = flags
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            Some((env, a.get_long().expect("a long flag").to_string()))
        })
        .collect();
    for name in env.keys() {
        assert!(
            by_env.contains_key(name) || LOGGING_ENV.contains(&name.as_str()),
            "{what}: the binary does not read {name}"
        );
    }
    for name in by_env.keys().map(String::as_str).chain(LOGGING_ENV) {
        assert!(
            env.contains_key(name) || CONDITIONAL_ENV.contains(&name),
            "{what}: the Deployment does not set {name}"
        );
    }
    assert!(
        ["json", "text"].contains(&env["MEDIAJOB_LOG_FORMAT"]["value"].as_str().unwrap()),
        "{what}: log format"
    );

    // Pass the same settings as flags: the binary's parsers (durations, numbers, addresses) decide.
    let mut argv = vec![];
    let mut callback_key_secret = None;
    for (name, var) in &env {
        let Some(long) = by_env.get(name) else {
            continue;
        };
        let value = if name == "POD_NAMESPACE" {
            namespace.clone()
        } else if name == "POD_NAME" {
            assert_eq!(
                var["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
                "{what}: POD_NAME must come from the downward API"
            );
            "mediajob-operator-0".to_string()
        } else if SECRET_ENV.contains(&name.as_str()) {
            let reference = &var["valueFrom"]["secretKeyRef"];
            assert_eq!(
                reference["key"], "key",
                "{what}: {name} comes from a Secret"
            );
            callback_key_secret = Some(reference["name"].as_str().unwrap().to_string());
            "a-key-of-the-length-the-binary-wants-0123456789".to_string()
        } else {
            var["value"].as_str().expect("a literal value").to_string()
        };
        argv.push(format!("--{long}={value}"));
    }
    let matches = flags
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| panic!("{what}: the binary refuses {argv:?}: {e}"));
    let args = OperatorArgs::from_arg_matches(&matches).unwrap();
    Settings {
        namespace,
        service_account: pod["serviceAccountName"].as_str().unwrap().to_string(),
        watch_namespaces: args.watch_namespaces.clone(),
        args,
        callback_key_secret,
    }
}

fn check_installation(docs: &[Value], what: &str) -> Settings {
    let deployment = the(docs, "Deployment", what);
    let settings = check_env(deployment, what);
    check_pod(deployment, &settings, what);
    check_rbac(docs, &settings, what);
    check_wiring(docs, deployment, &settings, what);
    settings
}

fn check_pod(deployment: &Value, settings: &Settings, what: &str) {
    let pod = &deployment["spec"]["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{what}");
    assert_eq!(psc["runAsUser"], 65532, "{what}");
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(pod[host].is_null() || pod[host] == false, "{what}: {host}");
    }
    assert!(
        pod["volumes"].is_null(),
        "{what}: the operator needs no volumes"
    );
    assert_eq!(pod["automountServiceAccountToken"], true, "{what}");
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{what}: one container");
    let c = &containers[0];
    assert_eq!(c["args"], serde_json::json!(["run"]), "{what}");
    assert!(
        !c["image"].as_str().unwrap().ends_with(":latest"),
        "{what}: pinned image"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(sc["runAsNonRoot"], true, "{what}");
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{what}"
    );
    assert!(sc["capabilities"]["add"].is_null(), "{what}");
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !c["resources"][kind][resource].is_null(),
                "{what}: {kind}.{resource}"
            );
        }
    }
    let port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap_or_else(|| panic!("{what}: no admin port"));
    assert_eq!(
        port["containerPort"],
        settings.args.admin_addr.port(),
        "{what}: the admin port is where the binary listens"
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{what}: {probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{what}: {probe}");
    }
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap();
    assert!(
        replicas <= 1 || settings.args.leader_election,
        "{what}: several replicas without a leader Lease"
    );
}

// ---------------------------------------------------------------------------------------------
// RBAC: rendered grants against the list of API calls

fn rule_grants(rules: &Value, place: &str, grants: &mut BTreeSet<Grant>, what: &str) {
    for rule in rules.as_array().unwrap() {
        assert!(rule["nonResourceURLs"].is_null(), "{what}: nonResourceURLs");
        let names = str_list(&rule["resourceNames"]);
        let names: Vec<Option<String>> = if names.is_empty() {
            vec![None]
        } else {
            names.into_iter().map(Some).collect()
        };
        for group in str_list(&rule["apiGroups"]) {
            for resource in str_list(&rule["resources"]) {
                for verb in str_list(&rule["verbs"]) {
                    for name in &names {
                        grants.insert((
                            place.to_string(),
                            group.clone(),
                            resource.clone(),
                            verb.clone(),
                            name.clone(),
                        ));
                    }
                }
            }
        }
    }
}

fn granted(docs: &[Value], settings: &Settings, what: &str) -> BTreeSet<Grant> {
    let find_role = |kind: &str, name: &str, namespace: Option<&str>| -> Value {
        docs.iter()
            .find(|d| {
                d["kind"] == kind
                    && d["metadata"]["name"] == name
                    && namespace.is_none_or(|ns| d["metadata"]["namespace"] == ns)
            })
            .unwrap_or_else(|| panic!("{what}: binding to missing {kind} {name}"))
            .clone()
    };
    let mut grants = BTreeSet::new();
    for binding in docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
    {
        let subjects = binding["subjects"].as_array().unwrap();
        let ours = serde_json::json!({
            "kind": "ServiceAccount",
            "name": settings.service_account,
            "namespace": settings.namespace,
        });
        assert!(
            subjects.len() == 1 && subjects[0] == ours,
            "{what}: {} binds someone else",
            binding["metadata"]["name"]
        );
        let role_ref = &binding["roleRef"];
        let kind = role_ref["kind"].as_str().unwrap();
        let name = role_ref["name"].as_str().unwrap();
        if binding["kind"] == "ClusterRoleBinding" {
            assert_eq!(kind, "ClusterRole", "{what}");
            rule_grants(
                &find_role(kind, name, None)["rules"],
                "*",
                &mut grants,
                what,
            );
        } else {
            let ns = binding["metadata"]["namespace"].as_str().unwrap();
            let role = match kind {
                "Role" => find_role(kind, name, Some(ns)),
                _ => find_role(kind, name, None),
            };
            rule_grants(&role["rules"], ns, &mut grants, what);
        }
    }
    grants
}

fn check_rbac(docs: &[Value], settings: &Settings, what: &str) {
    let granted = granted(docs, settings, what);
    let expected = expected_grants(&Installation {
        namespace: settings.namespace.clone(),
        watch_namespaces: settings.watch_namespaces.clone(),
        lease_name: settings.args.lease_name.clone(),
        media_api_secret: settings.args.media_api_secret.clone(),
        leader_election: settings.args.leader_election,
    });
    let extra: Vec<_> = granted.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what}: RBAC differs from tests/operator-api-calls.yaml\n  granted but never used: {extra:?}\n  used but not granted: {missing:?}"
    );
    for role in of_kind(docs, "Role")
        .into_iter()
        .chain(of_kind(docs, "ClusterRole"))
    {
        let name = &role["metadata"]["name"];
        let bound = docs.iter().any(|b| {
            (b["kind"] == "RoleBinding" || b["kind"] == "ClusterRoleBinding")
                && b["roleRef"]["kind"] == role["kind"]
                && b["roleRef"]["name"] == *name
        });
        assert!(bound, "{what}: {name} is bound by nothing");
    }
}

// ---------------------------------------------------------------------------------------------
// Service, ServiceMonitor, PDB, NetworkPolicy, Secret, ServiceAccount point at the right things

fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("matchLabels");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels[k] == *v)
}

fn check_wiring(docs: &[Value], deployment: &Value, settings: &Settings, what: &str) {
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(
        selects(&deployment["spec"]["selector"]["matchLabels"], pod_labels),
        "{what}"
    );
    let services = of_kind(docs, "Service");
    let metrics: Vec<_> = services
        .iter()
        .filter(|s| {
            s["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-metrics"))
        })
        .collect();
    assert_eq!(
        metrics.len(),
        1,
        "{what}: expected exactly one metrics Service"
    );
    let service = metrics[0];
    assert!(
        selects(&service["spec"]["selector"], pod_labels),
        "{what}: Service"
    );
    // The optional callback Service reaches the callback port of the same pods.
    for other in services.iter().filter(|s| !std::ptr::eq(**s, *service)) {
        assert!(
            selects(&other["spec"]["selector"], pod_labels),
            "{what}: callback Service"
        );
        assert_eq!(
            other["spec"]["ports"][0]["targetPort"], "callback",
            "{what}"
        );
    }
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["targetPort"], "admin", "{what}");
    for monitor in of_kind(docs, "ServiceMonitor") {
        assert!(
            selects(
                &monitor["spec"]["selector"]["matchLabels"],
                &service["metadata"]["labels"]
            ),
            "{what}: ServiceMonitor does not select the metrics Service"
        );
        let endpoint = &monitor["spec"]["endpoints"][0];
        assert_eq!(endpoint["port"], service_port["name"], "{what}");
        assert_eq!(endpoint["path"], "/metrics", "{what}");
    }
    for pdb in of_kind(docs, "PodDisruptionBudget") {
        assert!(
            selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels),
            "{what}: PDB"
        );
    }
    for policy in of_kind(docs, "NetworkPolicy") {
        assert!(
            selects(&policy["spec"]["podSelector"]["matchLabels"], pod_labels),
            "{what}: NetworkPolicy"
        );
        assert_eq!(
            policy["spec"]["ingress"][0]["ports"][0]["port"], "admin",
            "{what}"
        );
        let egress_ports: BTreeSet<i64> = policy["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rule| rule["ports"].as_array().unwrap().clone())
            .map(|p| p["port"].as_i64().unwrap())
            .collect();
        for port in [53, 443] {
            assert!(egress_ports.contains(&port), "{what}: egress to {port}");
        }
    }
    assert_eq!(
        settings.callback_key_secret.is_some(),
        settings.args.callback_url.is_some(),
        "{what}: callbacks on, and only then, with a key"
    );
    for secret in of_kind(docs, "Secret") {
        let name = secret["metadata"]["name"].as_str();
        if name.is_some() && name == settings.callback_key_secret.as_deref() {
            let key = secret["data"]["key"].as_str().expect("a key");
            let key =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key).unwrap();
            assert!(
                key.len() >= 32,
                "{what}: a callback key of {} bytes",
                key.len()
            );
            continue;
        }
        assert_eq!(
            secret["metadata"]["name"], settings.args.media_api_secret,
            "{what}: the chart's Secret is the one the operator reads"
        );
        let keys: BTreeSet<&String> = secret["data"].as_object().unwrap().keys().collect();
        let want = ["DOLBYIO_APP_KEY".to_string(), "DOLBYIO_APP_SECRET".into()];
        assert_eq!(keys, want.iter().collect(), "{what}");
    }
    for account in of_kind(docs, "ServiceAccount") {
        assert_eq!(
            account["metadata"]["name"],
            settings.service_account.as_str()
        );
        assert_eq!(
            account["automountServiceAccountToken"], false,
            "{what}: only the operator pod mounts a token"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The chart's README documents every value

fn leaf_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaf_paths(child, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn chart_readme_documents_every_value() {
    let values = single(
        read_docs("charts/mediajob-operator/values.yaml"),
        "values.yaml",
    );
    let mut leaves = vec![];
    leaf_paths(&values, "", &mut leaves);
    let readme = std::fs::read_to_string("charts/mediajob-operator/README.md").unwrap();
    // The first cell of each table row holds one or more `value.path`s.
    let documented: Vec<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .flat_map(|l| {
            let cell = l.split(" |").next().unwrap();
            cell.split(['`', ',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(documented.len() > 20, "no values table found");
    for leaf in &leaves {
        assert!(
            documented
                .iter()
                .any(|d| leaf == d || leaf.starts_with(&format!("{d}."))),
            "charts/mediajob-operator/README.md does not document `{leaf}`"
        );
    }
    for row in &documented {
        assert!(
            leaves
                .iter()
                .any(|l| l == row || l.starts_with(&format!("{row}."))),
            "the README documents `{row}`, which values.yaml does not have"
        );
    }
}

/// The end-to-end suite's `Installation::default()` is what the binary does without flags.
#[test]
fn api_calls_default_installation_is_the_binarys_default() {
    let matches = operator_flags().try_get_matches_from(Vec::<String>::new());
    let args = OperatorArgs::from_arg_matches(&matches.unwrap()).unwrap();
    let default = Installation::default();
    assert_eq!(default.namespace, args.namespace);
    assert_eq!(default.watch_namespaces, args.watch_namespaces);
    assert_eq!(default.lease_name, args.lease_name);
    assert_eq!(default.media_api_secret, args.media_api_secret);
    assert_eq!(default.leader_election, args.leader_election);
}

// ---------------------------------------------------------------------------------------------
// Versions and the image agree with the crate

#[test]
fn chart_and_image_versions_follow_the_crate() {
    let chart = single(
        read_docs("charts/mediajob-operator/Chart.yaml"),
        "Chart.yaml",
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
    let docs = deploy_docs();
    let image =
        the(&docs, "Deployment", "deploy/")["spec"]["template"]["spec"]["containers"][0]["image"]
            .clone();
    assert_eq!(
        image,
        format!("mediajob-operator:{version}"),
        "deploy/ image"
    );
}

#[test]
fn dockerfile_builds_the_binary_the_manifests_run() {
    let dockerfile = std::fs::read_to_string("Dockerfile").unwrap();
    let rust = env!("CARGO_PKG_RUST_VERSION");
    assert!(
        dockerfile.contains(&format!("rust:{rust}-bookworm AS build")),
        "the builder image is the crate's rust-version ({rust})"
    );
    for line in [
        // Only the product package: no emulator, API double or S3 server in the image.
        "cargo build --release --locked -p mediajob-operator --bin mediajob-operator",
        "FROM gcr.io/distroless/cc-debian12:nonroot",
        // The user the chart's securityContext and the restricted Pod Security Standard expect.
        "USER 65532:65532",
        "ENTRYPOINT [\"/mediajob-operator\"]",
        "CMD [\"run\"]",
    ] {
        assert!(dockerfile.contains(line), "Dockerfile lacks {line}");
    }
}
