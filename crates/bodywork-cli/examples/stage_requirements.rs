//! What each stage of each project installs, for
//! `scripts/check-image-requirements`: one JSON line per stage,
//! `{"dir", "project", "stage", "requirements"}`, where `requirements` are
//! the stage's lines as bodywork's environment builder installs them
//! (normalised, plus the packages every Bodywork container had, see
//! `bodywork_pyenv::with_container_base`). Projects are loaded by
//! bodywork's own loader, so both formats read as `bodywork` reads them.
//!
//! Usage: `cargo run -q -p bodywork-cli --example stage_requirements -- DIR...`
//! Exit 1 (after the other projects) when a project does not load.

use std::path::Path;
use std::process::ExitCode;

use bodywork_config::{LoadOptions, load_project};
use bodywork_pyenv::with_container_base;

fn main() -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for dir in std::env::args().skip(1) {
        let loaded = load_project(
            Path::new(&dir),
            &LoadOptions {
                file: None,
                check_files: false,
            },
        );
        let Some(project) = loaded.project else {
            eprintln!("stage_requirements: {dir} does not load:");
            for problem in loaded.problems.iter().filter(|p| p.is_error()) {
                eprintln!("  {problem}");
            }
            status = ExitCode::FAILURE;
            continue;
        };
        for stage in project.stages.values() {
            let line = serde_json::json!({
                "dir": dir,
                "project": project.name,
                "stage": stage.name,
                "requirements": with_container_base(&stage.requirements),
            });
            println!("{line}");
        }
    }
    status
}
