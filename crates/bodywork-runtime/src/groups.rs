//! Secret groups (Bodywork 3): secrets kept together under a group name, in
//! one namespace of their own, and copied into a deployment's namespace
//! when its project (`pipeline.secrets_group`) or its command (`--group`)
//! names the group, as Bodywork 3 does.
//!
//! Owns: the rules of groups (create vs. update, a group with no secrets
//! does not exist) and the copy, written once against [`Resources`], so
//! both runtimes keep groups alike. Where a group's secret is kept is the
//! runtime's ([`Resources::put_group_secret`]): the local runtime keeps
//! `GROUP.NAME` in [`GROUPS_NAMESPACE`] (a group is a DNS-1123 label, so
//! the first `.` separates it); the Kubernetes runtime keeps what Bodywork
//! 3 keeps there, `GROUP-NAME` labelled `group=GROUP`, so that each reads
//! the other's. Must not: word anything for the user, or validate names
//! (the CLI does).

use crate::{ObjectKind, Resources, Result, RuntimeError, SecretData};

/// The namespace that holds every group's secrets (Bodywork 3's own).
pub const GROUPS_NAMESPACE: &str = "bodywork-deployment-jobs";

/// One secret of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSecret {
    pub group: String,
    /// Its name inside the group (and in a namespace it is copied into).
    pub name: String,
    pub data: SecretData,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

/// The name a group's secret is kept under in [`GROUPS_NAMESPACE`].
pub fn stored_name(group: &str, name: &str) -> String {
    format!("{group}.{name}")
}

/// The group and name of a secret kept in [`GROUPS_NAMESPACE`]; `None` for
/// one that belongs to no group.
pub fn parse_stored(stored: &str) -> Option<(&str, &str)> {
    stored
        .split_once('.')
        .filter(|(g, n)| !g.is_empty() && !n.is_empty())
}

fn missing(group: &str, name: &str) -> RuntimeError {
    RuntimeError::NotFound {
        kind: ObjectKind::Secret,
        name: format!("{name} (group {group})"),
        namespace: GROUPS_NAMESPACE.to_string(),
    }
}

/// Create a group's secret, or with `replace` replace it. Creating one that
/// exists, or replacing one that does not, is refused. The groups'
/// namespace is set up the first time.
pub async fn put(
    res: &dyn Resources,
    group: &str,
    name: &str,
    data: SecretData,
    replace: bool,
) -> Result<()> {
    let exists = list(res, Some(group)).await?.iter().any(|s| s.name == name);
    match (exists, replace) {
        (true, false) => {
            return Err(RuntimeError::conflict(format!(
                "secret {name} already exists in group {group}"
            ))
            .with_hint("use `bodywork update secret` to change it"));
        }
        (false, true) => return Err(missing(group, name)),
        _ => {}
    }
    if !res.namespace_exists(GROUPS_NAMESPACE).await? {
        res.setup_namespace(GROUPS_NAMESPACE).await?;
    }
    res.put_group_secret(group, name, data).await
}

/// Every group's secrets, or one group's, by group then name.
pub async fn list(res: &dyn Resources, group: Option<&str>) -> Result<Vec<GroupSecret>> {
    let mut out: Vec<GroupSecret> = res
        .list_group_secrets()
        .await?
        .into_iter()
        .filter(|s| group.is_none_or(|want| want == s.group))
        .collect();
    out.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    Ok(out)
}

/// Delete one secret of a group.
pub async fn delete(res: &dyn Resources, group: &str, name: &str) -> Result<()> {
    match res.delete_group_secret(group, name).await {
        Err(RuntimeError::NotFound { .. }) => Err(missing(group, name)),
        other => other,
    }
}

/// Delete a whole group; returns the names of its secrets. A group with
/// no secrets does not exist.
pub async fn delete_group(res: &dyn Resources, group: &str) -> Result<Vec<String>> {
    let secrets = list(res, Some(group)).await?;
    if secrets.is_empty() {
        return Err(RuntimeError::NotFound {
            kind: ObjectKind::Secret,
            name: format!("group {group}"),
            namespace: GROUPS_NAMESPACE.to_string(),
        });
    }
    for s in &secrets {
        delete(res, group, &s.name).await?;
    }
    Ok(secrets.into_iter().map(|s| s.name).collect())
}

