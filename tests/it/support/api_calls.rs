//! The operator's Kubernetes API calls as `tests/operator-api-calls.yaml` lists them, turned into
//! RBAC grants for one installation, and a parser from HTTP requests to API calls.
//!
//! `tests/packaging.rs` compares the grants with the RBAC every rendering contains. The end-to-end
//! suite can hold the requests it sees on the API double against the same list:
//!
//! ```ignore
//! #[path = "support/api_calls.rs"]
//! mod api_calls;
//! let calls = requests.iter().map(|(method, uri)| api_calls::ApiCall::from_request(method, uri));
//! let (refused, unused) = api_calls::compare(calls, &api_calls::Installation::default());
//! assert!(refused.is_empty(), "calls RBAC would refuse: {refused:?}");
//! ```
#![allow(dead_code)] // each test binary that includes this uses a part of it

use std::collections::BTreeSet;

use serde_json::Value;

/// Where the calls list says a permission is needed, resolved for one installation.
#[derive(Clone, Debug)]
pub struct Installation {
    /// The operator's namespace.
    pub namespace: String,
    /// Watched namespaces; empty means all.
    pub watch_namespaces: Vec<String>,
    pub lease_name: String,
    pub media_api_secret: String,
    pub leader_election: bool,
}

impl Default for Installation {
    /// The binary's defaults (`mediajob-operator run` with no flags).
    fn default() -> Self {
        Self {
            namespace: "mediajob-system".into(),
            watch_namespaces: vec![],
            lease_name: "mediajob-operator".into(),
            media_api_secret: "mediajob-operator-dolbyio".into(),
            leader_election: true,
        }
    }
}

/// One permission: where it applies ("*" = every namespace and cluster scope, as a
/// ClusterRoleBinding grants), API group, resource (with subresource), verb, and the object name
/// when the rule is restricted to names.
pub type Grant = (String, String, String, String, Option<String>);

/// The grants the calls list requires for `installation`.
pub fn expected_grants(installation: &Installation) -> BTreeSet<Grant> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/operator-api-calls.yaml"
    ))
    .expect("tests/operator-api-calls.yaml");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("valid YAML");
    let calls = docs.into_iter().find(|d| !d.is_null()).expect("a list");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let mut grants = BTreeSet::new();
    for call in calls.as_array().expect("a list of calls") {
        if call["when"] == "leaderElection" && !installation.leader_election {
            continue;
        }
        let places: Vec<String> = match call["scope"].as_str().unwrap() {
            "watched" if installation.watch_namespaces.is_empty() => vec!["*".into()],
            "watched" => installation.watch_namespaces.clone(),
            "own" => vec![installation.namespace.clone()],
            "cluster" => vec!["*".into()],
            other => panic!("unknown scope {other}"),
        };
        let names: Vec<Option<String>> = match call.get("names") {
            None => vec![None],
            Some(names) => strings(names)
                .into_iter()
                .map(|n| {
                    Some(match n.as_str() {
                        "$lease" => installation.lease_name.clone(),
                        "$mediaApiSecret" => installation.media_api_secret.clone(),
                        _ => n,
                    })
                })
                .collect(),
        };
        for place in &places {
            for verb in strings(&call["verbs"]) {
                for name in &names {
                    grants.insert((
                        place.clone(),
                        call["group"].as_str().unwrap().to_string(),
                        call["resource"].as_str().unwrap().to_string(),
                        verb.clone(),
                        name.clone(),
                    ));
                }
            }
        }
    }
    grants
}

