//! Capturing what the library logs, to assert on it.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// Log lines written at INFO and above while the guard from [`Logs::capture`] lives (this
/// thread only), without colours.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    /// Where this thread's log lines go while it captures.
    static CAPTURING: RefCell<Option<Logs>> = const { RefCell::new(None) };
}

/// The writer of the binary's one subscriber: the capturing thread's [`Logs`], or nowhere.
struct ThisThread;

impl<'a> MakeWriter<'a> for ThisThread {
    type Writer = Box<dyn Write + 'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match CAPTURING.with(|c| c.borrow().clone()) {
            Some(logs) => Box::new(logs),
            None => Box::new(std::io::sink()),
        }
    }
}

/// Stops this thread's capture when dropped.
pub struct Capture(());

impl Drop for Capture {
    fn drop(&mut self) {
        CAPTURING.with(|c| c.borrow_mut().take());
    }
}

impl Logs {
    /// Starts capturing on this thread until the returned guard is dropped.
    ///
    /// One global subscriber per test binary writes each thread's lines to that thread's
    /// capture. Thread-local subscribers (`set_default`) lose lines when tests run in
    /// parallel: tracing caches each callsite's interest when it is first hit, and a callsite
    /// first hit by another test while no capturing subscriber lived stays cached as
    /// unwanted (seen: a WARN missing in one run of twenty). A global subscriber that wants
    /// every INFO line leaves nothing to race.
    pub fn capture() -> (Logs, Capture) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            tracing_subscriber::fmt()
                .with_writer(ThisThread)
                .with_ansi(false)
                .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
                .finish()
                .try_init()
                .expect("no other global subscriber in a test binary that captures logs");
        });
        let logs = Logs::default();
        CAPTURING.with(|c| *c.borrow_mut() = Some(logs.clone()));
        (logs, Capture(()))
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
