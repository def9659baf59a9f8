//! The Helm chart `charts/tidegate`, with the real `helm` (built from `helm.sh/helm/v3` by
//! `cargo xtask tools`): it ships the same RBAC and approval policy as `deploy/`, lints clean,
//! renders a hardened controller Deployment, renders the Azure values (workload identity, client
//! secret, grants) into arguments the controller's own flag parser accepts, refuses bad values and
//! other namespaces, installs into a control plane of its own (CRDs included), upgrades without
//! losing a Promotion, and its RBAC grants the controller nothing it must not hold.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tidegate_api::{Promotion, PromotionSpec};
use tidegate_controller::azure::AzureArgs;
use tidegate_providers::azure::identity::AzureConfig;
use tidegate_providers::azure_targets::AzureScopes;
use tidegate_providers::staging_tests::HttpCheckOptions;

use tidegate_testenv::{Options, TestEnv, helm_tool};

const DIGEST: &str = "sha256:4c184c0d25773ebecb5b46cfb86c87aede83bf6fb921f9d21292fab3deb4aa26";
/// The version `helm template` renders for (the local control plane's).
const KUBE: &str = tidegate_testenv::tools::KUBERNETES_VERSION;
const CONTROLLER: &str = "system:serviceaccount:tidegate-system:tidegate-controller";

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn chart() -> String {
    repo_path("charts/tidegate").display().to_string()
}

struct Helm {
    binary: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn new() -> Self {
        Self {
            binary: helm_tool::locate().expect("helm (run `cargo xtask tools`)"),
            home: tempfile::tempdir().expect("helm home"),
        }
    }

    fn run(&self, kubeconfig: Option<&Path>, args: &[&str]) -> (bool, String, String) {
        helm_tool::run(&self.binary, self.home.path(), kubeconfig, args)
    }

    /// `helm template` in tidegate-system with `sets`; the rendered objects.
    fn template(&self, sets: &[&str]) -> Vec<Value> {
        let chart = chart();
        let mut args = vec!["template", "tidegate", &chart, "-n", "tidegate-system", "--kube-version", KUBE];
        for set in sets {
            args.extend(["--set", set]);
        }
        let (ok, out, err) = self.run(None, &args);
        assert!(ok, "helm template failed: {err}");
        documents(&out)
    }

