//! Progress reporting: each phase on its own line with its wall time (a spinner while
//! it runs, on a terminal), notes under it, and everything also in the log file.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    log: Option<File>,
    current: Option<(String, Instant, Option<ProgressBar>)>,
    /// Completed phases with their durations.
    pub phases: Vec<(String, Duration)>,
    tty: bool,
    quiet: bool,
}

impl Progress {
    pub fn new(log: Option<&Path>, quiet: bool) -> Progress {
        let log = log.and_then(|p| {
            if let Some(d) = p.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            File::create(p).ok()
        });
        Progress {
            log,
            current: None,
            phases: Vec::new(),
            tty: std::io::stderr().is_terminal(),
            quiet,
        }
    }

    /// Append text to the log file only.
    pub fn log(&mut self, text: &str) {
        if let Some(f) = self.log.as_mut() {
            let _ = f.write_all(text.as_bytes());
            if !text.ends_with('\n') {
                let _ = f.write_all(b"\n");
            }
        }
    }

    fn say(&mut self, line: &str) {
        self.log(line);
        if self.quiet {
            return;
        }
        match self.current.as_ref().and_then(|c| c.2.as_ref()) {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Start a phase (ending the previous one).
    pub fn phase(&mut self, name: &str) {
        self.end_phase();
        let bar = if self.tty && !self.quiet {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_message(name.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            Some(b)
        } else {
            None
        };
        self.log(&format!("==> {name}"));
        self.current = Some((name.to_string(), Instant::now(), bar));
    }

    /// A line under the current phase.
    pub fn note(&mut self, msg: &str) {
        self.say(&format!("    {msg}"));
    }

    /// End the current phase, printing its time.
    pub fn end_phase(&mut self) {
        if let Some((name, start, bar)) = self.current.take() {
            let d = start.elapsed();
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let line = format!("{name:<40} {:>7.1} s", d.as_secs_f64());
            self.log(&line);
            if !self.quiet {
                eprintln!("{line}");
            }
            self.phases.push((name, d));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some((_, _, Some(b))) = self.current.take() {
            b.finish_and_clear();
        }
    }
}
