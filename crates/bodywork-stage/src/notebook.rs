//! Headless execution of `.ipynb` stages with nothing but the standard
//! library: the notebook's code cells run in order in one namespace, as
//! `jupyter nbconvert --execute` would, without needing Jupyter installed.
//! IPython magics (`%...`) and shell escapes (`!...`) are not supported and
//! fail the stage with a message saying so.
//!
//! Must not: need anything but the standard library in the stage's
//! environment (it runs with the stage's own interpreter).

use std::path::{Path, PathBuf};

/// The runner, written into `$BODYWORK_HOME/tools` and run as
/// `python RUNNER NOTEBOOK ARGS...`.
pub const RUNNER: &str = r#"
import json, sys

def main():
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    namespace = {"__name__": "__main__", "__file__": path}
    for number, cell in enumerate(nb.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        for line in source.splitlines():
            if line.lstrip().startswith(("%", "!")):
                sys.exit(f"{path}: cell {number} uses IPython syntax ({line.strip()!r}), which headless runs do not support")
        exec(compile(source, f"{path} [cell {number}]", "exec"), namespace)

main()
"#;

/// Write the runner once (idempotent) and return its path.
pub fn install(tools_dir: &Path) -> std::io::Result<PathBuf> {
    let path = tools_dir.join("run_notebook.py");
    std::fs::create_dir_all(tools_dir)?;
    crate::files::write_if_changed(&path, RUNNER)?;
    Ok(path)
}
