//! The build's log: each phase on its own line with its wall time (a spinner while it
//! runs, on a terminal), events with a severity under it, and everything (the command
//! lines and their full output too) in the build's own log file.
//!
//! What reaches the terminal depends on the [`Verbosity`]; the log file always gets every
//! event, down to [`Level::Debug`]. `tracing` events of the libraries (the differ's
//! correlation details, ...) join the same log through [`Progress::tracing_layer`].

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The severity of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Detail for whoever debugs a build: command lines, the differ's notes.
    Debug,
    /// What the build is doing and found: shown under the phase.
    Info,
    /// Something the user should look at; the build goes on.
    Warn,
    /// A reason for the failure that follows.
    Error,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// How much is shown on the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Warnings and errors only, no phase lines.
    Quiet,
    /// Phases with their times, and events from [`Level::Info`] up.
    Normal,
    /// Everything, command output included (`kpatch-build -d`).
    Debug,
}

/// Where events go: the log file and the terminal. Shared with the `tracing` bridge.
struct Sink {
    file: Option<File>,
    start: Instant,
    verbosity: Verbosity,
    bar: Option<ProgressBar>,
}

impl Sink {
    fn write_file(&mut self, level: Level, text: &str) {
        let elapsed = self.start.elapsed().as_secs_f64();
        if let Some(f) = self.file.as_mut() {
            let mut lines = text.lines();
            let first = lines.next().unwrap_or("");
            let mut out = format!("{elapsed:9.3} {:<5} {first}\n", level.tag());
            for l in lines {
                out.push_str(&format!("{:16}{l}\n", ""));
            }
            let _ = f.write_all(out.as_bytes());
        }
    }

    fn shows(&self, level: Level) -> bool {
        match self.verbosity {
            Verbosity::Quiet => level >= Level::Warn,
            Verbosity::Normal => level >= Level::Info,
            Verbosity::Debug => true,
        }
    }

