//! The image stage containers run: the project's `DOCKER_IMAGE`, unless
//! `--image` overrides it or it names the legacy Python image; and when a
//! node pulls it again.
//!
//! Owns: that choice, the note logged about it and the pull policy. Must
//! not: pull or check images.

/// The image our containers run when the project names none of its own.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/bodywork-ml/bodywork-rs:",
    env!("CARGO_PKG_VERSION")
);
/// The Python-era image that projects written for Bodywork 2/3 name.
pub const LEGACY_IMAGE: &str = "bodyworkml/bodywork-core";

/// The image stages run in, and a log line when it is not the one written
/// in the project: `--image` wins; the legacy Python image maps to ours.
pub fn resolve_image(
    project_image: &str,
    override_image: Option<&str>,
) -> (String, Option<String>) {
    if let Some(image) = override_image {
        return (
            image.to_string(),
            Some(format!(
                "using image={image} (--image) instead of DOCKER_IMAGE={project_image}"
            )),
        );
    }
    let bare = project_image
        .strip_prefix("docker.io/")
        .unwrap_or(project_image);
    let repo = bare.split([':', '@']).next().unwrap_or(bare);
    if repo == LEGACY_IMAGE || project_image.trim().is_empty() {
        return (
            DEFAULT_IMAGE.to_string(),
            Some(format!(
                "DOCKER_IMAGE={project_image} names the legacy Python image; using image={DEFAULT_IMAGE}"
            )),
        );
    }
    (project_image.to_string(), None)
}

/// Tags that name a different image over time: `latest` (also what an
/// image without a tag means) and `edge`, which this repository's CI
/// publishes from main (`.github/workflows/image.yml`).
const MUTABLE_TAGS: &[&str] = &["latest", "edge"];

/// The `imagePullPolicy` of a container running `image`: `Always` for a
/// mutable tag, so that a node runs what the tag names now rather than what
/// it pulled the first time (a pod of the next `:edge` would otherwise keep
/// the old binary); `IfNotPresent` for a digest or any other tag (a
/// release's tag is not moved), which spares a registry round trip.
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag follows the last `:` of the last path component: a registry's
    // `host:port/` is not a tag.
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if !MUTABLE_TAGS.contains(&tag) => "IfNotPresent",
        _ => "Always",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutable_tags_are_pulled_always_releases_and_digests_if_not_present() {
        for image in [
            "ghcr.io/bodywork-ml/bodywork-rs:edge",
            "ghcr.io/bodywork-ml/bodywork-rs:latest",
            "ghcr.io/bodywork-ml/bodywork-rs",
            "bodywork",
            "localhost:5000/bodywork",
            "localhost:5000/bodywork:edge",
        ] {
            assert_eq!(pull_policy(image), "Always", "{image}");
        }
        for image in [
            DEFAULT_IMAGE,
            "ghcr.io/bodywork-ml/bodywork-rs:0.1.0",
            "localhost:5000/bodywork:0.1.0",
            "registry.example/bodywork:dev",
            "ghcr.io/bodywork-ml/bodywork-rs@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "ghcr.io/bodywork-ml/bodywork-rs:edge@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(pull_policy(image), "IfNotPresent", "{image}");
        }
    }

    #[test]
    fn legacy_image_maps_to_ours_and_override_wins() {
        let (img, note) = resolve_image("bodyworkml/bodywork-core:latest", None);
        assert_eq!(img, DEFAULT_IMAGE);
        assert!(note.is_some_and(|n| n.contains("legacy")));
        let (img, _) = resolve_image("docker.io/bodyworkml/bodywork-core:3.0", None);
        assert_eq!(img, DEFAULT_IMAGE);
        let (img, note) = resolve_image("example.com/me/mine:1", None);
        assert_eq!((img.as_str(), note), ("example.com/me/mine:1", None));
        let (img, note) = resolve_image("bodyworkml/bodywork-core:latest", Some("me/x:dev"));
        assert_eq!(img, "me/x:dev");
        assert!(note.is_some_and(|n| n.contains("--image")));
        // A look-alike name is not the legacy image.
        let (img, _) = resolve_image("bodyworkml/bodywork-core-fork:1", None);
        assert_eq!(img, "bodyworkml/bodywork-core-fork:1");
    }
}
