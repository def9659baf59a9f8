//! The registry client against a real distribution registry behind a fault-injecting proxy on
//! loopback: server errors, `429` with `Retry-After`, a registry that never answers, and dropped
//! connections. Retries are bounded and counted (by the proxy, and by the client's own retry
//! record), never timed; once the faults stop, the same client works again.

use std::time::Duration;

use tidegate_providers::ProviderError;
use tidegate_providers::registry::types::OCI_MANIFEST;
use tidegate_providers::registry::{Cause, ClientOptions, RegistryClient, RegistryError, Repository};
use tidegate_testenv::registry::{Fault, FaultProxy, Registry, RegistryAuth, RegistryKind, RegistryOptions, Scope};

struct Setup {
    _registry: Registry,
    proxy: FaultProxy,
    client: RegistryClient,
    /// `shop/app` as reached through the proxy.
    repo: Repository,
    /// The digest of `shop/app:v1`.
    digest: String,
}

impl Setup {
    async fn new(options: ClientOptions) -> Self {
        let registry =
            Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
                .await
                .expect("registry starts");
        let digest = registry.push_test_image("shop/app", "v1", &[1024], &[]).await.expect("push");
        let proxy = FaultProxy::start(registry.host()).expect("proxy starts");
        let client =
            RegistryClient::new(ClientOptions { plain_http: [proxy.host()].into(), ..options }).expect("client");
        let repo = Repository::new(proxy.host(), "shop/app");
        Self { _registry: registry, proxy, client, repo, digest }
    }

    async fn head(&self) -> Result<String, RegistryError> {
        self.client.head_manifest(&self.repo, "v1").await.map(|d| d.expect("v1 exists").digest)
    }
}

