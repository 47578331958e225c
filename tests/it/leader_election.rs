//! `mediajob-operator run` as a Deployment runs it: replicas share one Lease, only the holder
//! reconciles, every replica is Ready, a terminated leader hands over within seconds, a killed one
//! is replaced when its Lease expires, and a leader that lost the Lease stops acting. Against the
//! API double (through a kubeconfig, as a pod would), the emulator and the embedded S3 store.

use std::time::{Duration, Instant};

use embedded_s3::EmbeddedS3;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube_apiserver_double::ApiServerDouble;
use media_api_emulator::{Emulator, EmulatorConfig, S3Settings};
use mediajob_operator::admin::Readiness;
use mediajob_operator::crd::{MediaApiAccountClaim, MediaJob, Phase};
use mediajob_operator::leader::{Leadership, LeaseSettings};
use mediajob_operator::metrics::Metrics;
use mediajob_operator::operator::{OperatorOptions, start};
use mediajob_operator::reconciler::context::{DefaultAccount, MediaApiSettings};
use mediajob_operator::reconciler::controller::Scope;
use mediajob_operator::secret::SecretString;
use serde_json::json;

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

async fn wait_succeeded(jobs: &Api<MediaJob>, name: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let job = jobs.get(name).await.unwrap();
        if job.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not succeed: {:?}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("mediajob-operator")
        .await
        .unwrap()?
        .spec?
        .holder_identity
}

/// The S3 store, the Media API emulator and the API server with the namespaces and Secrets the
/// replicas need.
struct World {
    s3: EmbeddedS3,
    emulator: media_api_emulator::RunningEmulator,
    double: kube_apiserver_double::RunningApiServer,
    client: kube::Client,
}

