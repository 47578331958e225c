//! Which Kubernetes the tests talk to: the in-process API server double, or the real cluster
//! named by `MEDIAJOB_E2E_KUBECONFIG`. Every test gets its own namespace.
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_apiserver_double::{ApiServerDouble, Faults, RequestLog, RunningApiServer};

pub const KUBECONFIG_ENV: &str = "MEDIAJOB_E2E_KUBECONFIG";

/// A Kubernetes API to test against, with a fresh namespace.
pub struct TestCluster {
    pub client: kube::Client,
    pub namespace: String,
    /// Present only for the double: fault injection and the request log.
    pub double: Option<RunningApiServer>,
}

impl TestCluster {
    pub fn faults(&self) -> Option<Faults> {
        self.double.as_ref().map(RunningApiServer::faults)
    }

    pub fn requests(&self) -> Option<RequestLog> {
        self.double.as_ref().map(RunningApiServer::requests)
    }

    /// Delete the test namespace (a real cluster) or stop the double.
    pub async fn cleanup(self) {
        match self.double {
            Some(d) => d.shutdown().await,
            None => {
                let nss: Api<Namespace> = Api::all(self.client);
                let _ = nss.delete(&self.namespace, &DeleteParams::default()).await;
            }
        }
    }
}

/// The operator's CRDs: MediaJob, MediaJobSet and MediaApiAccountClaim.
pub fn operator_crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![
        mediajob_operator::crd::MediaJob::crd(),
        mediajob_operator::crd::MediaJobSet::crd(),
        mediajob_operator::crd::MediaApiAccountClaim::crd(),
    ]
}

/// The one backend switch: a real cluster if `MEDIAJOB_E2E_KUBECONFIG` is set, else the double.
/// `crds` are installed (real cluster: applied and waited for) before the namespace is made.
pub async fn test_cluster(crds: Vec<CustomResourceDefinition>) -> TestCluster {
    test_cluster_with(crds, ApiServerDouble::default()).await
}

/// Like [`test_cluster`], with options for the double (ignored against a real cluster).
pub async fn test_cluster_with(
    crds: Vec<CustomResourceDefinition>,
    opts: ApiServerDouble,
) -> TestCluster {
    let (client, double) = match std::env::var(KUBECONFIG_ENV) {
        Ok(path) if !path.is_empty() => (real_client(&path, &crds).await, None),
        _ => {
            let d = opts.serve(crds).await.expect("start the API server double");
            (d.client(), Some(d))
        }
    };
    let namespace = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
            .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the test namespace");
    TestCluster {
        client,
        namespace,
        double,
    }
}

async fn real_client(path: &str, crds: &[CustomResourceDefinition]) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("read the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig to config");
    let client = kube::Client::try_from(config).expect("client");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().expect("CRD name");
        api.patch(
            &name,
            &PatchParams::apply("mediajob-e2e").force(),
            &Patch::Apply(crd),
        )
        .await
        .expect("install the CRD");
        for _ in 0..100 {
            let got = api.get(&name).await.expect("get CRD");
            let established = got.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    client
}

/// Skip a test that needs the double's fault handle when running against a real cluster.
#[macro_export]
macro_rules! double_only {
    ($cluster:expr) => {
        match $cluster.double.as_ref() {
            Some(d) => d,
            None => {
                eprintln!("skipped: needs the API server double's fault handle");
                return;
            }
        }
    };
}
