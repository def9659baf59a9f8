//! Kubeconfig documents for the environment's users, and kube clients built from them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::Error;
use crate::pki::CertifiedKey;

/// A kubeconfig (YAML) for one client-certificate user of the cluster at `server`.
pub fn render(server: &str, ca_pem: &str, user: &str, identity: &CertifiedKey) -> String {
    let ca = STANDARD.encode(ca_pem);
    let cert = STANDARD.encode(&identity.cert_pem);
    let key = STANDARD.encode(&identity.key_pem);
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: tidegate-local\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n\
         contexts:\n\
         - name: {user}@tidegate-local\n  context:\n    cluster: tidegate-local\n    user: {user}\n    namespace: default\n\
         current-context: {user}@tidegate-local\n"
    )
}

/// A kube client from a kubeconfig document.
pub async fn client(kubeconfig_yaml: &str) -> Result<kube::Client, Error> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig_yaml).map_err(|e| Error::Client(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Client(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| Error::Client(e.to_string()))
}
