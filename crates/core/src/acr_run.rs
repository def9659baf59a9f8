//! Azure Container Registry Tasks runs: what a run's status means for a build, and which of the
//! images a run pushed is the Release's candidate.
//!
//! A task can push anywhere in its registry (and, with credentials, elsewhere), so the candidate
//! is only ever an output image in the policy's own repository, on the policy's own registry.

use crate::Digest;

/// What a run's status (`properties.status`) means for the build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunPhase {
    /// Not finished (`Queued`, `Started`, `Running`, or a status this version does not know,
    /// which is waited on until the build's timeout rather than taken as success).
    Waiting,
    /// `Succeeded`: the output images are final.
    Succeeded,
    /// `Failed`, `Canceled`, `Error` or `Timeout`: the run will not produce a candidate.
    Ended,
}

/// The phase of ACR run status `status` (compared case-insensitively).
pub fn phase(status: &str) -> RunPhase {
    match status.to_ascii_lowercase().as_str() {
        "succeeded" => RunPhase::Succeeded,
        "failed" | "canceled" | "cancelled" | "error" | "timeout" => RunPhase::Ended,
        _ => RunPhase::Waiting,
    }
}

/// One image a run reports in `properties.outputImages`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputImage {
    /// The registry's login server, e.g. `myregistry.azurecr.io`.
    pub registry: String,
    /// The repository within the registry, e.g. `shop/web`.
    pub repository: String,
    /// The tag it was pushed with, if any.
    pub tag: Option<String>,
    /// Its digest, if reported.
    pub digest: Option<String>,
}

impl std::fmt::Display for OutputImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The candidate among a succeeded run's `outputs`: an image in `repository` on `registry`
/// (registry host compared case-insensitively, repository exactly, as OCI repositories are lower
/// case). With several there, the one tagged `tag` (the tag Tidegate gave the run) is taken;
/// several with different digests and none tagged `tag` is ambiguous. Every refusal says what the
/// run pushed.
pub fn candidate(outputs: &[OutputImage], registry: &str, repository: &str, tag: &str) -> Result<Digest, String> {
    let pushed = || {
        if outputs.is_empty() {
            "no images".to_string()
        } else {
            outputs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    let ours: Vec<&OutputImage> =
        outputs.iter().filter(|o| o.registry.eq_ignore_ascii_case(registry) && o.repository == repository).collect();
    if ours.is_empty() {
        return Err(format!(
            "the run pushed no image to the policy's repository {registry}/{repository} (it pushed {}); the task must \
             push {registry}/{repository}:{tag} (values TIDEGATE_IMAGE_REPOSITORY and TIDEGATE_IMAGE_TAG)",
            pushed()
        ));
    }
    let chosen = match ours.iter().find(|o| o.tag.as_deref() == Some(tag)) {
        Some(tagged) => *tagged,
        None => {
            let first = ours[0];
            if ours.iter().any(|o| o.digest != first.digest) {
                return Err(format!(
                    "the run pushed several different images to {registry}/{repository} ({}) and none with the \
                     Release's tag {tag}: which one is the candidate is ambiguous",
                    pushed()
                ));
            }
            first
        }
    };
    let digest = chosen.digest.as_deref().ok_or_else(|| format!("the run reports {chosen} without a digest"))?;
    digest.parse().map_err(|e| format!("the run reports {chosen} with an invalid digest: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const B: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(registry: &str, repository: &str, tag: Option<&str>, digest: Option<&str>) -> OutputImage {
        OutputImage {
            registry: registry.into(),
            repository: repository.into(),
            tag: tag.map(Into::into),
            digest: digest.map(Into::into),
        }
    }

    #[test]
    fn statuses() {
        for waiting in ["Queued", "Started", "Running", "running", "SomethingNew", ""] {
            assert_eq!(phase(waiting), RunPhase::Waiting, "{waiting}");
        }
        assert_eq!(phase("Succeeded"), RunPhase::Succeeded);
        for ended in ["Failed", "Canceled", "Error", "Timeout", "FAILED"] {
            assert_eq!(phase(ended), RunPhase::Ended, "{ended}");
        }
    }

    #[test]
    fn only_the_policys_repository_on_its_registry_counts() {
        let outputs = [
            image("myregistry.azurecr.io", "other/app", Some("t"), Some(A)),
            image("MyRegistry.azurecr.io", "shop/web", Some("t"), Some(B)),
        ];
        assert_eq!(candidate(&outputs, "myregistry.azurecr.io", "shop/web", "t").unwrap().as_str(), B);
        let refused = candidate(&outputs[..1], "myregistry.azurecr.io", "shop/web", "t").unwrap_err();
        assert!(
            refused.contains("pushed no image to the policy's repository myregistry.azurecr.io/shop/web")
                && refused.contains("myregistry.azurecr.io/other/app:t@"),
            "{refused}"
        );
        let elsewhere = [image("evil.azurecr.io", "shop/web", Some("t"), Some(A))];
        assert!(candidate(&elsewhere, "myregistry.azurecr.io", "shop/web", "t").is_err());
        let prefix = [image("myregistry.azurecr.io", "shop/web-old", Some("t"), Some(A))];
        assert!(candidate(&prefix, "myregistry.azurecr.io", "shop/web", "t").is_err());
        assert!(candidate(&[], "r", "shop/web", "t").unwrap_err().contains("it pushed no images"));
    }

    #[test]
    fn several_images_in_the_repository() {
        let outputs = [
            image("r.io", "shop/web", Some("latest"), Some(A)),
            image("r.io", "shop/web", Some("tidegate-x"), Some(B)),
        ];
        assert_eq!(
            candidate(&outputs, "r.io", "shop/web", "tidegate-x").unwrap().as_str(),
            B,
            "the Release's tag wins"
        );
        let ambiguous = candidate(&outputs, "r.io", "shop/web", "other").unwrap_err();
        assert!(ambiguous.contains("ambiguous"), "{ambiguous}");
        let same =
            [image("r.io", "shop/web", Some("latest"), Some(A)), image("r.io", "shop/web", Some("1.2"), Some(A))];
        assert_eq!(candidate(&same, "r.io", "shop/web", "other").unwrap().as_str(), A, "one digest, two tags");
    }

    #[test]
    fn a_digest_is_required_and_checked() {
        let missing = [image("r.io", "shop/web", Some("t"), None)];
        assert!(candidate(&missing, "r.io", "shop/web", "t").unwrap_err().contains("without a digest"));
        let bad = [image("r.io", "shop/web", Some("t"), Some("sha256:abc"))];
        assert!(candidate(&bad, "r.io", "shop/web", "t").unwrap_err().contains("invalid digest"));
    }
}
