//! Capturing what a test logs, safely beside every other test of the binary.
//!
//! tracing caches per callsite whether any subscriber is interested in it, for the whole
//! process. A capture set as one thread's default subscriber can therefore miss events: a test
//! on another thread, without a subscriber, that reaches the same callsite first can cache
//! "not interested". So the binary has one global subscriber instead, installed once (by
//! `TestApp` and by every capture), that is interested in every callsite up to DEBUG and
//! decides per event: an event goes to the capture of the thread that emits it, if that
//! thread has one, in its format and from its level up; otherwise it is dropped unformatted.
//!
//! A capture sees the events of its own thread only, so a test that captures runs on the
//! default current-thread runtime: the tasks it spawns (the worker, the token client, the
//! fakes) then log on its thread too.

use std::cell::RefCell;
use std::io::Write;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, Once, PoisonError};

use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};

/// The most verbose level a capture can ask for; more verbose callsites stay disabled.
const MOST_VERBOSE: Level = Level::DEBUG;

/// How captured events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, as `tracing_subscriber::fmt().json()` writes them.
    Json,
    /// Plain text lines without colours.
    Text,
}

/// The capture active on a thread.
struct Active {
    buffer: Captured,
    format: Format,
    level: Level,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

/// What a thread logged while its capture was active.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Captures this thread's events at `level` and less verbose, in `format`, until the
    /// guard is dropped (on this thread; the guard cannot leave it).
    pub fn on_this_thread(&self, format: Format, level: Level) -> CaptureGuard {
        install();
        assert!(level <= MOST_VERBOSE, "captures go down to {MOST_VERBOSE} only");
        let active = Active { buffer: self.clone(), format, level };
        let previous = ACTIVE.with(|a| a.borrow_mut().replace(active));
        CaptureGuard { previous, _this_thread: PhantomData }
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ends a capture when dropped, restoring the one it replaced, if any.
pub struct CaptureGuard {
    previous: Option<Active>,
    /// Not `Send`: the capture belongs to the thread that started it.
    _this_thread: PhantomData<*const ()>,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ACTIVE.with(|a| *a.borrow_mut() = previous);
    }
}

/// Installs the binary's global subscriber; later calls do nothing.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let json = tracing_subscriber::fmt::layer().json().with_writer(ToCapture).with_filter(Capturing(Format::Json));
        let text = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(ToCapture)
            .with_filter(Capturing(Format::Text));
        let subscriber = tracing_subscriber::registry().with(json).with(text);
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in the test binary");
    });
}

/// Lets an event through to the layer of `.0`'s format when the current thread captures in
/// that format at the event's level.
struct Capturing(Format);

impl<S> Filter<S> for Capturing {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        let wanted =
            |a: &Option<Active>| a.as_ref().is_some_and(|a| a.format == self.0 && *metadata.level() <= a.level);
        // No capture on a thread that is shutting down.
        ACTIVE.try_with(|a| a.try_borrow().is_ok_and(|a| wanted(&a))).unwrap_or(false)
    }

    /// "Sometimes", never cached as "never": whether an event is wanted depends on the thread
    /// and the moment, which is what makes the captures independent of each other.
    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if *metadata.level() <= MOST_VERBOSE {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(MOST_VERBOSE))
    }
}

/// Writes to the current thread's capture; reached only for events `Capturing` let through.
struct ToCapture;

impl<'a> MakeWriter<'a> for ToCapture {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> CaptureWriter {
        let buffer = ACTIVE.try_with(|a| a.try_borrow().ok().and_then(|a| a.as_ref().map(|a| a.buffer.clone())));
        CaptureWriter(buffer.ok().flatten())
    }
}

struct CaptureWriter(Option<Captured>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(captured) = &self.0 {
            captured.bytes().extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