    /// `helm template` in tidegate-system with `values` as a values file: (success, rendered
    /// manifests, stderr).
    fn template_values(&self, values: &Value) -> (bool, String, String) {
        let file = self.home.path().join("values.yaml");
        std::fs::write(&file, serde_yaml::to_string(values).expect("values")).expect("write values");
        let (chart, file) = (chart(), file.display().to_string());
        self.run(None, &["template", "tidegate", &chart, "-n", "tidegate-system", "--kube-version", KUBE, "-f", &file])
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The controller container's arguments.
fn controller_args(objects: &[Value]) -> Vec<String> {
    let container = &find(objects, "Deployment", "tidegate-controller")["spec"]["template"]["spec"]["containers"][0];
    container["args"].as_array().expect("args").iter().map(|a| a.as_str().expect("string").to_string()).collect()
}

/// The controller's command line, as `tidegate-controller` defines it.
#[derive(Parser)]
struct ControllerCli {
    #[command(flatten)]
    config: tidegate_controller::Config,
}

/// The controller's Azure settings from `args`, parsed by the controller's own flags (so every
/// rendered flag exists and its value has the flag's type), with the grants and staging
/// resolutions parsed as the controller parses them at start.
fn controller_azure(args: &[String]) -> AzureArgs {
    let argv = std::iter::once("tidegate-controller").chain(args.iter().map(String::as_str));
    let cli = ControllerCli::try_parse_from(argv).unwrap_or_else(|e| panic!("the controller refuses {args:?}: {e}"));
    let azure = cli.config.azure;
    AzureScopes::parse(&azure.azure_grants).unwrap_or_else(|e| panic!("grants: {e}"));
    HttpCheckOptions::parse_resolve(&azure.staging_resolve).unwrap_or_else(|e| panic!("staging resolve: {e}"));
    azure
}

/// What the controller builds from `azure` at start ([`AzureArgs::config`]), checked as it checks
/// it: everything the credential needs is there and well-formed.
fn validated_azure_config(azure: &AzureArgs) -> AzureConfig {
    match azure.config() {
        Ok(Some(config)) => config,
        Ok(None) => panic!("no --azure-credential rendered"),
        Err(e) => panic!("the controller would refuse {azure:?}: {e}"),
    }
}

/// The documents of a YAML file, without comment-only ones.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|doc| <Option<Value> as serde::Deserialize>::deserialize(doc).expect("YAML"))
        .collect()
}

#[test]
fn the_chart_ships_the_same_rbac_and_approval_policy_as_deploy() {
    let read = |p: &str| std::fs::read_to_string(repo_path(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        read("charts/tidegate/templates/approval-policy.yaml"),
        read("deploy/approval-policy.yaml"),
        "the chart's approval policy drifted from deploy/"
    );
    // deploy/rbac.yaml also creates the namespace, which `helm install --create-namespace` does.
    let key = |d: &Value| format!("{}/{}/{}", d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]);
    let mut deploy: Vec<Value> =
        documents(&read("deploy/rbac.yaml")).into_iter().filter(|d| d["kind"] != "Namespace").collect();
    // The chart's ServiceAccount is a template of its own (Azure workload identity annotates it);
    // rendered with the default values it is deploy/'s.
    let mut chart = documents(&read("charts/tidegate/templates/rbac.yaml"));
    chart.push(find(&Helm::new().template(&[]), "ServiceAccount", "tidegate-controller").clone());
    deploy.sort_by_key(key);
    chart.sort_by_key(key);
    assert_eq!(chart, deploy, "the chart's RBAC drifted from deploy/");
}

#[test]
fn lint_and_template_render_a_hardened_controller() {
    let helm = Helm::new();
    let (ok, out, err) = helm.run(None, &["lint", "--strict", &chart(), "--namespace", "tidegate-system"]);
    assert!(ok, "helm lint: {out}{err}");

    let objects = helm.template(&[&format!("image.digest={DIGEST}")]);
    let deployment = find(&objects, "Deployment", "tidegate-controller");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], json!(2), "two replicas with leader election");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "tidegate-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], json!(format!("ghcr.io/tidegate/tidegate-controller@{DIGEST}")), "by digest");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], json!(true));
    assert_eq!(security["allowPrivilegeEscalation"], json!(false));
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert!(
        container["resources"]["requests"]["cpu"].is_string() && container["resources"]["limits"]["memory"].is_string()
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["readinessProbe"]["httpGet"]["path"].is_string());
    let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    assert!(args.contains(&"--trivy-binary=/usr/local/bin/trivy"), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--trivy-concurrency")), "one scan at a time by default: {args:?}");
    let served = helm.template(&[
        &format!("image.digest={DIGEST}"),
        "trivy.server=http://trivy.scanning:4954",
        "trivy.concurrency=4",
    ]);
    let served_args =
        find(&served, "Deployment", "tidegate-controller")["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect::<Vec<_>>();
    assert!(served_args.contains(&"--trivy-concurrency=4".to_string()), "{served_args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--notary-key-file")), "no key without a Secret: {args:?}");
    let env: Vec<&str> = container["env"].as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(env.contains(&"POD_NAMESPACE") && env.contains(&"POD_NAME"), "leader election identity: {env:?}");
    find(&objects, "PodDisruptionBudget", "tidegate-controller");
    find(&objects, "Service", "tidegate-controller-metrics");
    find(&objects, "NetworkPolicy", "tidegate-controller");
    find(&objects, "ClusterRole", "tidegate-controller");
    find(&objects, "ValidatingAdmissionPolicy", "tidegate-promotion-approval");
    find(&objects, "ValidatingAdmissionPolicy", "tidegate-production-images");
    assert!(!objects.iter().any(|o| o["kind"] == "ServiceMonitor"), "off by default");

    // Signing, registry credentials and the trust store are mounted from what the values name.
    let objects = helm.template(&[
        "signing.keySecret=tidegate-signing",
        "signing.trustConfigMap=tidegate-trust",
        "registry.credentialsSecret=registry",
        "registry.plainHttp[0]=registry.local:5000",
        "metrics.serviceMonitor.enabled=true",
        "productionPolicy.enabled=false",
    ]);
    let pod = &find(&objects, "Deployment", "tidegate-controller")["spec"]["template"]["spec"];
    let args: Vec<&str> =
        pod["containers"][0]["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    for expected in [
        "--notary-key-file=/etc/tidegate/signing/tls.key",
        "--trust-policy-file=/etc/tidegate/trust/trustpolicy.json",
        "--notary-crl-max-age-seconds=300",
        "--registry-credentials=/etc/tidegate/registry/.dockerconfigjson",
        "--plain-http-registry=registry.local:5000",
    ] {
        assert!(args.contains(&expected), "{expected} in {args:?}");
    }
    let trust = pod["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == "trust").expect("trust");
    assert_eq!(trust["configMap"]["items"][1]["path"], "x509/ca/tidegate/ca.pem");
    find(&objects, "ServiceMonitor", "tidegate-controller");
    assert!(!objects.iter().any(|o| o["metadata"]["name"] == "tidegate-production-images"), "switched off");
}