async fn world() -> World {
    let s3 = EmbeddedS3::start(None, "LEADERKEY", "leader-secret")
        .await
        .unwrap();
    s3.create_bucket("raw").unwrap();
    s3.create_bucket("out").unwrap();
    s3.put_object("raw", "in.wav", b"media").unwrap();
    let emulator = Emulator::start(EmulatorConfig {
        s3: S3Settings {
            endpoint: Some(s3.endpoint()),
            region: "us-east-1".into(),
            path_style: true,
        },
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let double = ApiServerDouble::start(crate::support::kube::operator_crds())
        .await
        .unwrap();
    let client = double.client();
    for ns in ["mediajob-system", "podcasts"] {
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"metadata": {"name": ns}}),
        )
        .await;
    }
    create(
        &Api::<Secret>::namespaced(client.clone(), "mediajob-system"),
        json!({"metadata": {"name": "dolbyio"},
               "stringData": {"DOLBYIO_APP_KEY": "emulator-app-key", "DOLBYIO_APP_SECRET": "emulator-app-secret"}}),
    )
    .await;
    create(
        &Api::<Secret>::namespaced(client.clone(), "podcasts"),
        json!({"metadata": {"name": "s3"},
               "stringData": {"AWS_ACCESS_KEY_ID": "LEADERKEY", "AWS_SECRET_ACCESS_KEY": "leader-secret"}}),
    )
    .await;

    World {
        s3,
        emulator,
        double,
        client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_the_other_takes_over() {
    let World {
        s3,
        emulator,
        double,
        client,
    } = world().await;
    // The replicas find the API server the way a pod finds its kubeconfig.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig_yaml()).unwrap();
    // Each replica is its own process, as in a Deployment: it finds the API server through its
    // kubeconfig and names itself in the Lease by POD_NAME.
    let replica = |name: &str, admin_port: u16| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mediajob-dev"))
            .args([
                "run",
                "--namespace",
                "mediajob-system",
                "--media-api-secret",
                "dolbyio",
                "--auth-url",
                &emulator.base_url(),
                "--media-url",
                &emulator.base_url(),
                "--admin-addr",
                &format!("127.0.0.1:{admin_port}"),
                "--poll-min",
                "200ms",
                "--leader-election",
                "true",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", name)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the operator binary starts")
    };
    let ports = [free_port(), free_port(), free_port()];
    let mut first = replica("replica-a", ports[0]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut second = replica("replica-b", ports[1]);

    let jobs: Api<MediaJob> = Api::namespaced(client.clone(), "podcasts");
    let job = |name: &str| {
        json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob", "metadata": {"name": name},
            "spec": {"operation": "enhance", "input": {"url": "s3://raw/in.wav"},
                     "output": {"url": format!("s3://out/{name}.wav")},
                     "credentials": {"secretRef": {"name": "s3"}}, "s3": {"endpoint": s3.endpoint()}},
        })
    };
    create(&jobs, job("before")).await;
    wait_succeeded(&jobs, "before", Duration::from_secs(30)).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "mediajob-system");
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("replica-a"),
        "the first replica leads"
    );
    assert!(second.try_wait().unwrap().is_none(), "the follower waits");
    // Ready means "can take over": a rolling update waits for the new pod's readiness while the
    // old pod still leads, so a follower must be Ready too.
    assert_eq!(readyz(ports[0]).await, 200, "the leader is ready");
    assert_eq!(readyz(ports[1]).await, 200, "the follower is ready");

    // SIGTERM (a rolling update, a drain): the leader stops, releases the Lease, and the follower
    // leads within its next look, not a Lease duration later.
    let terminated = Instant::now();
    terminate(&first);
    let exit = tokio::time::timeout(Duration::from_secs(20), first.wait())
        .await
        .expect("the leader exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "a terminated leader exits cleanly: {exit}");
    let handover = loop {
        if holder(&leases).await.as_deref() == Some("replica-b") {
            break terminated.elapsed();
        }
        assert!(
            terminated.elapsed() < Duration::from_secs(20),
            "no handover: {:?}",
            holder(&leases).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    create(&jobs, job("handover")).await;
    wait_succeeded(&jobs, "handover", Duration::from_secs(30)).await;
    let reconciling_again = terminated.elapsed();
    eprintln!(
        "handover after SIGTERM: Lease held by the follower after {:.2} s; a job created then succeeded {:.2} s after the SIGTERM",
        handover.as_secs_f64(),
        reconciling_again.as_secs_f64()
    );
    assert!(
        handover < Duration::from_secs(5),
        "handover took {handover:?}, about a Lease duration: the Lease was not released"
    );

    // The new leader dies without releasing the Lease (SIGKILL); a new follower takes over when
    // the record has not changed for a Lease duration.
    let mut third = replica("replica-c", ports[2]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    second.kill().await.unwrap();
    create(&jobs, job("after")).await;
    wait_succeeded(&jobs, "after", Duration::from_secs(60)).await;
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-c"));
    assert_eq!(emulator.job_count(), 3, "each job ran once");
    third.kill().await.unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn readyz(port: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
            Ok(r) if r.status() == 200 || Instant::now() > deadline => return r.status().as_u16(),
            Err(e) if Instant::now() > deadline => panic!("no admin endpoint on {port}: {e}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("the child runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A leader whose Lease another replica took (after a partition that outlasted it, say) must not
/// submit a job or write status, even though its process goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_lost_the_lease_submits_nothing() {
    let World {
        s3,
        emulator,
        double: _double,
        client,
    } = world().await;
    let mut leadership = Leadership::spawn(
        client.clone(),
        LeaseSettings::new("fenced", "mediajob-system", "replica-a"),
    );
    tokio::time::timeout(Duration::from_secs(10), leadership.acquired())
        .await
        .expect("the only replica leads");
    let media = MediaApiSettings {
        auth_url: emulator.base_url(),
        media_url: emulator.base_url(),
        requests_per_second: 0.0,
        default_account: DefaultAccount::Static {
            app_key: "emulator-app-key".into(),
            app_secret: SecretString::new("emulator-app-secret"),
        },
    };
    let options = OperatorOptions {
        fence: leadership.fence(),
        ..OperatorOptions::in_process(Scope::AllNamespaces, media)
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(start(
        client.clone(),
        options,
        Arc::new(Metrics::default()),
        Arc::new(Readiness::default()),
        async {
            let _ = stop_rx.await;
        },
    ));
    let jobs: Api<MediaJob> = Api::namespaced(client.clone(), "podcasts");
    let job = |name: &str| {
        json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob", "metadata": {"name": name},
            "spec": {"operation": "enhance", "input": {"url": "s3://raw/in.wav"},
                     "output": {"url": format!("s3://out/{name}.wav")},
                     "credentials": {"secretRef": {"name": "s3"}}, "s3": {"endpoint": s3.endpoint()}},
        })
    };
    create(&jobs, job("while-leading")).await;
    wait_succeeded(&jobs, "while-leading", Duration::from_secs(30)).await;

    // Another replica holds the Lease now.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "mediajob-system");
    let mut lease = leases.get("fenced").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("replica-b".into());
    spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
    leases
        .replace("fenced", &PostParams::default(), &lease)
        .await
        .unwrap();
    let mut leading = leadership.leading();
    tokio::time::timeout(
        Duration::from_secs(10),
        leading.wait_for(|leading| !*leading),
    )
    .await
    .expect("the replica notices at its next look")
    .unwrap();
    assert!(!leadership.fence().may_submit() && !leadership.fence().may_write());

    create(&jobs, job("after-losing")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        emulator.job_count(),
        1,
        "nothing submitted after the Lease was lost"
    );
    let after = jobs.get("after-losing").await.unwrap();
    assert!(
        after.status.is_none(),
        "no status written: {:?}",
        after.status
    );
    let spec = leases.get("fenced").await.unwrap().spec.unwrap();
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some("replica-b"),
        "the old leader does not take the Lease back while the new one holds it"
    );
    let _ = stop_tx.send(());
    let _ = operator.await;
}

/// Two releases with disjoint `--selector`s on one API server split the MediaJobs between them:
/// every job is handled once, by the release its labels name (its Events say so), and a MediaJob
/// no release selects is left untouched. Each release has its own Media API account (here, its own
/// emulator with its own app key), as exactly-once submission requires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_with_disjoint_selectors_split_the_jobs() {
    let World {
        s3,
        emulator,
        double,
        client,
    } = world().await;
    let second_account = second_account(&s3, &client).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig_yaml()).unwrap();
    let mut a = release(&kubeconfig, "a", &emulator.base_url(), "dolbyio");
    let mut b = release(&kubeconfig, "b", &second_account.base_url(), "dolbyio-b");
    let jobs: Api<MediaJob> = Api::namespaced(client.clone(), "podcasts");
    let teams = |i: usize| if i.is_multiple_of(2) { "a" } else { "b" };
    for i in 0..100 {
        create(&jobs, labelled_job(&s3, &format!("job-{i}"), teams(i))).await;
    }
    create(&jobs, labelled_job(&s3, "nobodys", "c")).await;
    for i in 0..100 {
        wait_succeeded(&jobs, &format!("job-{i}"), Duration::from_secs(120)).await;
    }
    assert_eq!(
        (emulator.job_count(), second_account.job_count()),
        (50, 50),
        "each job ran once, on its release's account"
    );

    // Each job was submitted on its own release's account (a healthy job publishes no Event):
    // one account fingerprint per team, and two different ones.
    let mut accounts: std::collections::BTreeMap<&str, std::collections::BTreeSet<String>> =
        Default::default();
    for i in 0..100 {
        let job = jobs.get(&format!("job-{i}")).await.unwrap();
        let account = job
            .status
            .and_then(|s| s.submission)
            .and_then(|s| s.account);
        accounts
            .entry(teams(i))
            .or_default()
            .insert(account.unwrap_or_default());
    }
    assert_eq!(accounts["a"].len(), 1, "{accounts:?}");
    assert_eq!(accounts["b"].len(), 1, "{accounts:?}");
    assert_ne!(
        accounts["a"], accounts["b"],
        "each release on its own account"
    );
    let untouched = jobs.get("nobodys").await.unwrap();
    assert!(untouched.status.is_none(), "{:?}", untouched.status);
    assert!(untouched.metadata.finalizers.is_none_or(|f| f.is_empty()));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "mediajob-system");
    for team in ["a", "b"] {
        let lease = leases.get(&format!("release-{team}")).await.unwrap();
        let holder = lease.spec.unwrap().holder_identity;
        assert_eq!(
            holder,
            Some(format!("release-{team}-0")),
            "each release leads its own Lease"
        );
    }
    a.kill().await.unwrap();
    b.kill().await.unwrap();
}

