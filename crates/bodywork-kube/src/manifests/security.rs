//! The security context of every pod bodywork creates (stage Jobs and
//! Deployments, cron and detached workflow Jobs): what the `restricted`
//! Pod Security Standard requires, so that bodywork runs in a namespace
//! labelled `pod-security.kubernetes.io/enforce=restricted`.
//!
//! Owns: the user pods run as and their privileges. Must not: decide
//! anything else about a pod.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};

/// The user (and group) bodywork's image runs as: the Dockerfile's
/// `bodywork` (`useradd --uid 1000`, its own group 1000), whose home
/// holds `BODYWORK_HOME`. Numeric, so that the kubelet can check
/// `runAsNonRoot` without reading the image.
pub const IMAGE_UID: i64 = 1000;

/// `spec` with the `restricted` profile's settings: the pod runs as
/// [`IMAGE_UID`] (`runAsNonRoot`, its group and `fsGroup` too, so its
/// volumes are the user's), seccomp `RuntimeDefault`; each container
/// without privilege escalation and with every capability dropped.
pub fn restricted(mut spec: PodSpec) -> PodSpec {
    spec.security_context = Some(PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(IMAGE_UID),
        run_as_group: Some(IMAGE_UID),
        fs_group: Some(IMAGE_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    });
    for c in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        c.security_context = Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        });
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    #[test]
    fn every_container_runs_as_the_images_user_without_privileges() {
        let spec = restricted(PodSpec {
            init_containers: Some(vec![Container {
                name: "init".into(),
                ..Container::default()
            }]),
            containers: vec![Container {
                name: "bodywork".into(),
                ..Container::default()
            }],
            ..PodSpec::default()
        });
        let pod = spec.security_context.as_ref().expect("pod context");
        assert_eq!(pod.run_as_non_root, Some(true));
        assert_eq!(
            (pod.run_as_user, pod.run_as_group, pod.fs_group),
            (Some(1000), Some(1000), Some(1000))
        );
        assert_eq!(
            pod.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers);
        for c in containers {
            let sc = c.security_context.as_ref().expect("container context");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            let drop = sc.capabilities.as_ref().and_then(|c| c.drop.clone());
            assert_eq!(drop, Some(vec!["ALL".to_string()]), "{}", c.name);
            // Nothing the restricted profile forbids.
            assert_eq!(sc.privileged, None);
            assert_eq!(sc.capabilities.as_ref().and_then(|c| c.add.clone()), None);
        }
    }
}