#[test]
fn bad_values_and_other_namespaces_are_refused() {
    let helm = Helm::new();
    for (set, expect) in [
        ("replicas=0", "replicas"),
        ("signing.crlMaxAgeSeconds=-1", "crlMaxAgeSeconds"),
        ("image.digest=latest", "digest"),
        ("trivy.cache.sizeLimit=lots", "sizeLimit"),
        ("extraArgs[0]=rm", "extraArgs"),
        ("unknownValue=1", "unknownValue"),
        ("azure.credential=password", "credential"),
        ("azure.unknownValue=1", "unknownValue"),
        // The client secret is a Secret's name and key, never a value.
        ("azure.clientSecret.value=hunter2", "value"),
        ("azure.grants.shop[0]=/resourceGroups/shop", "/azure/grants/shop/0"),
        ("azure.grants.shop[0]=subscriptions/s1", "/azure/grants/shop/0"),
        ("azure.grants.Shop[0]=/subscriptions/s1", "Shop"),
        ("azure.clientId=not-a-guid", "clientId"),
        // Workload identity needs the client id the ServiceAccount annotation carries.
        ("azure.enabled=true", "clientId"),
        ("azure.requestsPerSecond=0", "requestsPerSecond"),
        ("staging.resolve[0]=10.0.0.4", "resolve"),
        ("azure.productionScopes[0]=/resourceGroups/prod", "/azure/productionScopes/0"),
        ("azure.acrLoginServers[0]=https://myregistry.azurecr.io", "/azure/acrLoginServers/0"),
        ("azure.acrTokenScope=https://containerregistry.azure.net", "acrTokenScope"),
    ] {
        let (ok, _, err) = helm.run(
            None,
            &["template", "tidegate", &chart(), "-n", "tidegate-system", "--kube-version", KUBE, "--set", set],
        );
        assert!(!ok && err.contains(expect), "{set} must be refused naming {expect}: {err}");
    }
    let (ok, _, err) = helm.run(None, &["template", "tidegate", &chart(), "-n", "default", "--kube-version", KUBE]);
    assert!(!ok && err.contains("install Tidegate into namespace tidegate-system"), "{err}");
}

const CLIENT_ID: &str = "6f1d2c3b-0a9e-4b8c-9d7e-5f4a3b2c1d0e";
const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

#[test]
fn azure_is_off_unless_enabled() {
    let helm = Helm::new();
    // Azure values set but not enabled: nothing Azure is rendered.
    for sets in [&[][..], &["azure.clientId=6f1d2c3b-0a9e-4b8c-9d7e-5f4a3b2c1d0e", "azure.caBundle.configMap=ca"][..]] {
        let objects = helm.template(sets);
        let args = controller_args(&objects);
        assert!(!args.iter().any(|a| a.starts_with("--azure") || a.starts_with("--staging")), "{args:?}");
        let deployment = find(&objects, "Deployment", "tidegate-controller");
        let text = serde_json::to_string(deployment).expect("JSON");
        assert!(!text.contains("azure"), "no Azure env, label or volume: {text}");
        let account = find(&objects, "ServiceAccount", "tidegate-controller");
        assert!(account["metadata"]["annotations"].is_null(), "{account}");
        let azure = controller_azure(&args);
        assert!(azure.azure_credential.is_none() && azure.azure_grants.is_empty());
    }
}