/// Two releases on one Media API account would break exactly-once submission (a search after a
/// lost answer could find the other release's job): the second one to submit finds the account
/// claimed, submits nothing, and says by whom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_release_on_the_same_account_waits_and_says_why() {
    let World {
        s3,
        emulator,
        double,
        client,
    } = world().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig_yaml()).unwrap();
    let mut a = release(&kubeconfig, "a", &emulator.base_url(), "dolbyio");
    let jobs: Api<MediaJob> = Api::namespaced(client.clone(), "podcasts");
    create(&jobs, labelled_job(&s3, "first", "a")).await;
    wait_succeeded(&jobs, "first", Duration::from_secs(30)).await;
    let mut b = release(&kubeconfig, "b", &emulator.base_url(), "dolbyio");
    create(&jobs, labelled_job(&s3, "second", "b")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let job = jobs.get("second").await.unwrap();
        let ready = job
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"));
        if let Some(ready) = ready.filter(|c| c.reason == "MediaApiAccountInUse") {
            break ready;
        }
        assert!(Instant::now() < deadline, "no MediaApiAccountInUse");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        ready.message.contains("release mediajob-system/release-a"),
        "{}",
        ready.message
    );
    assert_eq!(
        emulator.job_count(),
        1,
        "the second release submitted nothing"
    );
    a.kill().await.unwrap();
    b.kill().await.unwrap();
}

