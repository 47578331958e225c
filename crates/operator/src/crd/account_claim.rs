//! `MediaApiAccountClaim`: which operator release submits on which Media API account, cluster
//! wide. Cluster-scoped, so two releases installed in different namespaces (per-team installs,
//! selector shards) find the same claim. Written only by the operator; see
//! `reconciler/account_claims.rs` for the rules and `docs/exactly-once.md` for why.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A release's hold on one Media API account, renewed like a leader Lease.
// Several printer columns are dates; clippy takes the repeated `type_` for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "mediajob.io",
    version = "v1alpha1",
    kind = "MediaApiAccountClaim",
    plural = "mediaapiaccountclaims",
    shortname = "mjclaim",
    category = "media",
    doc = "Which mediajob-operator release submits on a Media API account (named by a fingerprint of its app key, never the key). Written by the operator.",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Holder", type_ = "string", json_path = ".spec.holder"),
    printcolumn(name = "Renewed", type_ = "date", json_path = ".spec.renewTime"),
    printcolumn(
        name = "Quiet Until",
        type_ = "date",
        json_path = ".spec.quietUntil",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MediaApiAccountClaimSpec {
    /// The release that submits on the account, as `<namespace>/<release>`; empty once the
    /// release stopped and released it.
    #[serde(default)]
    pub holder: String,
    /// Another release may take the claim over once it has seen it unchanged for this long.
    pub lease_duration_seconds: i32,
    /// When the holder took the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<Time>,
    /// The holder's last renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<Time>,
    /// Set when the claim is released: no job of the last holder can be created or stamped by the
    /// Media API after this time (its last unanswered submission plus the late-job window). The
    /// next holder submits only after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_until: Option<Time>,
    /// How many times the claim changed hands.
    #[serde(default)]
    pub transitions: i32,
}