#[test]
fn azure_workload_identity_annotates_the_service_account_and_labels_the_pods() {
    let helm = Helm::new();
    let (ok, out, err) = helm.template_values(&json!({
        "azure": {
            "enabled": true,
            "credential": "workloadIdentity",
            "tenantId": TENANT_ID,
            "clientId": CLIENT_ID,
            "grants": {"shop": ["/subscriptions/s1/resourceGroups/shop"]}
        }
    }));
    assert!(ok, "helm template: {err}");
    let objects = documents(&out);
    let account = find(&objects, "ServiceAccount", "tidegate-controller");
    assert_eq!(
        account["metadata"]["annotations"],
        json!({"azure.workload.identity/client-id": CLIENT_ID, "azure.workload.identity/tenant-id": TENANT_ID})
    );
    let template = &find(&objects, "Deployment", "tidegate-controller")["spec"]["template"];
    assert_eq!(
        template["metadata"]["labels"]["azure.workload.identity/use"],
        json!("true"),
        "a string, as the webhook wants"
    );
    assert_eq!(template["spec"]["serviceAccountName"], "tidegate-controller");
    let args = controller_args(&objects);
    let azure_args: Vec<&String> = args.iter().filter(|a| a.starts_with("--azure")).collect();
    // Tenant, client, token file and authority host come from the webhook's environment.
    assert_eq!(
        azure_args,
        ["--azure-credential=workload-identity", "--azure-grant=shop=/subscriptions/s1/resourceGroups/shop"],
        "{args:?}"
    );
    let container = &template["spec"]["containers"][0];
    let env: Vec<&str> = container["env"].as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(!env.iter().any(|e| e.starts_with("AZURE_")), "the webhook injects these: {env:?}");

    // The variables the AKS workload identity webhook injects are the controller flags' defaults.
    let command = ControllerCli::command();
    for (variable, flag) in [
        ("AZURE_CLIENT_ID", "azure-client-id"),
        ("AZURE_TENANT_ID", "azure-tenant-id"),
        ("AZURE_FEDERATED_TOKEN_FILE", "azure-federated-token-file"),
        ("AZURE_AUTHORITY_HOST", "azure-authority-host"),
    ] {
        let arg = command.get_arguments().find(|a| a.get_long() == Some(flag)).unwrap_or_else(|| panic!("--{flag}"));
        assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(variable), "--{flag}");
    }
    // With what the webhook injects, the controller has all a workload identity needs.
    let mut azure = controller_azure(&args);
    azure.azure_tenant_id = Some(TENANT_ID.into());
    azure.azure_client_id = Some(CLIENT_ID.into());
    azure.azure_federated_token_file = Some("/var/run/secrets/azure/tokens/azure-identity-token".into());
    azure.azure_authority_host = "https://login.microsoftonline.com/".into();
    let config = validated_azure_config(&azure);
    assert_eq!(config.credential.to_string(), "workload-identity");
}