/// Per-team installs: two releases in two namespaces, on one Media API account. The claim is
/// cluster-wide, so the second one submits nothing, whichever namespace either is installed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_in_two_namespaces_on_one_account_never_both_submit() {
    let World {
        s3,
        emulator,
        double,
        client,
    } = world().await;
    for ns in ["team-a-ops", "team-b-ops"] {
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"metadata": {"name": ns}}),
        )
        .await;
        create(
            &Api::<Secret>::namespaced(client.clone(), ns),
            json!({"metadata": {"name": "dolbyio"},
                   "stringData": {"DOLBYIO_APP_KEY": "emulator-app-key", "DOLBYIO_APP_SECRET": "emulator-app-secret"}}),
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig_yaml()).unwrap();
    // The same release name in both namespaces, as two `helm install mediajob-operator -n ...`.
    let install = |namespace, team| ReleaseAs {
        namespace,
        name: "mediajob-operator-team",
        team,
        extra: &[],
    };
    let mut a = release_as(
        &kubeconfig,
        install("team-a-ops", "a"),
        &emulator.base_url(),
        "dolbyio",
    );
    let jobs: Api<MediaJob> = Api::namespaced(client.clone(), "podcasts");
    create(&jobs, labelled_job(&s3, "first", "a")).await;
    wait_succeeded(&jobs, "first", Duration::from_secs(30)).await;
    let mut b = release_as(
        &kubeconfig,
        install("team-b-ops", "b"),
        &emulator.base_url(),
        "dolbyio",
    );
    create(&jobs, labelled_job(&s3, "second", "b")).await;
    let ready = wait_for_reason(&jobs, "second", "MediaApiAccountInUse").await;
    assert!(
        ready
            .message
            .contains("release team-a-ops/mediajob-operator-team"),
        "{}",
        ready.message
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        emulator.job_count(),
        1,
        "the second release submitted nothing"
    );
    let claims: Api<MediaApiAccountClaim> = Api::all(client.clone());
    let all = claims.list(&Default::default()).await.unwrap().items;
    assert_eq!(all.len(), 1, "one claim for the one account");
    assert_eq!(all[0].spec.holder, "team-a-ops/mediajob-operator-team");
    a.kill().await.unwrap();
    b.kill().await.unwrap();
}

