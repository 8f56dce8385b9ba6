//! The workflow DAG: steps separated by `>>`, stages within a step by `,`.
//!
//! Owns: parsing the DAG string into ordered steps and the errors that need
//! nothing but the string (empty DAG, empty stage name, stage listed twice).
//! Must not: know which stages are configured; the format loaders check that.

use serde::Serialize;

/// Stages that run together (in parallel).
pub type Step = Vec<String>;

/// The workflow: steps run one after the other, the stages of a step in
/// parallel. Stage names are as written (trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Dag {
    /// The steps in the order they run.
    pub steps: Vec<Step>,
}

impl Dag {
    /// Every stage in DAG order.
    pub fn stages(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().flatten().map(String::as_str)
    }

    /// Whether `stage` appears in any step.
    pub fn contains(&self, stage: &str) -> bool {
        self.stages().any(|s| s == stage)
    }
}

/// Parse a DAG such as `prepare >> train_svm, train_rf >> serve`.
///
/// Returns every error found (each a message without the DAG itself), not
/// just the first.
pub fn parse_dag(s: &str) -> Result<Dag, Vec<String>> {
    let (dag, errors) = parse_dag_lenient(s);
    if errors.is_empty() {
        Ok(dag)
    } else {
        Err(errors)
    }
}

/// The most stages a DAG may name; more is refused before the DAG is
/// checked (the checks compare every stage with every other).
pub const MAX_DAG_STAGES: usize = 500;

/// Parse as much of the DAG as possible: the stages that are usable (empty
/// names and repeats dropped) and every error, so that validation can go on
/// checking the stages that were named.
pub(crate) fn parse_dag_lenient(s: &str) -> (Dag, Vec<String>) {
    let mut errors = Vec::new();
    let mut dag = Dag::default();
    if s.trim().is_empty() {
        errors.push("must not be empty".to_owned());
        return (dag, errors);
    }
    let named: usize = s.split(">>").map(|step| step.split(',').count()).sum();
    if named > MAX_DAG_STAGES {
        errors.push(format!(
            "names {named} stages, more than the {MAX_DAG_STAGES} a workflow may have"
        ));
        return (dag, errors);
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, step) in s.split(">>").enumerate() {
        let mut stages = Step::new();
        for name in step.split(',').map(str::trim) {
            if name.is_empty() {
                let message = format!("empty stage name in step {}", i + 1);
                if !errors.contains(&message) {
                    errors.push(message);
                }
            } else if seen.contains(&name) {
                let message = format!("stage \"{name}\" is listed twice");
                if !errors.contains(&message) {
                    errors.push(message);
                }
            } else {
                seen.push(name);
                stages.push(name.to_owned());
            }
        }
        if !stages.is_empty() {
            dag.steps.push(stages);
        }
    }
    (dag, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(dag: &Dag) -> Vec<Vec<&str>> {
        dag.steps
            .iter()
            .map(|s| s.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn parses_steps_and_parallel_stages() {
        let dag = parse_dag(" prepare >> train_svm,train_rf  >>choose>> serve ").unwrap();
        assert_eq!(
            steps(&dag),
            vec![
                vec!["prepare"],
                vec!["train_svm", "train_rf"],
                vec!["choose"],
                vec!["serve"]
            ]
        );
        assert_eq!(dag.stages().count(), 5);
        assert!(dag.contains("choose"));
        assert!(!dag.contains("nope"));
    }

    #[test]
    fn single_stage() {
        assert_eq!(
            steps(&parse_dag("scoring-service").unwrap()),
            vec![vec!["scoring-service"]]
        );
    }

    #[test]
    fn empty_dag_is_an_error() {
        assert_eq!(parse_dag("  ").unwrap_err(), vec!["must not be empty"]);
    }

    #[test]
    fn reports_every_error() {
        let errors = parse_dag("a >> , b >> a >> ").unwrap_err();
        assert_eq!(
            errors,
            vec![
                "empty stage name in step 2",
                "stage \"a\" is listed twice",
                "empty stage name in step 4",
            ]
        );
    }

    #[test]
    fn more_stages_than_the_limit_is_one_error_before_any_check() {
        let names: Vec<String> = (0..60_000).map(|i| format!("s{i}")).collect();
        assert_eq!(
            parse_dag(&names.join(" >> ")).unwrap_err(),
            ["names 60000 stages, more than the 500 a workflow may have"]
        );
        let just = names[..MAX_DAG_STAGES].join(", ");
        assert_eq!(parse_dag(&just).unwrap().steps[0].len(), MAX_DAG_STAGES);
    }

    #[test]
    fn lenient_parse_keeps_usable_stages() {
        let (dag, errors) = parse_dag_lenient("a, a >> >> b");
        assert_eq!(steps(&dag), vec![vec!["a"], vec!["b"]]);
        assert_eq!(errors.len(), 2);
    }
}