    fn print(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn event(&mut self, level: Level, msg: &str) {
        self.write_file(level, msg);
        if !self.shows(level) {
            return;
        }
        let prefix = match level {
            Level::Debug => "debug: ",
            Level::Info => "",
            Level::Warn => "warning: ",
            Level::Error => "error: ",
        };
        for (i, l) in msg.lines().enumerate() {
            let p = if i == 0 { prefix } else { "  " };
            self.print(&format!("    {p}{l}"));
        }
    }
}

/// The log of one build: phases, events, command output.
pub struct Progress {
    sink: Arc<Mutex<Sink>>,
    path: Option<PathBuf>,
    current: Option<(String, Instant)>,
    /// Completed phases with their durations.
    pub phases: Vec<(String, Duration)>,
    tty: bool,
}

impl Progress {
    /// A log written to `log` (created; an existing file is kept and appended to), shown
    /// on the terminal as `verbosity` says.
    pub fn new(log: Option<&Path>, verbosity: Verbosity) -> Progress {
        let file = log.and_then(|p| {
            if let Some(d) = p.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        let path = file.as_ref().and(log.map(Path::to_path_buf));
        Progress {
            sink: Arc::new(Mutex::new(Sink {
                file,
                start: Instant::now(),
                verbosity,
                bar: None,
            })),
            path,
            current: None,
            phases: Vec::new(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// The log file, when there is one.
    pub fn log_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn with_sink<T>(&self, f: impl FnOnce(&mut Sink) -> T) -> T {
        let mut guard = match self.sink.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// An event of the given severity.
    pub fn event(&mut self, level: Level, msg: &str) {
        self.with_sink(|s| s.event(level, msg));
    }

    /// An event for the log file only (what the caller prints itself).
    pub fn record(&mut self, level: Level, msg: &str) {
        self.with_sink(|s| s.write_file(level, msg));
    }

    /// A line under the current phase ([`Level::Info`]).
    pub fn note(&mut self, msg: &str) {
        self.event(Level::Info, msg);
    }

    /// A warning: the build goes on.
    pub fn warn(&mut self, msg: &str) {
        self.event(Level::Warn, msg);
    }

    /// Detail for the log file (and the terminal with `-d`).
    pub fn debug(&mut self, msg: &str) {
        self.event(Level::Debug, msg);
    }

    /// The full output of a command, `what` saying which: log file only, and the
    /// terminal with `-d`.
    pub fn output(&mut self, what: &str, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        self.event(
            Level::Debug,
            &format!("output of {what}:\n{}", text.trim_end()),
        );
    }

    /// Start a phase (ending the previous one).
    pub fn phase(&mut self, name: &str) {
        self.end_phase();
        let tty = self.tty;
        self.with_sink(|s| {
            s.write_file(Level::Info, &format!("==> {name}"));
            if tty && s.verbosity != Verbosity::Quiet {
                let b = ProgressBar::new_spinner();
                b.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.set_message(name.to_string());
                b.enable_steady_tick(Duration::from_millis(120));
                s.bar = Some(b);
            }
        });
        self.current = Some((name.to_string(), Instant::now()));
    }

    /// Turn the phase's spinner into a bar of `total` steps with `done` of them done (count
    /// and estimated time left), for long rebuilds.
    pub fn count(&mut self, done: u64, total: u64) {
        self.with_sink(|s| {
            if let Some(b) = &s.bar {
                if b.length() != Some(total) {
                    b.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}, about {eta} left",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    b.set_length(total);
                }
                b.set_position(done.min(total));
            }
        });
    }

    /// End the current phase, printing its time.
    pub fn end_phase(&mut self) {
        let Some((name, start)) = self.current.take() else {
            return;
        };
        let d = start.elapsed();
        let line = format!("{name:<40} {:>7.1} s", d.as_secs_f64());
        self.with_sink(|s| {
            if let Some(b) = s.bar.take() {
                b.finish_and_clear();
            }
            s.write_file(Level::Info, &line);
            if s.verbosity != Verbosity::Quiet {
                eprintln!("{line}");
            }
        });
        self.phases.push((name, d));
    }

    /// A `tracing` layer that puts the libraries' events into this log, at their level
    /// (`TRACE` counts as debug).
    pub fn tracing_layer(&self) -> TracingBridge {
        TracingBridge {
            sink: self.sink.clone(),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.with_sink(|s| {
            if let Some(b) = s.bar.take() {
                b.finish_and_clear();
            }
        });
    }
}

/// Forwards `tracing` events into a [`Progress`] log (see [`Progress::tracing_layer`]).
pub struct TracingBridge {
    sink: Arc<Mutex<Sink>>,
}

/// Collects an event's message and fields as one line.
#[derive(Default)]
struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TracingBridge {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            _ => Level::Debug,
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let msg = format!("{}: {}", meta.target(), fields.0);
        if let Ok(mut s) = self.sink.lock() {
            s.event(level, &msg);
        }
    }
}

/// Logs kept in a log directory: older ones are removed when a build starts.
pub const KEEP_LOGS: usize = 30;

/// A new log file for a build of patch `name` in `dir`:
/// `build-<name>-<UTC date and time>-<pid>.log`, so that concurrent and successive
/// builds never share or truncate one. Removes all but the newest [`KEEP_LOGS`] logs.
pub fn build_log_path(dir: &Path, name: &str) -> PathBuf {
    prune_logs(dir, KEEP_LOGS);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    dir.join(format!(
        "build-{name}-{}-{}.log",
        utc_stamp(secs),
        std::process::id()
    ))
}

fn prune_logs(dir: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("build-") && n.ends_with(".log")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(keep);
    for (_, p) in logs.into_iter().take(excess) {
        let _ = std::fs::remove_file(p);
    }
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the epoch (proleptic Gregorian, UTC).
fn utc_stamp(secs: u64) -> String {
    let (year, month, day, h, m, s) = pathio::utc_civil(secs);
    format!("{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_stamps() {
        assert_eq!(super::utc_stamp(0), "19700101T000000Z");
        assert_eq!(super::utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(super::utc_stamp(1_796_137_445), "20261201T150405Z");
    }

    #[test]
    fn log_names_are_unique_and_pruned() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(d.path().join(format!("build-x-{i}.log")), "").unwrap();
        }
        std::fs::write(d.path().join("other"), "").unwrap();
        super::prune_logs(d.path(), 2);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 3);
        let p = super::build_log_path(d.path(), "meminfo");
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            n.starts_with("build-meminfo-") && n.ends_with(&format!("-{}.log", std::process::id())),
            "{n}"
        );
    }

    use super::*;

    #[test]
    fn file_gets_every_level_and_command_output() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("logs/b.log");
        let mut p = Progress::new(Some(&log), Verbosity::Quiet);
        p.phase("one");
        p.debug("detail");
        p.note("found x");
        p.warn("careful");
        p.output("make", "gcc -c a.c\na.c:1: error: x\n");
        p.end_phase();
        let text = std::fs::read_to_string(&log).unwrap();
        for want in [
            "==> one",
            "debug detail",
            "info  found x",
            "warn  careful",
            "output of make:",
            "a.c:1: error: x",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        assert_eq!(p.phases.len(), 1);
        assert_eq!(p.log_path(), Some(log.as_path()));
    }

    #[test]
    fn tracing_events_reach_the_file() {
        use tracing_subscriber::layer::SubscriberExt;
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("b.log");
        let p = Progress::new(Some(&log), Verbosity::Quiet);
        let sub = tracing_subscriber::registry().with(p.tracing_layer());
        tracing::subscriber::with_default(sub, || {
            tracing::debug!(section = ".text.f", "section has changed");
        });
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("debug") && text.contains("section has changed section=\".text.f\""),
            "{text}"
        );
    }
}