/// `helm uninstall` and `helm install` under a new name: the old release stops cleanly and
/// releases its claim, and the new one submits on the account within seconds. A release that
/// crashed is taken over once its claim has gone unrenewed for the claim duration, and the new
/// one submits only after the old one's requests could no longer create a job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_release_hands_its_account_over_in_seconds() {
    let World {
        s3,
        emulator,
        double,
        client,
    } = world().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig_yaml()).unwrap();
    // Short timings so the crash case fits in a test: a claim lasts 3 s; a request is in flight
    // at most 2 s and a job appears at most 1 s after its answer.
    let timings: &[&str] = &[
        "--account-claim-duration",
        "3s",
        "--media-api-timeout",
        "2s",
        "--late-job-window",
        "1s",
        "--clock-skew",
        "250ms",
    ];
    let named = |name| ReleaseAs {
        namespace: "mediajob-system",
        name,
        team: "a",
        extra: timings,
    };
    let jobs: Api<MediaJob> = Api::namespaced(client.clone(), "podcasts");
    let mut old = release_as(
        &kubeconfig,
        named("old-name"),
        &emulator.base_url(),
        "dolbyio",
    );
    create(&jobs, labelled_job(&s3, "before", "a")).await;
    wait_succeeded(&jobs, "before", Duration::from_secs(30)).await;

    // A clean stop (helm uninstall): the claim is released, and the new release takes it at once.
    terminate(&old);
    let exit = tokio::time::timeout(Duration::from_secs(20), old.wait())
        .await
        .expect("the release exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit}");
    let stopped = Instant::now();
    let claims: Api<MediaApiAccountClaim> = Api::all(client.clone());
    let claim = claims
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(claim.spec.holder, "", "released on a clean stop");
    assert!(claim.spec.quiet_until.is_some());
    let mut new = release_as(
        &kubeconfig,
        named("new-name"),
        &emulator.base_url(),
        "dolbyio",
    );
    create(&jobs, labelled_job(&s3, "after-stop", "a")).await;
    let submitted = wait_for_jobs(&emulator, 2).await;
    let handover = submitted.duration_since(stopped);
    wait_succeeded(&jobs, "after-stop", Duration::from_secs(30)).await;
    assert!(
        handover < Duration::from_secs(10),
        "the new release first submitted {handover:?} after the old one stopped"
    );
    let claim = claims
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(claim.spec.holder, "mediajob-system/new-name");
    assert_eq!(claim.spec.transitions, 1);

    // A crash (kill -9): nothing is released. The next release waits out the claim duration by
    // its own clock, then the old one's in-flight window (2 s + 1 s + 2 x 250 ms).
    new.kill().await.unwrap();
    let killed = Instant::now();
    let mut third = release_as(
        &kubeconfig,
        named("third-name"),
        &emulator.base_url(),
        "dolbyio",
    );
    create(&jobs, labelled_job(&s3, "after-crash", "a")).await;
    let submitted = wait_for_jobs(&emulator, 3).await;
    let takeover = submitted.duration_since(killed);
    wait_succeeded(&jobs, "after-crash", Duration::from_secs(30)).await;
    assert!(
        takeover >= Duration::from_millis(3000 + 3500),
        "submitted {takeover:?} after the crash: before the old claim expired and went quiet"
    );
    assert!(takeover < Duration::from_secs(20), "{takeover:?}");
    eprintln!(
        "account hand-over: clean stop -> first submission {:.2} s; crash -> first submission {:.2} s",
        handover.as_secs_f64(),
        takeover.as_secs_f64()
    );
    assert_eq!(emulator.job_count(), 3, "one remote job per MediaJob");
    third.kill().await.unwrap();
}