/// Asserts that `e` is transient (the controller backs off and tries again) and returns its
/// message.
fn transient(e: RegistryError) -> String {
    assert!(e.is_transient(), "{e}");
    let message = e.to_string();
    match ProviderError::from(e) {
        ProviderError::Transient(kept) => assert_eq!(kept, message),
        other => panic!("{other:?} is not transient"),
    }
    message
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times_then_the_registry_recovers() {
    let s = Setup::new(ClientOptions::default()).await;
    let attempts = ClientOptions::default().max_retries + 1;
    assert_eq!(attempts, 3);

    // Two 503s, then the registry's own answer: one call, three requests.
    s.proxy.fail(Fault::Status(503), Scope::Next(2));
    assert_eq!(s.head().await.expect("recovers within one call"), s.digest);
    assert_eq!((s.proxy.count(&Fault::Status(503)), s.proxy.forwarded()), (2, 1));
    assert_eq!(s.client.retries(&s.repo.host).by_cause.get(&Cause::ServerError), Some(&2));

    // A registry that keeps failing: exactly `attempts` requests, then a transient error that
    // names the registry and what it answered.
    s.proxy.fail(Fault::Status(503), Scope::All);
    let before = s.proxy.total();
    let e = s.client.get_manifest(&s.repo, "v1").await.expect_err("the registry keeps failing");
    assert_eq!(s.proxy.total() - before, attempts as usize);
    assert!(matches!(e, RegistryError::Unavailable { attempts: 3, .. }), "{e:?}");
    let message = transient(e);
    assert!(message.contains(&format!("registry {}", s.repo.host)), "{message}");
    assert!(message.contains("503 Service Unavailable"), "{message}");

    // The faults stop: the same client works at once.
    s.proxy.clear();
    let fetched = s.client.get_manifest(&s.repo, &s.digest).await.expect("recovered");
    assert_eq!(fetched.digest, s.digest);

    // PUT of a manifest is keyed by its tag and content: repeated after a 503.
    s.proxy.fail(Fault::Status(503), Scope::Next(1));
    let (digest, _) = s.client.put_manifest(&s.repo, "v1-copy", OCI_MANIFEST, &fetched.bytes).await.expect("put");
    assert_eq!(digest, s.digest);
    let puts: Vec<_> = s.proxy.requests().into_iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert_eq!(puts[0].fault, Some(Fault::Status(503)));
    assert_eq!(puts[1].fault, None);
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after_and_a_long_pause_is_not_hammered() {
    let s = Setup::new(ClientOptions { max_retry_after: Duration::from_secs(5), ..Default::default() }).await;

    // 429 with `Retry-After: 1`: the client waits exactly what the registry asked, once.
    s.proxy.fail(Fault::TooManyRequests { retry_after_secs: 1 }, Scope::Next(1));
    assert_eq!(s.head().await.expect("served after the pause"), s.digest);
    assert_eq!(s.proxy.count(&Fault::TooManyRequests { retry_after_secs: 1 }), 1);
    assert_eq!(s.proxy.forwarded(), 1);
    let retries = s.client.retries(&s.repo.host);
    assert_eq!(retries.by_cause.get(&Cause::RateLimited), Some(&1));
    assert_eq!(retries.last_wait, Some(Duration::from_secs(1)), "Retry-After, not the client's own backoff");

    // Asked to wait an hour, more than the client waits within a request: no retry, a transient
    // error that says how long the registry asked for...
    s.proxy.fail(Fault::TooManyRequests { retry_after_secs: 3600 }, Scope::Next(1));
    let e = s.head().await.expect_err("rate limited");
    assert!(
        matches!(e, RegistryError::RateLimited { attempts: 1, retry_after: Some(wait), .. } if wait == Duration::from_secs(3600)),
        "{e:?}"
    );
    let message = transient(e);
    assert!(message.contains(&s.repo.host) && message.contains("asks to wait 3600 s"), "{message}");
    let sent = s.proxy.total();

    // ...and until then the registry gets nothing from this client, however often it is asked.
    s.proxy.clear();
    for _ in 0..20 {
        let e = s.head().await.expect_err("held back");
        assert!(
            matches!(e, RegistryError::RateLimited { attempts: 0, retry_after: Some(left), .. } if left <= Duration::from_secs(3600)),
            "{e:?}"
        );
        assert!(transient(e).contains("not sent"));
    }
    assert_eq!(s.proxy.total(), sent, "no request while the registry asked to be left alone");
    assert_eq!(s.client.retries(&s.repo.host).held_back, 20);
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out_with_an_error_that_names_it() {
    let s = Setup::new(ClientOptions {
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    s.proxy.fail(Fault::Hang, Scope::All);
    let e = s.head().await.expect_err("no answer");
    assert!(matches!(e, RegistryError::Timeout { attempts: 3, .. }), "{e:?}");
    let message = transient(e);
    assert!(
        message.contains(&format!("registry {} did not answer HEAD /v2/shop/app/manifests/v1", s.repo.host)),
        "{message}"
    );
    assert_eq!(s.proxy.count(&Fault::Hang), 3, "bounded attempts");
    assert_eq!(s.client.retries(&s.repo.host).by_cause.get(&Cause::Timeout), Some(&2));

    s.proxy.clear();
    assert_eq!(s.head().await.expect("answers again"), s.digest);
}

#[tokio::test]
async fn a_dropped_connection_is_retried_and_a_persistent_one_is_a_transient_error() {
    let s = Setup::new(ClientOptions::default()).await;
    s.proxy.fail(Fault::Reset, Scope::Next(1));
    assert_eq!(s.head().await.expect("the retry gets through"), s.digest);
    assert_eq!((s.proxy.count(&Fault::Reset), s.proxy.forwarded()), (1, 1));
    assert_eq!(s.client.retries(&s.repo.host).by_cause.get(&Cause::Connection), Some(&1));

    s.proxy.fail(Fault::Reset, Scope::All);
    let e = s.client.get_blob(&s.repo, &s.digest).await.expect_err("every connection dropped");
    assert!(matches!(e, RegistryError::Transport { .. }), "{e:?}");
    let message = transient(e);
    assert!(message.contains(&format!("cannot reach registry {}", s.repo.host)), "{message}");
    assert!(message.contains("after 3 attempts"), "{message}");
    assert_eq!(s.proxy.count(&Fault::Reset), 4);

    s.proxy.clear();
    assert_eq!(s.head().await.expect("recovered"), s.digest);
}

#[tokio::test]
async fn no_hot_loop_while_the_registry_fails() {
    let s = Setup::new(ClientOptions::default()).await;
    s.proxy.fail(Fault::Status(502), Scope::All);
    let calls = 10;
    for _ in 0..calls {
        let e = s.head().await.expect_err("failing");
        transient(e);
    }
    assert_eq!(s.proxy.total(), calls * 3, "each call is at most three requests");
    assert_eq!(s.client.request_count(&s.repo.host), (calls * 3) as u64);

    // A POST (starting an upload) is not repeated: the caller's backoff decides.
    s.proxy.clear();
    s.proxy.fail(Fault::Status(503), Scope::PathPrefix("/v2/shop/app/blobs/uploads/".into()));
    let before = s.proxy.total();
    let e = s.client.push_blob(&s.repo, b"a layer nobody has pushed").await.expect_err("upload refused");
    assert!(matches!(e, RegistryError::Unavailable { attempts: 1, .. }), "{e:?}");
    transient(e);
    let sent = s.proxy.requests()[before..].to_vec();
    assert_eq!(
        sent.iter().map(|r| (r.method.as_str(), r.fault.is_some())).collect::<Vec<_>>(),
        [("HEAD", false), ("POST", true)],
        "one existence check, one refused POST"
    );
    s.proxy.clear();
    s.client.push_blob(&s.repo, b"a layer nobody has pushed").await.expect("pushed once the registry is back");
}
