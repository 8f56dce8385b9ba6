//! Test fixtures shared by this crate's unit tests.

use bodywork_plan::{EnvVar, StagePlan, StagePlanKind};

use crate::process::StageCommand;

/// Batch stage `s` of project `p` running `s/main.py --x` with `env`.
pub fn stage(env: Vec<EnvVar>) -> StagePlan {
    StagePlan {
        stage: "s".into(),
        resource_name: "p--s".into(),
        executable: "s/main.py".into(),
        working_dir: "s".into(),
        notebook: false,
        args: vec!["a b".into(), "--x".into()],
        requirements: vec![],
        cpu_request: None,
        memory_request_mb: None,
        env,
        kind: StagePlanKind::Batch {
            max_completion_time_seconds: 10,
            retries: 0,
        },
    }
}

/// `/bin/sh -c SCRIPT` with nothing but a PATH.
pub fn sh(script: &str) -> StageCommand {
    StageCommand {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: std::env::temp_dir(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
    }
}