#[test]
fn azure_client_secret_grants_and_staging_render_as_controller_flags() {
    let helm = Helm::new();
    let values = json!({
        "azure": {
            "enabled": true,
            "credential": "clientSecret",
            "tenantId": TENANT_ID,
            "clientId": CLIENT_ID,
            "clientSecret": {"existingSecret": "tidegate-azure", "key": "secret"},
            "authorityHost": "https://login.microsoftonline.us",
            "resourceManager": "https://management.usgovcloudapi.net",
            "tokenScope": "https://management.usgovcloudapi.net/.default",
            "caBundle": {"configMap": "azure-ca"},
            "requestsPerSecond": 2.5,
            "grants": {
                "shop": ["/subscriptions/s1/resourceGroups/shop", "/subscriptions/s2"],
                "batch": ["/subscriptions/s1/resourceGroups/batch/providers/Microsoft.App/jobs/nightly"]
            },
            "productionScopes": ["/subscriptions/s1/resourceGroups/prod"],
            "acrLoginServers": ["shop.azurecr.io"],
            "acrTokenScope": "https://containerregistry.azure.us/.default"
        },
        "staging": {
            "caBundle": {"configMap": "staging-ca", "key": "ca.pem"},
            "resolve": ["internal.example.azurecontainerapps.io=10.0.0.4", "apps.example.net=10.0.0.5:8443"]
        }
    });
    let (ok, out, err) = helm.template_values(&values);
    assert!(ok, "helm template: {err}");
    let objects = documents(&out);
    let args = controller_args(&objects);
    for expected in [
        "--azure-credential=client-secret",
        &format!("--azure-tenant-id={TENANT_ID}"),
        &format!("--azure-client-id={CLIENT_ID}"),
        "--azure-client-secret-file=/etc/tidegate/azure-client-secret/client-secret",
        "--azure-authority-host=https://login.microsoftonline.us",
        "--azure-resource-manager=https://management.usgovcloudapi.net",
        "--azure-scope=https://management.usgovcloudapi.net/.default",
        "--azure-ca-file=/etc/tidegate/azure-ca/ca.pem",
        "--azure-requests-per-second=2.5",
        "--azure-grant=batch=/subscriptions/s1/resourceGroups/batch/providers/Microsoft.App/jobs/nightly",
        "--azure-grant=shop=/subscriptions/s1/resourceGroups/shop",
        "--azure-grant=shop=/subscriptions/s2",
        "--staging-ca-file=/etc/tidegate/staging-ca/ca.pem",
        "--staging-resolve=internal.example.azurecontainerapps.io=10.0.0.4",
        "--staging-resolve=apps.example.net=10.0.0.5:8443",
        "--azure-production-scope=/subscriptions/s1/resourceGroups/prod",
        "--acr-login-server=shop.azurecr.io",
        "--acr-token-scope=https://containerregistry.azure.us/.default",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
    }
    assert_eq!(args.iter().filter(|a| a.starts_with("--azure-grant=")).count(), 3, "{args:?}");

    let pod = &find(&objects, "Deployment", "tidegate-controller")["spec"]["template"]["spec"];
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(
        volume("azure-client-secret")["secret"],
        json!({"secretName": "tidegate-azure", "items": [{"key": "secret", "path": "client-secret"}]})
    );
    assert_eq!(
        volume("azure-ca")["configMap"],
        json!({"name": "azure-ca", "items": [{"key": "ca.crt", "path": "ca.pem"}]})
    );
    assert_eq!(
        volume("staging-ca")["configMap"],
        json!({"name": "staging-ca", "items": [{"key": "ca.pem", "path": "ca.pem"}]})
    );
    let mounts = pod["containers"][0]["volumeMounts"].as_array().expect("mounts");
    for (name, path) in [
        ("azure-client-secret", "/etc/tidegate/azure-client-secret"),
        ("azure-ca", "/etc/tidegate/azure-ca"),
        ("staging-ca", "/etc/tidegate/staging-ca"),
    ] {
        let mount = mounts.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name} mount"));
        assert_eq!((&mount["mountPath"], &mount["readOnly"]), (&json!(path), &json!(true)), "{name}");
    }
    // The secret stays in its Secret: nothing rendered carries a value, no Secret is rendered,
    // no environment variable names it, and the ServiceAccount has no workload identity.
    assert!(!objects.iter().any(|o| o["kind"] == "Secret"));
    let env: Vec<&str> =
        pod["containers"][0]["env"].as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(env, ["POD_NAMESPACE", "POD_NAME"]);
    assert!(find(&objects, "ServiceAccount", "tidegate-controller")["metadata"]["annotations"].is_null());
    assert!(
        find(&objects, "Deployment", "tidegate-controller")["spec"]["template"]["metadata"]["labels"]
            ["azure.workload.identity/use"]
            .is_null()
    );
    // Egress stays open: Entra ID and Resource Manager on 443.
    let policy = find(&objects, "NetworkPolicy", "tidegate-controller");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]), "{policy}");

    // The controller's own flags accept every rendered argument, and what it builds validates.
    let config = validated_azure_config(&controller_azure(&args));
    assert_eq!(
        config.client_secret_file.as_deref(),
        Some(Path::new("/etc/tidegate/azure-client-secret/client-secret"))
    );
    assert_eq!(config.resource_manager.as_str(), "https://management.usgovcloudapi.net/");
    assert_eq!(config.requests_per_second, 2.5);

    // Managed identity: a user-assigned identity by client id, nothing mounted.
    let (ok, out, err) = helm.template_values(&json!({
        "azure": {"enabled": true, "credential": "managedIdentity", "clientId": CLIENT_ID}
    }));
    assert!(ok, "helm template: {err}");
    let objects = documents(&out);
    let args = controller_args(&objects);
    let azure_args: Vec<&String> = args.iter().filter(|a| a.starts_with("--azure")).collect();
    assert_eq!(azure_args, ["--azure-credential=managed-identity", &format!("--azure-client-id={CLIENT_ID}")]);
    let pod = &find(&objects, "Deployment", "tidegate-controller")["spec"]["template"]["spec"];
    assert!(!serde_json::to_string(&pod["volumes"]).expect("JSON").contains("azure"));
    validated_azure_config(&controller_azure(&args));

    // Client secret without the Secret, tenant or client id is refused before anything renders.
    let (ok, _, err) = helm.template_values(&json!({"azure": {"enabled": true, "credential": "clientSecret", "tenantId": TENANT_ID, "clientId": CLIENT_ID}}));
    assert!(!ok && err.contains("existingSecret"), "{err}");
}