/// Copy a group's secrets into `namespace` under their names in the group,
/// replacing secrets of those names there; returns the names copied.
pub async fn copy_into(res: &dyn Resources, group: &str, namespace: &str) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    for s in list(res, Some(group)).await? {
        res.create_secret(namespace, &s.name, s.data).await?;
        copied.push(s.name);
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::namespace::{NamespaceDeletion, NamespaceGone, NamespaceSetup};
    use crate::{Secret, ServiceStatus};

    /// Namespaces and their secrets, in memory.
    #[derive(Default)]
    struct Memory(Mutex<BTreeMap<String, BTreeMap<String, SecretData>>>);

    #[async_trait]
    impl Resources for Memory {
        fn name(&self) -> &'static str {
            "memory"
        }
        async fn setup_namespace(&self, ns: &str) -> Result<NamespaceSetup> {
            let mut all = self.0.lock().unwrap();
            let existed = all.contains_key(ns);
            all.entry(ns.into()).or_default();
            Ok(NamespaceSetup {
                namespace: ns.into(),
                existed,
                adopted: false,
            })
        }
        async fn namespace_exists(&self, ns: &str) -> Result<bool> {
            Ok(self.0.lock().unwrap().contains_key(ns))
        }
        async fn list_namespaces(&self) -> Result<Vec<String>> {
            Ok(self.0.lock().unwrap().keys().cloned().collect())
        }
        async fn delete_namespace(&self, ns: &str) -> Result<NamespaceDeletion> {
            self.0.lock().unwrap().remove(ns);
            Ok(NamespaceDeletion {
                namespace: ns.into(),
                outcome: NamespaceGone::Absent,
                binding_deleted: false,
            })
        }
        async fn create_secret(&self, ns: &str, name: &str, data: SecretData) -> Result<()> {
            let mut all = self.0.lock().unwrap();
            let Some(secrets) = all.get_mut(ns) else {
                return Err(RuntimeError::NotFound {
                    kind: ObjectKind::Namespace,
                    name: ns.into(),
                    namespace: ns.into(),
                });
            };
            secrets.insert(name.into(), data);
            Ok(())
        }
        async fn delete_secret(&self, ns: &str, name: &str) -> Result<()> {
            let mut all = self.0.lock().unwrap();
            match all.get_mut(ns).and_then(|s| s.remove(name)) {
                Some(_) => Ok(()),
                None => Err(RuntimeError::NotFound {
                    kind: ObjectKind::Secret,
                    name: name.into(),
                    namespace: ns.into(),
                }),
            }
        }
        async fn list_secrets(&self, ns: &str) -> Result<Vec<Secret>> {
            let all = self.0.lock().unwrap();
            Ok(all
                .get(ns)
                .into_iter()
                .flatten()
                .map(|(name, data)| Secret {
                    namespace: ns.into(),
                    name: name.clone(),
                    data: data.clone(),
                    created: None,
                })
                .collect())
        }
        async fn list_services(&self, _: &str) -> Result<Vec<ServiceStatus>> {
            Ok(vec![])
        }
        async fn delete_service(&self, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
    }

    fn data(k: &str, v: &str) -> SecretData {
        BTreeMap::from([(k.to_string(), v.to_string())])
    }

    #[tokio::test]
    async fn groups_keep_their_secrets_apart_and_copy_only_their_own() {
        let res = Memory::default();
        put(&res, "dev", "creds", data("USER", "dev-user"), false)
            .await
            .unwrap();
        put(&res, "prod", "creds", data("USER", "prod-user"), false)
            .await
            .unwrap();
        put(&res, "dev-eu", "x", data("K", "v"), false)
            .await
            .unwrap();
        // Created twice is refused; update replaces; update of nothing is refused.
        assert!(matches!(
            put(&res, "dev", "creds", data("USER", "again"), false).await,
            Err(RuntimeError::Conflict(_))
        ));
        put(&res, "dev", "creds", data("USER", "dev-user-2"), true)
            .await
            .unwrap();
        assert!(matches!(
            put(&res, "dev", "nope", data("A", "b"), true).await,
            Err(RuntimeError::NotFound { .. })
        ));

        let dev = list(&res, Some("dev")).await.unwrap();
        assert_eq!(dev.len(), 1);
        assert_eq!(dev[0].data["USER"], "dev-user-2");
        assert_eq!(list(&res, None).await.unwrap().len(), 3);

        res.setup_namespace("ml").await.unwrap();
        assert_eq!(copy_into(&res, "dev", "ml").await.unwrap(), ["creds"]);
        let copied = res.list_secrets("ml").await.unwrap();
        assert_eq!(copied.len(), 1);
        assert_eq!(copied[0].name, "creds");
        assert_eq!(copied[0].data["USER"], "dev-user-2");

        assert_eq!(delete_group(&res, "dev").await.unwrap(), ["creds"]);
        assert!(list(&res, Some("dev")).await.unwrap().is_empty());
        assert_eq!(list(&res, Some("dev-eu")).await.unwrap().len(), 1);
        assert!(delete_group(&res, "dev").await.is_err());
        assert!(delete(&res, "prod", "nope").await.is_err());
        delete(&res, "prod", "creds").await.unwrap();
    }

    #[test]
    fn stored_names_split_at_the_first_dot() {
        assert_eq!(
            parse_stored(&stored_name("dev-eu", "a-b")),
            Some(("dev-eu", "a-b"))
        );
        assert_eq!(parse_stored("plain"), None);
        assert_eq!(parse_stored(".x"), None);
    }
}
