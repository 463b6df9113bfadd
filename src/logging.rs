//! luaspout's own log output, on stderr, through a writer that can never fail the router.
//!
//! stderr is often a pipe (`luaspout 2>&1 | head`, a log collector): once its reader is gone
//! every write fails with EPIPE, and a logger that reports its own write errors on stderr
//! (tracing-subscriber does, with `eprintln!`, which panics) would end routing at the next
//! log line. [`Stderr`] swallows every write error instead and counts the lines it could not
//! write ([`dropped`], in `/metrics`); after a broken pipe it stops trying.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// stderr is one per process, so its state is too.
static DROPPED: AtomicU64 = AtomicU64::new(0);
static BROKEN: AtomicBool = AtomicBool::new(false);

/// A writer to stderr whose writes always succeed (see the module's doc); one write is one
/// log line, as tracing-subscriber writes each event whole.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if BROKEN.load(Ordering::Relaxed) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return Ok(buf.len());
        }
        if let Err(e) = std::io::stderr().lock().write_all(buf) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                BROKEN.store(true, Ordering::Relaxed);
            }
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Log lines that could not be written since start.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_always_succeed_and_report_their_whole_length() {
        let mut w = Stderr;
        assert_eq!(w.write(b"").unwrap(), 0);
        w.flush().unwrap();
        BROKEN.store(true, Ordering::Relaxed);
        let before = dropped();
        assert_eq!(w.write(b"a line\n").unwrap(), 7);
        assert_eq!(dropped(), before + 1, "counted, not written");
        BROKEN.store(false, Ordering::Relaxed);
    }
}
