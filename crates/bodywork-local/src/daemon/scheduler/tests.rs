//! The scheduler's behaviour on tokio's paused clock: a fake [`Host`] whose
//! runs take the time a test gives them, and a clock that moves with
//! tokio's. A sleep here passes at once on the paused clock, so minutes of
//! schedule take milliseconds.

use std::collections::VecDeque;
use std::sync::Mutex;

use bodywork_runtime::CronJobSpec;
use bodywork_state::{CronRunRow, NewRun};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::cron::Clock;
use crate::store::SharedStore;

/// The wall time when the test began, moved on by tokio's (paused) clock.
struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default()
    }
}

/// One run the fake host drove, in clock time.
#[derive(Debug, Clone)]
struct Attempt {
    id: i64,
    started: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
}

/// What the fake hosts of one test share, as the daemons of one home do.
#[derive(Default)]
struct Record {
    /// How the next runs go, in order: how long each takes and how it ends;
    /// once empty, runs end at once and succeed.
    script: VecDeque<(Duration, RunState)>,
    attempts: Vec<Attempt>,
    going: usize,
    most_at_once: usize,
    logs_removed: Vec<i64>,
}

/// A daemon as the scheduler sees it: the state in a temporary directory,
/// runs that only take time.
struct Fake {
    store: SharedStore,
    cron: CronHandle,
    record: Arc<Mutex<Record>>,
}

impl Host for Fake {
    type Run = i64;

    fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, RuntimeError> {
        self.store.with(f).map_err(RuntimeError::from)
    }

    fn cron(&self) -> &CronHandle {
        &self.cron
    }

    fn prepare(
        &self,
        submission: &WorkflowSubmission,
        trigger: &RunTrigger,
    ) -> Result<i64, String> {
        let run = NewRun {
            namespace: submission.namespace.clone().unwrap_or_default(),
            project: None,
            repo: submission.repo.clone(),
            branch: None,
            commit: None,
            trigger: trigger.to_string(),
            log_path: "run.log".into(),
            options: bodywork_runtime::RunOptions::default(),
        };
        self.store
            .with(|s| s.insert_run(&run))
            .map_err(|e| e.to_string())
    }

    fn run_id(run: &i64) -> i64 {
        *run
    }

    fn cancel(_run: &i64) {}

    async fn execute(&self, run: i64, _submission: WorkflowSubmission) -> RunState {
        let (takes, status) = {
            let mut record = self.record.lock().expect("record");
            record.going += 1;
            record.most_at_once = record.most_at_once.max(record.going);
            record.attempts.push(Attempt {
                id: run,
                started: self.cron.clock.now(),
                finished: None,
            });
            record
                .script
                .pop_front()
                .unwrap_or((Duration::ZERO, RunState::Succeeded))
        };
        tokio::time::sleep(takes).await;
        self.store
            .with(|s| s.finish_run(run, status, None))
            .expect("finish run");
        let mut record = self.record.lock().expect("record");
        record.going -= 1;
        let now = self.cron.clock.now();
        if let Some(a) = record.attempts.iter_mut().find(|a| a.id == run) {
            a.finished = Some(now);
        }
        status
    }

    fn remove_run_logs(&self, runs: &[RunRow]) {
        let mut record = self.record.lock().expect("record");
        record.logs_removed.extend(runs.iter().map(|r| r.id));
    }
}

/// One home: its state, its clock, and the daemon (scheduler) running now.
struct Home {
    _dir: tempfile::TempDir,
    store: SharedStore,
    clock: Arc<TokioClock>,
    record: Arc<Mutex<Record>>,
    daemon: Arc<Fake>,
    task: JoinHandle<()>,
}

