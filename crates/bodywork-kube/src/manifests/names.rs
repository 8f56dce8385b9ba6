//! Names the API server would refuse, found before anything is applied:
//! a Service name must be a DNS-1035 label (a lower-case letter first,
//! then letters, digits and `-`, not ending in `-`, at most 63 characters);
//! a Job's name becomes the value of its pods' `job-name` label, so it may
//! not be longer than 63 characters either.
//!
//! Must not: change a name (a different name would be a different service
//! to the project's other stages); it only says what is wrong.

use bodywork_plan::{StagePlanKind, WorkflowPlan};

/// The longest name a label value (and so a Job) or a DNS-1035 label (a
/// Service) may have.
pub const MAX_LABEL: usize = 63;

/// Why `name` is not a valid Service name, if it is not.
pub fn service_name_problem(name: &str) -> Option<String> {
    let len = name.chars().count();
    let why = if len > MAX_LABEL {
        format!("is {len} characters long; Kubernetes allows at most {MAX_LABEL}")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        "must start with a lower-case letter (a DNS-1035 label)".to_string()
    } else if name.ends_with('-') {
        "must not end with '-'".to_string()
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        format!("may only contain lower-case letters, digits and '-' (not {bad})")
    } else {
        return None;
    };
    Some(format!("service name {name} {why}"))
}

/// Every name of `plan` the API server would refuse, one line each.
pub fn name_problems(plan: &WorkflowPlan) -> Vec<String> {
    let mut out = Vec::new();
    for stage in plan.stages().chain(plan.on_failure.iter()) {
        match &stage.kind {
            StagePlanKind::Service { service_name, .. } => {
                out.extend(service_name_problem(service_name));
            }
            StagePlanKind::Batch { .. } => {
                let len = stage.resource_name.chars().count();
                if len > MAX_LABEL {
                    out.push(format!(
                        "Job name {} (stage {}) is {len} characters long; Kubernetes allows at \
                         most {MAX_LABEL}: shorten the project or the stage name",
                        stage.resource_name, stage.stage
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_dns_1035_labels() {
        assert_eq!(service_name_problem("scoring-service"), None);
        assert_eq!(
            service_name_problem("bodywork-serve-model-project--scoring-service"),
            None
        );
        let long = "a".repeat(64);
        assert!(
            service_name_problem(&long).is_some_and(|p| p.contains("64 characters")),
            "64 is too long"
        );
        assert_eq!(service_name_problem(&"a".repeat(63)), None);
        assert!(service_name_problem("2-serve").is_some_and(|p| p.contains("start with")));
        assert!(service_name_problem("serve-").is_some());
        assert!(service_name_problem("serve.model").is_some_and(|p| p.contains("(not .)")));
    }
}
