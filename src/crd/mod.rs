//! The MediaJob custom resource (mediajob.io/v1alpha1). Placeholder until the types land.
pub fn crd_yaml() -> String {
    String::new()
}