impl Home {
    /// A home with the namespace `ns` and its scheduler started.
    fn new() -> Home {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.db")).expect("store");
        store.create_namespace("ns").expect("namespace");
        let store = SharedStore::new(store);
        let clock = Arc::new(TokioClock {
            base: Utc::now(),
            start: tokio::time::Instant::now(),
        });
        let record = Arc::new(Mutex::new(Record::default()));
        let (daemon, task) = start_daemon(&store, &clock, &record);
        Home {
            _dir: dir,
            store,
            clock,
            record,
            daemon,
            task,
        }
    }

    /// Creates cron job `name` on `schedule` (seconds first) with `retries`.
    fn create(&self, name: &str, schedule: &str, retries: u32, history_limit: u32) {
        let job = CronJobSpec {
            namespace: "ns".into(),
            name: name.into(),
            schedule: schedule.into(),
            timezone: None,
            repo: "/src".into(),
            branch: None,
            retries,
            history_limit,
            secrets_group: None,
            resolve_as_of: None,
            python: None,
        };
        self.store
            .with(|s| s.create_cron_job(&job))
            .expect("cron job");
    }

    /// How the next runs go: each takes its seconds and ends with its status.
    fn script(&self, runs: &[(u64, RunState)]) {
        let mut record = self.record.lock().expect("record");
        for (secs, status) in runs {
            record
                .script
                .push_back((Duration::from_secs(*secs), *status));
        }
    }

    /// `bodywork cronjob trigger`.
    async fn trigger(&self, name: &str) -> Result<i64, RuntimeError> {
        let (reply, answer) = oneshot::channel();
        self.daemon
            .cron
            .commands
            .send(Command::Trigger {
                namespace: "ns".into(),
                name: name.into(),
                reply,
            })
            .map_err(|_| RuntimeError::unavailable("scheduler gone"))?;
        answer
            .await
            .map_err(|_| RuntimeError::unavailable("no answer"))?
    }

    /// Stops the daemon's scheduler.
    async fn stop(&mut self) {
        self.daemon.cron.stop();
        (&mut self.task).await.expect("scheduler ends");
    }

    /// Starts another daemon's scheduler on the same state.
    fn start(&mut self) {
        let (daemon, task) = start_daemon(&self.store, &self.clock, &self.record);
        self.daemon = daemon;
        self.task = task;
    }

    /// The cron job's history, oldest first.
    fn history(&self, name: &str) -> Vec<CronRunRow> {
        let mut entries = self
            .store
            .with(|s| s.list_cron_runs("ns", name, usize::MAX))
            .expect("history");
        entries.reverse();
        entries
    }

