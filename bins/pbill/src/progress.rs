//! Progress of long work: a bar with rate and ETA on a terminal
//! (`indicatif`); on a pipe or file, a few plain lines (start; once the
//! work has run 2 s, about every 10% or 10 s; end with the rate), so logs
//! stay readable.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Work of fewer steps than this shows no progress (it takes moments).
pub const MIN_STEPS: usize = 200;

/// One piece of long work with a known number of steps.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    len: u64,
    start: Instant,
    /// Steps done and when the last line was printed (lines only).
    lines: Mutex<(u64, Instant, u64)>,
}

/// Starts showing progress of `len` steps of `what`.
pub fn progress(len: usize, what: &str) -> Progress {
    let len = len as u64;
    let bar = std::io::stderr().is_terminal().then(|| {
        let pb = ProgressBar::new(len);
        pb.set_style(
            ProgressStyle::with_template(
                "{msg:>28} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.set_message(what.to_string());
        pb
    });
    if bar.is_none() {
        eprintln!("{what}: 0/{len}");
    }
    Progress {
        bar,
        what: what.to_string(),
        len,
        start: Instant::now(),
        lines: Mutex::new((0, Instant::now(), 0)),
    }
}

impl Progress {
    /// Progress that shows nothing (a part of work whose whole has a
    /// progress of its own).
    pub fn none() -> Progress {
        Progress {
            bar: None,
            what: String::new(),
            len: 0,
            start: Instant::now(),
            lines: Mutex::new((0, Instant::now(), 0)),
        }
    }

    /// `n` more steps done.
    pub fn inc(&self, n: u64) {
        if self.what.is_empty() {
            return;
        }
        if let Some(b) = &self.bar {
            b.inc(n);
            return;
        }
        let Ok(mut l) = self.lines.lock() else { return };
        l.0 += n;
        let tenth = (l.0 * 10 / self.len.max(1)).min(10);
        // Quick work gets no lines in between; longer work one about
        // every 10% (after the first 2 s) or every 10 s.
        let slow = self.start.elapsed() >= Duration::from_secs(2);
        if l.0 < self.len && slow && (tenth > l.2 || l.1.elapsed() >= Duration::from_secs(10)) {
            let secs = self.start.elapsed().as_secs_f64();
            let rate = l.0 as f64 / secs.max(1e-9);
            let eta = (self.len - l.0) as f64 / rate.max(1e-9);
            eprintln!(
                "{}: {}/{} ({:.0}%), {:.1}/s, about {:.0} s left",
                self.what,
                l.0,
                self.len,
                l.0 as f64 * 100.0 / self.len.max(1) as f64,
                rate,
                eta
            );
            l.1 = Instant::now();
            l.2 = tenth;
        }
    }

    /// Runs `f` with the bar hidden (for messages in between).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// Ends the work: the bar disappears; on a pipe one closing line.
    pub fn finish(&self) {
        if self.what.is_empty() {
            return;
        }
        match &self.bar {
            Some(b) => b.finish_and_clear(),
            None => {
                let secs = self.start.elapsed().as_secs_f64();
                let done = self.lines.lock().map(|l| l.0).unwrap_or(self.len);
                eprintln!(
                    "{}: {done}/{} in {secs:.1} s ({:.1}/s)",
                    self.what,
                    self.len,
                    done as f64 / secs.max(1e-9)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_without_a_terminal() {
        // Tests run with stderr captured: the line printer is used.
        let p = progress(20, "work");
        for _ in 0..20 {
            p.inc(1);
        }
        assert_eq!(p.lines.lock().unwrap().0, 20);
        assert_eq!(p.suspend(|| 7), 7);
        p.finish();
    }
}
