//! Environments made ahead of their stage (`Runtime::prepare_ahead`).
//!
//! Owns: the builds started ahead, by run and stage, and what each says
//! while nobody reads it. When its stage comes, the stage takes the build:
//! the lines kept so far go to the stage's log in order, with their own
//! times, then the build's further lines as they come, and its result is
//! the stage's environment. So a run's log reads the same as when the
//! stage builds the environment itself. Must not: build anything itself
//! (`bodywork_stage::ensure_python` does).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bodywork_pyenv::{BuildStop, Env};
use bodywork_runtime::{EventSink, Level, Log, LogEvent};
use bodywork_stage::PythonError;
use tokio::task::JoinHandle;

/// How many of a build's first events are kept while nobody reads them
/// (the stage's resolution, the Python chosen, the installer's start).
const HEAD: usize = 32;
/// How many of its last events are kept (the installer's summary, the
/// environment's lock); those between are counted and left out.
const TAIL: usize = 480;
/// A build nobody took (its stage did not run) is forgotten this long
/// after it started.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// What a build made ahead says, kept until its stage takes it, then
/// forwarded to the stage's log.
#[derive(Default)]
pub(crate) struct Buffered {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    head: Vec<LogEvent>,
    tail: VecDeque<LogEvent>,
    /// Events dropped between `head` and `tail`.
    left_out: usize,
    /// The stage's log, once it took the build.
    sink: Option<Log>,
}

impl Buffered {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write what was kept to `sink`, in order, and from now on every
    /// event as it comes.
    pub(crate) fn attach(&self, sink: Log) {
        let mut state = self.state();
        for event in std::mem::take(&mut state.head) {
            sink.event(event);
        }
        if state.left_out > 0 {
            sink.log(
                Level::Info,
                "environment",
                &format!(
                    "… {} lines of the environment's build left out",
                    state.left_out
                ),
            );
            state.left_out = 0;
        }
        for event in std::mem::take(&mut state.tail) {
            sink.event(event);
        }
        state.sink = Some(sink);
    }

    fn push(&self, event: LogEvent) {
        let mut state = self.state();
        if let Some(sink) = &state.sink {
            sink.event(event);
        } else if state.head.len() < HEAD {
            state.head.push(event);
        } else {
            if state.tail.len() == TAIL {
                state.tail.pop_front();
                state.left_out += 1;
            }
            state.tail.push_back(event);
        }
    }
}

impl EventSink for Buffered {
    fn event(&self, event: LogEvent) {
        self.push(event);
    }
}

/// One environment being made ahead: what it says and its result.
pub(crate) struct Ahead {
    log: Arc<Buffered>,
    stop: BuildStop,
    task: JoinHandle<Result<Env, PythonError>>,
    started: Instant,
}

impl Ahead {
    /// Send what the build said, and says from now on, to `log`, and wait
    /// for its environment.
    pub(crate) async fn take(self, log: &Log) -> Result<Env, PythonError> {
        self.log.attach(log.clone());
        self.task
            .await
            .map_err(|e| PythonError::Task(e.to_string()))?
    }
}

/// The builds made ahead of their stages, by run id and stage name.
#[derive(Default)]
pub(crate) struct AheadBuilds {
    builds: Mutex<HashMap<(String, String), Ahead>>,
    /// The stops of the builds taken by their stages, by run.
    taken: Mutex<HashMap<String, Vec<BuildStop>>>,
}

impl AheadBuilds {
    fn builds(&self) -> MutexGuard<'_, HashMap<(String, String), Ahead>> {
        self.builds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start `build` for stage `stage` of run `run`, its lines kept in the
    /// log it is given until the stage takes it.
    pub(crate) fn start<F>(
        &self,
        run: &str,
        stage: &str,
        stop: BuildStop,
        build: impl FnOnce(Log) -> F,
    ) where
        F: std::future::Future<Output = Result<Env, PythonError>> + Send + 'static,
    {
        let log = Arc::new(Buffered::default());
        let task = tokio::spawn(build(log.clone()));
        let mut builds = self.builds();
        // Builds of runs whose stages never came (a failed run, a run from
        // a later stage): their lines are of no use any more.
        builds.retain(|_, a| a.started.elapsed() < FORGET_AFTER);
        builds.insert(
            (run.to_owned(), stage.to_owned()),
            Ahead {
                log,
                stop,
                task,
                started: Instant::now(),
            },
        );
    }