/// One request to the API server, as RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiCall {
    pub verb: String,
    pub group: String,
    /// `mediajobs`, or `mediajobs/status` for a subresource.
    pub resource: String,
    /// None for cluster-scoped resources and requests across all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl ApiCall {
    /// Parses a request such as `PATCH /apis/mediajob.io/v1alpha1/namespaces/a/mediajobs/j/status`
    /// or `GET /api/v1/secrets?watch=true` the way the API server's RBAC authorizer does.
    pub fn from_request(method: &str, uri: &str) -> ApiCall {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] => (String::new(), rest),
            ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
            _ => panic!("not a resource request: {uri}"),
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            rest => (None, rest),
        };
        let (resource, name, subresource) = match rest {
            [resource] => (*resource, None, None),
            [resource, name] => (*resource, Some(name.to_string()), None),
            [resource, name, sub] => (*resource, Some(name.to_string()), Some(*sub)),
            _ => panic!("not a resource request: {uri}"),
        };
        let watch = query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1");
        let verb = match (method, &name) {
            ("GET", _) if watch => "watch",
            ("GET", None) => "list",
            ("GET", Some(_)) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", None) => "deletecollection",
            ("DELETE", Some(_)) => "delete",
            _ => panic!("unexpected method {method}"),
        };
        let resource = match subresource {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        };
        ApiCall {
            verb: verb.into(),
            group,
            resource,
            namespace,
            name,
        }
    }

    /// Whether one of `grants` allows this call.
    pub fn allowed_by(&self, grants: &BTreeSet<Grant>) -> bool {
        grants.iter().any(|(place, group, resource, verb, name)| {
            (place == "*" || Some(place) == self.namespace.as_ref())
                && *group == self.group
                && *resource == self.resource
                && *verb == self.verb
                && (name.is_none() || *name == self.name)
        })
    }
}

/// Calls the RBAC for `installation` would refuse, and grants no call used.
pub fn compare(
    calls: impl IntoIterator<Item = ApiCall>,
    installation: &Installation,
) -> (Vec<ApiCall>, Vec<Grant>) {
    let grants = expected_grants(installation);
    let calls: BTreeSet<ApiCall> = calls.into_iter().collect();
    let refused = calls
        .iter()
        .filter(|c| !c.allowed_by(&grants))
        .cloned()
        .collect();
    let unused = grants
        .iter()
        .filter(|g| {
            let one: BTreeSet<Grant> = [(*g).clone()].into();
            !calls.iter().any(|c| c.allowed_by(&one))
        })
        .cloned()
        .collect();
    (refused, unused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, uri: &str) -> ApiCall {
        ApiCall::from_request(method, uri)
    }

    #[test]
    fn requests_parse_like_the_rbac_authorizer_sees_them() {
        let c = call(
            "PATCH",
            "/apis/mediajob.io/v1alpha1/namespaces/a/mediajobs/j/status?fieldManager=x",
        );
        assert_eq!(
            (c.verb.as_str(), c.group.as_str(), c.resource.as_str()),
            ("patch", "mediajob.io", "mediajobs/status")
        );
        assert_eq!(c.namespace.as_deref(), Some("a"));
        assert_eq!(c.name.as_deref(), Some("j"));
        let c = call("GET", "/api/v1/secrets?watch=true&resourceVersion=5");
        assert_eq!((c.verb.as_str(), c.group.as_str()), ("watch", ""));
        assert_eq!(c.namespace, None);
        assert_eq!(call("GET", "/api/v1/namespaces/a/secrets").verb, "list");
        let c = call(
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/mediajobs.mediajob.io",
        );
        assert_eq!((c.verb.as_str(), c.namespace), ("get", None));
        // A namespace object itself is not a namespaced request.
        assert_eq!(call("GET", "/api/v1/namespaces/a").resource, "namespaces");
    }

    #[test]
    fn grants_allow_exactly_the_listed_calls() {
        let scoped = Installation {
            watch_namespaces: vec!["podcasts".into()],
            ..Installation::default()
        };
        let grants = expected_grants(&scoped);
        let allowed = |m, u| call(m, u).allowed_by(&grants);
        assert!(allowed(
            "PATCH",
            "/apis/mediajob.io/v1alpha1/namespaces/podcasts/mediajobs/j"
        ));
        assert!(!allowed(
            "PATCH",
            "/apis/mediajob.io/v1alpha1/namespaces/other/mediajobs/j"
        ));
        assert!(!allowed(
            "PUT",
            "/apis/mediajob.io/v1alpha1/namespaces/podcasts/mediajobs/j"
        ));
        assert!(allowed(
            "GET",
            "/api/v1/namespaces/mediajob-system/secrets/mediajob-operator-dolbyio"
        ));
        assert!(!allowed(
            "GET",
            "/api/v1/namespaces/mediajob-system/secrets/someone-elses"
        ));
        assert!(allowed(
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/mediajob-system/leases"
        ));
        assert!(!allowed(
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/other.example.com"
        ));
        let (refused, unused) = compare(
            [call("GET", "/api/v1/namespaces/podcasts/secrets/s3")],
            &scoped,
        );
        assert!(refused.is_empty());
        assert!(unused.len() > 5, "most grants are unused by one call");
    }
}