/// Waits until a MediaJob's Ready condition has `reason`; returns it.
async fn wait_for_reason(
    jobs: &Api<MediaJob>,
    name: &str,
    reason: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = jobs.get(name).await.unwrap();
        let ready = job
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"));
        if let Some(ready) = ready.filter(|c| c.reason == reason) {
            return ready;
        }
        assert!(Instant::now() < deadline, "{name}: no {reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the emulator holds `count` jobs; returns when it first saw them.
async fn wait_for_jobs(emulator: &media_api_emulator::RunningEmulator, count: usize) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    while emulator.job_count() < count {
        assert!(
            Instant::now() < deadline,
            "only {} remote jobs",
            emulator.job_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Instant::now()
}

/// A Media API account of its own: another emulator with another app key, on the same S3 store,
/// and its Secret in the operator's namespace (`dolbyio-b`).
async fn second_account(
    s3: &EmbeddedS3,
    client: &kube::Client,
) -> media_api_emulator::RunningEmulator {
    let emulator = Emulator::start(EmulatorConfig {
        app_key: "team-b-app-key".into(),
        s3: S3Settings {
            endpoint: Some(s3.endpoint()),
            region: "us-east-1".into(),
            path_style: true,
        },
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    create(
        &Api::<Secret>::namespaced(client.clone(), "mediajob-system"),
        json!({"metadata": {"name": "dolbyio-b"},
               "stringData": {"DOLBYIO_APP_KEY": "team-b-app-key", "DOLBYIO_APP_SECRET": "emulator-app-secret"}}),
    )
    .await;
    emulator
}

/// `run` for the MediaJobs labelled `team=<team>`, with its own Lease.
fn release(
    kubeconfig: &std::path::Path,
    team: &str,
    media_api: &str,
    media_api_secret: &str,
) -> tokio::process::Child {
    release_as(
        kubeconfig,
        ReleaseAs {
            namespace: "mediajob-system",
            name: &format!("release-{team}"),
            team,
            extra: &[],
        },
        media_api,
        media_api_secret,
    )
}

/// Where a release is installed, its name (its Lease's), the MediaJobs it selects
/// (`team=<team>`) and any further flags.
struct ReleaseAs<'a> {
    namespace: &'a str,
    name: &'a str,
    team: &'a str,
    extra: &'a [&'a str],
}

fn release_as(
    kubeconfig: &std::path::Path,
    release: ReleaseAs<'_>,
    media_api: &str,
    media_api_secret: &str,
) -> tokio::process::Child {
    let ReleaseAs {
        namespace,
        name,
        team,
        extra,
    } = release;
    tokio::process::Command::new(env!("CARGO_BIN_EXE_mediajob-dev"))
        .args([
            "run",
            "--namespace",
            namespace,
            "--media-api-secret",
            media_api_secret,
            "--auth-url",
            media_api,
            "--media-url",
            media_api,
            "--admin-addr",
            "127.0.0.1:0",
            "--poll-min",
            "200ms",
            "--selector",
            &format!("team={team}"),
            "--lease-name",
            name,
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", format!("{name}-0"))
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the operator binary starts")
}

fn labelled_job(s3: &EmbeddedS3, name: &str, team: &str) -> serde_json::Value {
    json!({
        "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
        "metadata": {"name": name, "labels": {"team": team}},
        "spec": {"operation": "enhance", "input": {"url": "s3://raw/in.wav"},
                 "output": {"url": format!("s3://out/{name}.wav")},
                 "credentials": {"secretRef": {"name": "s3"}}, "s3": {"endpoint": s3.endpoint()}},
    })
}

/// A release with a selector but the default Lease name is refused at start-up: it would share
/// the Lease with another release, and one of the two would never lead.
#[tokio::test]
async fn a_selector_without_a_lease_of_its_own_is_refused() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mediajob-dev"))
        .args(["run", "--selector", "team=a"])
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--selector needs a --lease-name of its own"),
        "{stderr}"
    );
}