    /// The build made ahead for stage `stage` of run `run`, if any (once;
    /// its stop is kept for [`AheadBuilds::end`]).
    pub(crate) fn take(&self, run: &str, stage: &str) -> Option<Ahead> {
        let ahead = self.builds().remove(&(run.to_owned(), stage.to_owned()))?;
        self.taken()
            .entry(run.to_owned())
            .or_default()
            .push(ahead.stop.clone());
        Some(ahead)
    }

    fn taken(&self) -> MutexGuard<'_, HashMap<String, Vec<BuildStop>>> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forget the builds of run `run`, taken or not; return their stops.
    pub(crate) fn end(&self, run: &str) -> Vec<BuildStop> {
        let mut stops = self.taken().remove(run).unwrap_or_default();
        self.builds().retain(|(r, _), ahead| {
            if r == run {
                stops.push(ahead.stop.clone());
            }
            r != run
        });
        stops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bodywork_runtime::LogSink;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    impl LogSink for Collect {
        fn log(&self, _level: Level, _logger: &str, message: &str) {
            self.0.lock().unwrap().push(message.to_owned());
        }
        fn stage_line(&self, _source: &str, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
    }

    #[test]
    fn kept_lines_go_to_the_stage_in_order_then_the_rest_as_they_come() {
        let buffered = Buffered::default();
        buffered.log(Level::Info, "stage", "resolves");
        buffered.log(Level::Info, "stage", "Resolved 3 packages");
        let sink = Arc::new(Collect::default());
        buffered.attach(sink.clone());
        buffered.log(Level::Info, "stage", "Installed 3 packages");
        assert_eq!(
            *sink.0.lock().unwrap(),
            ["resolves", "Resolved 3 packages", "Installed 3 packages"]
        );
    }

    #[test]
    fn a_long_build_keeps_its_first_and_last_lines_and_counts_the_rest() {
        let buffered = Buffered::default();
        let total = HEAD + TAIL + 100;
        for i in 0..total {
            buffered.log(Level::Info, "stage", &format!("line {i}"));
        }
        let sink = Arc::new(Collect::default());
        buffered.attach(sink.clone());
        let seen = sink.0.lock().unwrap();
        assert_eq!(seen.len(), HEAD + 1 + TAIL);
        assert_eq!(seen[0], "line 0");
        assert_eq!(seen[HEAD - 1], format!("line {}", HEAD - 1));
        assert_eq!(
            seen[HEAD],
            "… 100 lines of the environment's build left out"
        );
        assert_eq!(seen[HEAD + 1], format!("line {}", HEAD + 100));
        assert_eq!(seen.last().unwrap(), &format!("line {}", total - 1));
    }

    #[tokio::test]
    async fn a_stage_takes_its_build_once_with_its_lines() {
        let builds = AheadBuilds::default();
        builds.start("7", "train", BuildStop::default(), |log: Log| async move {
            log.log(Level::Info, "stage", "Installed 1 package");
            Err(PythonError::Task("no environment in this test".into()))
        });
        assert!(builds.take("7", "other").is_none());
        let ahead = builds.take("7", "train").expect("started");
        let sink = Arc::new(Collect::default());
        let log: Log = sink.clone();
        assert!(ahead.take(&log).await.is_err());
        assert_eq!(*sink.0.lock().unwrap(), ["Installed 1 package"]);
        assert!(builds.take("7", "train").is_none());
        assert_eq!(builds.end("7").len(), 1, "the stop of the build taken");
        assert!(builds.end("7").is_empty());
    }
}
