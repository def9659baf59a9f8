//! Helpers shared by the provider tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidegate_core::Digest;
use tidegate_providers::notary_signer::NotarySigner;
use tidegate_providers::registry::artifact::Artifact;
use tidegate_providers::registry::{ClientOptions, RegistryClient, Repository};
use tidegate_providers::signed_report::REPORT_ARTIFACT_TYPE;
use tidegate_testenv::pki::{CodeSigningFiles, write_code_signing_identity};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};

/// A code-signing identity with its trust store and policy (see testenv's pki).
pub struct Identity {
    _dir: tempfile::TempDir,
    pub files: CodeSigningFiles,
}

impl Identity {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_code_signing_identity(dir.path(), name, "tidegate").expect("identity");
        Self { _dir: dir, files }
    }

    /// A signer that trusts this identity; it signs too when `with_key`.
    pub fn signer(&self, registry: Arc<RegistryClient>, with_key: bool) -> NotarySigner {
        let key = with_key.then_some((self.files.key.as_path(), self.files.chain.as_path()));
        NotarySigner::from_files(registry, key, &self.files.trust_policy, &self.files.trust_store).expect("signer")
    }
}

/// Signs `reference` (`host/repo@sha256:…`) with the real `notation` CLI and `files`' key and
/// chain, as CI does (a fresh notation home whose `signingkeys.json` names them). Returns whether
/// it signed, and what notation printed.
#[allow(dead_code)] // not every test binary signs with notation
pub fn notation_sign(files: &CodeSigningFiles, reference: &str) -> (bool, String) {
    let tools = tidegate_testenv::tools::SupplyChainTools::locate().expect("supply-chain tools");
    let home = tempfile::tempdir().expect("notation home");
    let config = home.path().join("config");
    std::fs::create_dir_all(config.join("notation")).expect("notation config");
    let keys =
        serde_json::json!({"default": "ci", "keys": [{"name": "ci", "keyPath": files.key, "certPath": files.chain}]});
    std::fs::write(config.join("notation/signingkeys.json"), keys.to_string()).expect("signingkeys.json");
    let output = std::process::Command::new(tools.notation())
        .args(["sign", "--insecure-registry", reference])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", &config)
        .output()
        .expect("run notation");
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

/// A registry of `kind`, a client for it and the repository `shop/app`, where CI attaches
/// signed scan reports.
#[allow(dead_code)] // not every test binary attaches reports
pub struct Setup {
    pub registry: Registry,
    pub client: Arc<RegistryClient>,
    pub repo: Repository,
}

#[allow(dead_code)]
impl Setup {
    pub async fn new(kind: RegistryKind) -> Self {
        let registry =
            Registry::start(RegistryOptions { kind, auth: RegistryAuth::Anonymous }).await.expect("registry");
        let plain_http = registry.plain_http_hosts().into_iter().collect();
        let client = Arc::new(RegistryClient::new(ClientOptions { plain_http, ..Default::default() }).expect("client"));
        let repo = Repository::new(registry.host(), "shop/app");
        Self { registry, client, repo }
    }

    /// Pushes an image tagged `tag`; its digest.
    pub async fn image(&self, tag: &str, size: usize) -> Digest {
        self.registry.push_test_image("shop/app", tag, &[size], &[]).await.expect("push").parse().expect("digest")
    }

    pub fn pinned(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.repo)
    }

    /// Attaches `report` to `digest` as CI does (`oras attach --artifact-type …`), its layer of
    /// `layer_media_type`. Returns the report manifest's digest.
    pub async fn attach(&self, digest: &Digest, report: &str, layer_media_type: &str) -> String {
        let subject = self.client.head_manifest(&self.repo, digest.as_str()).await.expect("head").expect("subject");
        let artifact = Artifact {
            artifact_type: REPORT_ARTIFACT_TYPE,
            layer_media_type,
            payload: report.as_bytes(),
            annotations: BTreeMap::new(),
        };
        self.client.push_artifact(&self.repo, &subject, &artifact).await.expect("attach report")
    }

    /// Attaches `report` to `digest` and signs the report manifest with `signer`'s key through
    /// the real `notation sign`. Returns the report manifest's digest.
    pub async fn attach_signed(&self, digest: &Digest, report: &str, signer: &CodeSigningFiles) -> String {
        let report_digest = self.attach(digest, report, "application/json").await;
        let (ok, out) = notation_sign(signer, &format!("{}@{report_digest}", self.repo));
        assert!(ok, "notation sign: {out}");
        report_digest
    }
}
