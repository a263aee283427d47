//! An in-memory log sink for tests that assert on what a `tracing` subscriber wrote: clone it
//! into `with_writer`, then read everything written with [`LogCapture::text`].

use std::{
    io::Write,
    sync::{Arc, Mutex, PoisonError},
};

/// Collects every byte written to any of its clones.
#[derive(Debug, Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything written so far.
    ///
    /// # Panics
    /// When it is not UTF-8: a subscriber writes text, so anything else is a failure to report.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()).expect("log output is UTF-8")
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'a self) -> LogCapture {
        self.clone()
    }
}
