//! A small progress indicator on stderr while a model loads (terminals only).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Spins on stderr until [`LoadProgress::finish`] when stderr is a terminal.
pub struct LoadProgress {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LoadProgress {
    /// Start showing progress for loading `model`.
    pub fn start(model: &Path) -> LoadProgress {
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let done = Arc::clone(&done);
            let name = model.display().to_string();
            let size = std::fs::metadata(model).map_or(0, |m| m.len());
            std::thread::spawn(move || {
                let start = Instant::now();
                let frames = ['|', '/', '-', '\\'];
                let mut i = 0;
                while !done.load(Ordering::Relaxed) {
                    eprint!(
                        "\r{} loading {name} ({:.1} MB) {:.1}s",
                        frames[i % 4],
                        size as f64 / 1e6,
                        start.elapsed().as_secs_f64()
                    );
                    let _ = std::io::stderr().flush();
                    i += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                eprintln!(
                    "\rloaded {name} in {:.2}s{}",
                    start.elapsed().as_secs_f64(),
                    " ".repeat(8)
                );
            })
        });
        LoadProgress { done, thread }
    }

    /// Stop the indicator.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LoadProgress {
    fn drop(&mut self) {
        self.stop();
    }
}
