//! A control plane where the controller has only its shipped rights: deploy/rbac.yaml applied
//! and ClusterRole `tidegate-controller` bound to a test user.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use tidegate_testenv::{TestEnv, apply};

/// Applies deploy/rbac.yaml and binds ClusterRole `tidegate-controller` to `user`, as
/// `manager`; returns the admin client.
pub async fn install(env: &TestEnv, user: &str, manager: &str) -> kube::Client {
    let admin = env.client().await.expect("admin client");
    let rbac = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rbac.yaml");
    let rbac = std::fs::read_to_string(&rbac).expect("deploy/rbac.yaml");
    apply::apply_yaml(&admin, &rbac, "default", manager).await.expect("apply deploy/rbac.yaml");
    let binding = format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {user}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-controller}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}
"#
    );
    apply::apply_yaml(&admin, &binding, "default", manager).await.expect("bind the controller");
    admin
}

/// A client configuration that acts as `user`.
pub async fn config(env: &TestEnv, user: &str) -> kube::Config {
    let kubeconfig =
        Kubeconfig::from_yaml(&env.user_kubeconfig(user, &[]).expect("kubeconfig")).expect("kubeconfig yaml");
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config")
}
