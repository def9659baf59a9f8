//! What the image holds: a root file system with the two binaries, Trivy and only what they need.
//!
//! Three layers, so that a new controller build replaces only the last one:
//! 1. `base`: `/etc/passwd` and `/etc/group` with the non-root user, `/etc/nsswitch.conf`, the CA
//!    certificates, and the mount points the chart puts volumes on (`/tmp`,
//!    `/var/cache/tidegate/trivy`, `/etc/tidegate`), so the root file system can be read-only;
//! 2. `trivy`: `/usr/local/bin/trivy` (a static Go binary);
//! 3. `tidegate`: `/usr/local/bin/tidegate-controller` and `/usr/local/bin/kubectl-tidegate`
//!    (static, so no loader or shared library is needed).

use crate::Error;
use crate::tar::Tree;

/// The user and group the image runs as: `nonroot`, as in distroless images.
pub const USER: (u32, u32) = (65532, 65532);
/// The user's name.
pub const USER_NAME: &str = "nonroot";
/// Its home directory (owned by it; read-only at run time like the rest of the root file system).
pub const HOME: &str = "/home/nonroot";
/// The CA bundle's path (also `SSL_CERT_FILE` in the config).
pub const CA_CERTIFICATES: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where the binaries are.
pub const BIN: &str = "/usr/local/bin";
/// The entrypoint.
pub const ENTRYPOINT: &str = "/usr/local/bin/tidegate-controller";
/// Trivy's cache, where the chart mounts a volume (`--trivy-cache-dir`).
pub const TRIVY_CACHE: &str = "/var/cache/tidegate/trivy";

/// The files that go into the image, read by the caller.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// `tidegate-controller`, statically linked.
    pub controller: Vec<u8>,
    /// `kubectl-tidegate`, statically linked.
    pub kubectl_plugin: Vec<u8>,
    /// `trivy`.
    pub trivy: Vec<u8>,
    /// The CA bundle (PEM).
    pub ca_certificates: Vec<u8>,
}

/// `/etc/passwd`: root (no login) and the non-root user.
pub fn passwd() -> String {
    let (uid, gid) = USER;
    format!("root:x:0:0:root:/root:/sbin/nologin\n{USER_NAME}:x:{uid}:{gid}:{USER_NAME}:{HOME}:/sbin/nologin\n")
}

/// `/etc/group`.
pub fn group() -> String {
    format!("root:x:0:\n{USER_NAME}:x:{}:\n", USER.1)
}

/// `/etc/nsswitch.conf`: names from files, then DNS; nothing glibc would try to load.
const NSSWITCH: &str = "passwd: files\ngroup: files\nhosts: files dns\n";

/// The layers, base first, each with a name for the config's history.
pub fn layers(inputs: &Inputs) -> Result<Vec<(&'static str, Tree)>, Error> {
    let mut base = Tree::new();
    base.file("/etc/passwd", passwd().into_bytes(), 0o644)?
        .file("/etc/group", group().into_bytes(), 0o644)?
        .file("/etc/nsswitch.conf", NSSWITCH.as_bytes().to_vec(), 0o644)?
        .file(CA_CERTIFICATES, inputs.ca_certificates.clone(), 0o644)?
        .dir(HOME, 0o755, USER)?
        .dir("/tmp", 0o1777, (0, 0))?
        .dir("/etc/tidegate", 0o755, (0, 0))?
        .dir(TRIVY_CACHE, 0o755, USER)?;
    let mut trivy = Tree::new();
    trivy.file(&format!("{BIN}/trivy"), inputs.trivy.clone(), 0o755)?;
    let mut tidegate = Tree::new();
    tidegate.file(ENTRYPOINT, inputs.controller.clone(), 0o755)?.file(
        &format!("{BIN}/kubectl-tidegate"),
        inputs.kubectl_plugin.clone(),
        0o755,
    )?;
    Ok(vec![("base", base), ("trivy", trivy), ("tidegate", tidegate)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_and_group_have_the_non_root_user_and_root_cannot_log_in() {
        let passwd = passwd();
        assert!(passwd.lines().any(|l| l == "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin"), "{passwd}");
        assert!(passwd.lines().all(|l| l.ends_with("/sbin/nologin")), "{passwd}");
        assert!(group().lines().any(|l| l == "nonroot:x:65532:"));
    }

    #[test]
    fn the_binaries_are_in_their_own_layers_and_the_mount_points_exist() {
        let inputs = Inputs {
            controller: b"controller".to_vec(),
            kubectl_plugin: b"plugin".to_vec(),
            trivy: b"trivy".to_vec(),
            ca_certificates: b"certs".to_vec(),
        };
        let layers = layers(&inputs).unwrap();
        let paths = |i: usize| layers[i].1.nodes().map(|(p, _)| p.to_string()).collect::<Vec<_>>();
        for path in ["etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "tmp", "var/cache/tidegate/trivy"]
        {
            assert!(paths(0).contains(&path.to_string()), "{path} in {:?}", paths(0));
        }
        assert!(paths(1).contains(&"usr/local/bin/trivy".to_string()));
        assert!(paths(2).contains(&"usr/local/bin/tidegate-controller".to_string()));
        assert!(paths(2).contains(&"usr/local/bin/kubectl-tidegate".to_string()));
    }
}