    /// The runs of the history (not the skipped entries), oldest first.
    fn runs(&self, name: &str) -> Vec<CronRunRow> {
        self.history(name)
            .into_iter()
            .filter(|e| !e.skipped)
            .collect()
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.record.lock().expect("record").attempts.clone()
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

fn start_daemon(
    store: &SharedStore,
    clock: &Arc<TokioClock>,
    record: &Arc<Mutex<Record>>,
) -> (Arc<Fake>, JoinHandle<()>) {
    let (cron, commands) = CronHandle::with_clock(clock.clone());
    let daemon = Arc::new(Fake {
        store: store.clone(),
        cron,
        record: record.clone(),
    });
    let task = tokio::spawn(run_scheduler(daemon.clone(), commands));
    (daemon, task)
}

/// Lets `time` pass on the paused clock (at once in wall time).
async fn pass(time: Duration) {
    tokio::time::sleep(time).await;
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn kinds(entries: &[CronRunRow]) -> Vec<CronRunKind> {
    entries.iter().map(|e| e.kind).collect()
}

#[tokio::test(start_paused = true)]
async fn runs_start_at_their_due_times_and_no_earlier() {
    let home = Home::new();
    home.create("every2", "*/2 * * * * *", 0, 100);
    pass(Duration::from_millis(10_500)).await;
    let runs = home.runs("every2");
    assert!((5..=6).contains(&runs.len()), "{runs:#?}");
    assert!(runs.iter().all(|e| e.kind == CronRunKind::Scheduled));
    let attempts = home.attempts();
    for (entry, attempt) in runs.iter().zip(&attempts) {
        // Due on an even second, started within a tick after it.
        assert_eq!(entry.scheduled.timestamp() % 2, 0, "{entry:?}");
        assert!(attempt.started >= entry.scheduled, "{entry:?} {attempt:?}");
        let late = attempt.started - entry.scheduled;
        assert!(late <= chrono::Duration::seconds(1), "{late}");
    }
    // Each due time once.
    let times: Vec<_> = runs.iter().map(|e| e.scheduled).collect();
    assert!(
        times
            .windows(2)
            .all(|w| w[1] - w[0] == chrono::Duration::seconds(2)),
        "{times:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn times_missed_while_the_daemon_is_down_make_one_catch_up_run() {
    let mut home = Home::new();
    home.create("every2", "*/2 * * * * *", 0, 100);
    pass(secs(5)).await;
    home.stop().await;
    let before = home.runs("every2").len();
    assert!(before >= 2, "{before}");
    let stopped = home.now();
    // Down for ten periods.
    pass(secs(20)).await;
    home.start();
    let restarted = home.now();
    pass(Duration::from_millis(500)).await;
    let history = home.history("every2");
    let caught_up: Vec<_> = history[before..].to_vec();
    assert_eq!(kinds(&caught_up), [CronRunKind::CatchUp], "{history:#?}");
    // The newest time missed, not the first.
    let missed = caught_up[0].scheduled;
    assert!(
        missed > restarted - chrono::Duration::seconds(2),
        "{missed}"
    );
    assert!(missed <= restarted && missed > stopped, "{missed}");
    // Then the schedule carries on as usual, with no second catch-up.
    pass(secs(6)).await;
    let history = home.history("every2");
    let after: Vec<_> = kinds(&history[before + 1..]);
    assert!(after.len() >= 2, "{history:#?}");
    assert!(
        after.iter().all(|k| *k == CronRunKind::Scheduled),
        "{history:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_run_is_retried_after_its_back_off_until_the_limit() {
    let home = Home::new();
    // A schedule that does not come during the test.
    home.create("broken", "0 0 0 1 1 *", 2, 10);
    home.script(&[
        (1, RunState::Failed),
        (1, RunState::Failed),
        (1, RunState::Failed),
    ]);
    let first = home.trigger("broken").await.expect("triggered");
    pass(secs(2)).await;
    // Backing off: the retry's time is known, and a trigger is refused.
    let key = ("ns".to_string(), "broken".to_string());
    let active = home.daemon.cron.active(&key).expect("a retry is pending");
    assert_eq!(active.run, Some(first));
    assert!(
        active.retry_at.is_some_and(|at| at > home.now()),
        "{active:?}"
    );
    let refused = home.trigger("broken").await;
    assert!(
        matches!(refused, Err(RuntimeError::Conflict(_))),
        "{refused:?}"
    );

    pass(secs(60)).await;
    let runs = home.runs("broken");
    let attempts: Vec<_> = runs.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(runs.iter().all(|e| e.kind == CronRunKind::Manual));
    assert!(
        runs.iter()
            .all(|e| { e.run.as_ref().is_some_and(|r| r.status == RunState::Failed) })
    );
    // 10 s before the first retry, 20 s before the second.
    let tried = home.attempts();
    let gap = |i: usize| {
        let ended = tried[i].finished.expect("finished");
        (tried[i + 1].started - ended).num_milliseconds()
    };
    assert!((10_000..11_000).contains(&gap(0)), "{tried:#?}");
    assert!((20_000..21_000).contains(&gap(1)), "{tried:#?}");
    assert_eq!(home.daemon.cron.active(&key), None);
    // No fourth run, however long.
    pass(secs(3600)).await;
    assert_eq!(home.runs("broken").len(), 3);
    assert_eq!(home.attempts().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_ends_the_retries() {
    let home = Home::new();
    home.create("flaky", "0 0 0 1 1 *", 3, 10);
    home.script(&[(0, RunState::Failed), (0, RunState::Succeeded)]);
    home.trigger("flaky").await.expect("triggered");
    pass(secs(600)).await;
    let runs = home.runs("flaky");
    let ended: Vec<_> = runs
        .iter()
        .map(|e| (e.attempt, e.run.as_ref().map(|r| r.status)))
        .collect();
    assert_eq!(
        ended,
        [(1, Some(RunState::Failed)), (2, Some(RunState::Succeeded))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_due_run_is_skipped_while_one_is_going() {
    let home = Home::new();
    home.create("slow", "* * * * * *", 0, 100);
    home.script(&[(3, RunState::Succeeded), (3, RunState::Succeeded)]);
    pass(Duration::from_millis(6_500)).await;
    let most_at_once = home.record.lock().expect("record").most_at_once;
    assert_eq!(most_at_once, 1, "never two runs of one cron job at once");
    let history = home.history("slow");
    let skipped: Vec<_> = history.iter().filter(|e| e.skipped).collect();
    assert!(skipped.len() >= 3, "{history:#?}");
    // Each skip names the run that was going.
    let ran: Vec<i64> = home.attempts().iter().map(|a| a.id).collect();
    assert!(
        skipped
            .iter()
            .all(|e| e.skipped_for.is_some_and(|id| ran.contains(&id))),
        "{history:#?}"
    );
    // Every due time is dealt with once: run or skipped.
    let times: Vec<_> = history.iter().map(|e| e.scheduled).collect();
    assert!(times.windows(2).all(|w| w[1] > w[0]), "{times:?}");
    let refused = home.trigger("slow").await;
    assert!(
        matches!(refused, Err(RuntimeError::Conflict(_))),
        "{refused:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pending_retry_is_taken_up_after_a_restart() {
    let mut home = Home::new();
    home.create("broken", "0 0 0 1 1 *", 1, 10);
    home.script(&[(0, RunState::Failed), (0, RunState::Failed)]);
    home.trigger("broken").await.expect("triggered");
    pass(secs(2)).await;
    assert_eq!(home.runs("broken").len(), 1);
    // Restarted during the 10 s back-off: the new daemon retries.
    home.stop().await;
    pass(secs(1)).await;
    home.start();
    pass(Duration::from_millis(10)).await;
    let key = ("ns".to_string(), "broken".to_string());
    let pending = home.daemon.cron.active(&key).expect("retry pending");
    assert!(pending.retry_at.is_some(), "{pending:?}");
    pass(secs(60)).await;
    let runs = home.runs("broken");
    let attempts: Vec<_> = runs.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, [1, 2]);
    let tried = home.attempts();
    let waited = tried[1].started - tried[0].finished.expect("finished");
    assert!(waited >= chrono::Duration::seconds(9), "{tried:#?}");
    pass(secs(3600)).await;
    assert_eq!(home.attempts().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn only_the_newest_runs_are_kept_with_their_logs() {
    let home = Home::new();
    home.create("quick", "* * * * * *", 0, 2);
    pass(Duration::from_millis(5_500)).await;
    let kept: Vec<i64> = home.runs("quick").iter().filter_map(|e| e.run_id).collect();
    let ran: Vec<i64> = home.attempts().iter().map(|a| a.id).collect();
    assert!(ran.len() >= 4, "{ran:?}");
    assert_eq!(kept, ran[ran.len() - 2..]);
    let logs_removed = home.record.lock().expect("record").logs_removed.clone();
    assert_eq!(logs_removed, ran[..ran.len() - 2]);
    for pruned in &ran[..ran.len() - 2] {
        assert_eq!(home.store.with(|s| s.get_run(*pruned)).ok().flatten(), None);
    }
}