/// Whether `user` may `verb` `resource` (cluster-wide when `namespace` is empty).
#[test]
fn a_key_vault_signing_key_renders_as_controller_flags_and_bad_combinations_are_refused() {
    let helm = Helm::new();
    let azure = json!({
        "enabled": true, "credential": "clientSecret", "tenantId": TENANT_ID, "clientId": CLIENT_ID,
        "clientSecret": {"existingSecret": "tidegate-azure", "key": "secret"}
    });
    let certificate = "https://shop-signing.vault.azure.net/certificates/tidegate/0123456789abcdef0123456789abcdef";
    let values = json!({
        "azure": azure,
        "signing": {"trustConfigMap": "trust", "keyVault": {"certificateId": certificate, "chainConfigMap": "signing-ca"}}
    });
    let (ok, out, err) = helm.template_values(&values);
    assert!(ok, "helm template: {err}");
    let objects = documents(&out);
    let args = controller_args(&objects);
    let argv = std::iter::once("tidegate-controller").chain(args.iter().map(String::as_str));
    let cli = ControllerCli::try_parse_from(argv).unwrap_or_else(|e| panic!("the controller refuses {args:?}: {e}"));
    assert_eq!(cli.config.notary_key_vault_certificate_id.as_deref(), Some(certificate));
    assert_eq!(cli.config.notary_key_vault_key_id, None);
    assert_eq!(cli.config.notary_key_file, None);
    assert_eq!(
        cli.config.notary_cert_file.as_deref(),
        Some(Path::new("/etc/tidegate/signing-chain/chain.pem")),
        "the CA chain is the mounted ConfigMap"
    );
    validated_azure_config(&cli.config.azure);
    let pod = &find(&objects, "Deployment", "tidegate-controller")["spec"]["template"]["spec"];
    let volume =
        pod["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == "signing-chain").expect("volume");
    assert_eq!(volume["configMap"]["name"], "signing-ca");
    assert!(
        pod["containers"][0]["volumeMounts"].as_array().expect("mounts").iter().any(|m| m["name"] == "signing-chain"
            && m["mountPath"] == "/etc/tidegate/signing-chain"
            && m["readOnly"] == true)
    );

    // A key id renders as such (with its chain).
    let key = "https://shop-signing.vault.azure.net/keys/tidegate";
    let values = json!({"azure": azure, "signing": {"keyVault": {"keyId": key, "chainConfigMap": "chain"}}});
    let (ok, out, err) = helm.template_values(&values);
    assert!(ok, "helm template: {err}");
    let args = controller_args(&documents(&out));
    assert!(args.contains(&format!("--notary-key-vault-key-id={key}")), "{args:?}");

    for (values, expect) in [
        // Key Vault is used with the Azure identity.
        (json!({"signing": {"keyVault": {"certificateId": certificate}}}), "needs azure.enabled"),
        // One key only.
        (
            json!({"azure": azure, "signing": {"keySecret": "tls", "keyVault": {"certificateId": certificate}}}),
            "both name a signing key",
        ),
        // A key id needs its chain.
        (json!({"azure": azure, "signing": {"keyVault": {"keyId": key}}}), "chainConfigMap"),
        (json!({"azure": azure, "signing": {"keyVault": {"chainConfigMap": "chain"}}}), "needs signing.keyVault.keyId"),
        (json!({"azure": azure, "signing": {"keyVault": {"keyId": "http://v.vault.azure.net/keys/k"}}}), "keyId"),
        (json!({"azure": azure, "signing": {"keyVault": {"keyId": "https://v.vault.azure.net/secrets/k"}}}), "keyId"),
        (
            json!({"azure": azure, "signing": {"keyVault": {"certificateId": "https://v.vault.azure.net/keys/k"}}}),
            "certificateId",
        ),
        (json!({"azure": azure, "signing": {"keyVault": {"pem": "x"}}}), "pem"),
    ] {
        let (ok, _, err) = helm.template_values(&values);
        assert!(!ok && err.contains(expect), "{values} must be refused naming {expect:?}: {err}");
    }
}

async fn may(client: &kube::Client, user: &str, verb: &str, group: &str, resource: &str, namespace: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec!["system:serviceaccounts".into(), "system:serviceaccounts:tidegate-system".into()]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: Some(namespace.into()).filter(|n: &String| !n.is_empty()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    api.create(&PostParams::default(), &review).await.expect("review").status.is_some_and(|s| s.allowed)
}

async fn deployment_image(api: &Api<Deployment>) -> Option<String> {
    api.get("tidegate-controller").await.ok()?.spec?.template.spec?.containers.first()?.image.clone()
}

#[tokio::test]
async fn installs_upgrades_and_grants_the_controller_only_what_it_needs() {
    let helm = Helm::new();
    // A control plane of its own, without Tidegate's CRDs: the chart brings them.
    let env = TestEnv::start_with(Options { nodes: 1, install_crds: false, ..Default::default() })
        .await
        .expect("environment");
    let kubeconfig = env.admin_kubeconfig_path();
    let client = env.client().await.expect("client");
    let install = [
        "install",
        "tidegate",
        &chart(),
        "-n",
        "tidegate-system",
        "--create-namespace",
        "--set",
        &format!("image.digest={DIGEST}"),
        "--wait",
        "--timeout",
        "2m",
    ];
    let (ok, out, err) = helm.run(Some(&kubeconfig), &install);
    assert!(ok, "helm install: {out}{err}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "tidegate-system");
    assert_eq!(
        deployment_image(&deployments).await.as_deref(),
        Some(format!("ghcr.io/tidegate/tidegate-controller@{DIGEST}").as_str())
    );

    // The CRDs came with the chart; a Promotion in flight is stored.
    env.create_namespace("shop").await.expect("namespace");
    let promotions: Api<Promotion> = Api::namespaced(client.clone(), "shop");
    let deadline = Instant::now() + Duration::from_secs(30);
    let promotion = Promotion::new(
        "in-flight",
        PromotionSpec {
            policy: "shop-app".into(),
            release: "shop-app-base-1".into(),
            digest: DIGEST.into(),
            workloads: None,
            // The chart's approval policy is in force: the requester names themself.
            requested_by: Some(tidegate_testenv::ADMIN_USER.into()),
        },
    );
    loop {
        match promotions.create(&PostParams::default(), &promotion).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the CRDs: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("create a Promotion: {e}"),
        }
    }

    // What the chart's RBAC lets the controller do, asked of the API server's authorizer.
    for (verb, group, resource, namespace, allowed) in [
        ("list", "", "secrets", "", false),
        ("get", "", "secrets", "shop", false),
        ("approve", "tidegate.dev", "promotions", "shop", false),
        ("update", "rbac.authorization.k8s.io", "clusterroles", "", false),
        ("escalate", "rbac.authorization.k8s.io", "clusterroles", "", false),
        ("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", false),
        ("patch", "apps", "deployments", "shop", false),
        ("update", "tidegate.dev", "promotions/status", "shop", true),
        ("update", "coordination.k8s.io", "leases", "tidegate-system", true),
        ("update", "coordination.k8s.io", "leases", "kube-system", false),
    ] {
        assert_eq!(
            may(&client, CONTROLLER, verb, group, resource, namespace).await,
            allowed,
            "{verb} {resource}.{group} in {namespace:?}"
        );
    }

    // An upgrade to another image rolls the controller and keeps the Promotion.
    let other = "sha256:ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc";
    let mut upgrade = install.to_vec();
    upgrade[0] = "upgrade";
    let set = format!("image.digest={other}");
    upgrade[7] = &set;
    upgrade.retain(|a| *a != "--create-namespace");
    let (ok, out, err) = helm.run(Some(&kubeconfig), &upgrade);
    assert!(ok, "helm upgrade: {out}{err}");
    assert_eq!(
        deployment_image(&deployments).await.as_deref(),
        Some(format!("ghcr.io/tidegate/tidegate-controller@{other}").as_str())
    );
    assert!(promotions.get("in-flight").await.is_ok(), "the upgrade keeps Promotions");
    let (ok, out, _) = helm.run(Some(&kubeconfig), &["history", "tidegate", "-n", "tidegate-system"]);
    assert!(ok && out.contains("Upgrade complete"), "{out}");
}
