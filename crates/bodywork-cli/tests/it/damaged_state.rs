//! A damaged `state.db`, end to end with the real binary: every command
//! fails with one error naming the file and what to do, and none writes a
//! byte into it.

use std::process::Command;
use std::time::Duration;

use crate::helper;
use crate::helper::TestHome;

#[test]
fn with_a_corrupt_page_in_state_db_every_command_fails_and_writes_nothing() {
    let home = TestHome::new();
    home.namespace("ns");
    for name in ["one", "two", "three"] {
        home.ok(&[
            "secret",
            "create",
            "--namespace",
            "ns",
            "--name",
            name,
            "--data",
            "KEY=value",
        ]);
    }
    let daemon = home.daemon_pid().expect("daemon pid");
    home.ok(&["daemon", "--stop"]);
    helper::wait_for("the daemon to exit", Duration::from_secs(20), || {
        !helper::is_alive(daemon as u32)
    });
    // Everything in the file itself, none in a write-ahead log.
    let db = home.root().join("state.db");
    let checkpoint = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys\nsqlite3.connect(sys.argv[1]).execute('PRAGMA wal_checkpoint(TRUNCATE)')")
        .arg(&db)
        .status()
        .expect("python3");
    assert!(checkpoint.success());

    // One page in the middle of the file, overwritten.
    let mut bytes = std::fs::read(&db).expect("state.db");
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let middle = bytes.len() / page / 2;
    assert!(middle >= 2, "a state of {} bytes", bytes.len());
    bytes[middle * page..(middle + 1) * page].fill(0x5A);
    std::fs::write(&db, &bytes).expect("damage state.db");

    let project = helper::TestProject::new(&[
        ("job.py", "print('ran')\n"),
        (
            "bodywork.yaml",
            &helper::yaml(
                "p",
                "job",
                "",
                &[helper::batch_stage("job", "job.py", 30, 0, "")],
            ),
        ),
    ]);
    let expected = format!("the state database {} is damaged", db.display());
    for args in [
        &["secret", "display", "--namespace", "ns"][..],
        &["setup-namespace", "other"],
        &["runs", "--namespace", "ns"],
        &["workflow", "--namespace", "ns", project.arg()],
    ] {
        let run = home.run(args);
        run.expect_code(1)
            .expect_output(&expected)
            .expect_output(&format!("mv {0} {0}.damaged", db.display()));
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("is damaged"))
            .collect();
        assert_eq!(errors.len(), 1, "one line:\n{run}");
        assert!(
            std::fs::read(&db).expect("state.db") == bytes,
            "bodywork {args:?} changed state.db"
        );
    }
}
