//! Logging set-up: `tracing`, each event's target the path of the module that logs it
//! (`jellydemon::daemon::engine`, `jellydemon::reconcile`, …), to stderr (journald friendly)
//! and optionally to a size-rotated file, as text or JSON, with the level from `RUST_LOG`, else
//! `logging.level`, else the command's default. Installs the anonymizer when
//! `logging.anonymize` is set.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::anon::{self, Anonymizer};
use crate::config::{LogFormat, Settings};
use crate::ids::escape_controls;
use crate::sync::lock;

/// Install the global subscriber (and the anonymizer). `settings` is `None` when the
/// configuration could not be loaded; logging then goes to stderr at `default_level`. A
/// command that writes nothing (a dry run, `check`) passes `writes: false`: the aliases it
/// makes up stay in memory.
pub fn init(settings: Option<&Settings>, default_level: &str, writes: bool) -> Result<(), String> {
    let logging = settings.map(|s| &s.logging);
    if let Some(s) = settings
        && s.logging.anonymize
    {
        let aliases = Anonymizer::load(&s.alias_file())?;
        anon::install(if writes {
            aliases
        } else {
            aliases.in_memory_only()
        });
    }
    let level = logging
        .and_then(|l| l.level.clone())
        .unwrap_or_else(|| default_level.to_string());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let format = logging.map(|l| l.format).unwrap_or_default();
    let mut layers = vec![layer(format, BoxMakeWriter::new(io::stderr), colours())];
    if let Some(path) = logging.and_then(|l| l.file.clone()) {
        let l = logging.expect("file implies settings");
        let file = RotatingFile::open(&path, l.max_file_bytes, l.keep_files)
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
        // Never colours in a file.
        layers.push(layer(format, BoxMakeWriter::new(file), false));
    }
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
    Ok(())
}

/// One output: text (control characters escaped, colours if `ansi`) or JSON.
fn layer<S>(format: LogFormat, writer: BoxMakeWriter, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match format {
        LogFormat::Text => fmt::layer()
            .fmt_fields(EscapedFields)
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => fmt::layer().json().with_writer(writer).boxed(),
    }
}

/// Colours on standard error only when it is a terminal and `NO_COLOR` is not set
/// (<https://no-color.org>): journald, `2> file` and pipes get plain text.
fn colours() -> bool {
    use std::io::IsTerminal;
    no_color_allows(std::env::var_os("NO_COLOR")) && io::stderr().is_terminal()
}

/// `NO_COLOR` set to anything but the empty string turns colours off.
fn no_color_allows(value: Option<std::ffi::OsString>) -> bool {
    value.is_none_or(|v| v.is_empty())
}

/// The text format's fields (`message key=value ...`) with every control character in a value
/// written as an escape (`\n`, `\u{1b}`): names and titles come from Jellyfin and webhooks,
/// and must not be able to forge a log line or drive a terminal.
pub struct EscapedFields;

impl<'writer> fmt::FormatFields<'writer> for EscapedFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: fmt::format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = EscapingVisitor {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'a, 'writer> {
    writer: &'a mut fmt::format::Writer<'writer>,
    first: bool,
    result: std::fmt::Result,
}

impl tracing::field::Visit for EscapingVisitor<'_, '_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let raw = format!("{value:?}");
        let value = escape_controls(&raw);
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            write!(self.writer, "{sep}{value}")
        } else {
            write!(self.writer, "{sep}{}={value}", field.name())
        };
    }
}

/// A log file that is rotated when it would grow beyond `max_bytes`: `file` becomes `file.1`,
/// `file.1` becomes `file.2`, … and the oldest beyond `keep` is removed. Each log event is one
/// write, so lines are never split across files.
#[derive(Clone)]
pub struct RotatingFile {
    inner: Arc<Mutex<Rotating>>,
}

struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = crate::files::open_private_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            inner: Arc::new(Mutex::new(Rotating {
                path: path.to_path_buf(),
                file,
                size,
                max_bytes,
                keep,
            })),
        })
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl Rotating {
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            let _ = fs::remove_file(&self.path);
        } else {
            let _ = fs::remove_file(numbered(&self.path, self.keep));
            for n in (1..self.keep).rev() {
                let from = numbered(&self.path, n);
                if from.exists() {
                    fs::rename(&from, numbered(&self.path, n + 1))?;
                }
            }
            fs::rename(&self.path, numbered(&self.path, 1))?;
        }
        self.file = crate::files::open_private_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut r = lock(&self.inner);
        if r.size > 0 && r.size + buf.len() as u64 > r.max_bytes {
            r.rotate()?;
        }
        r.file.write_all(buf)?;
        r.size += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        lock(&self.inner).file.flush()
    }
}

impl<'a> fmt::MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("Bob O'Brien"), "Bob O'Brien");
        assert_eq!(escape_controls("Zoë 日本"), "Zoë 日本");
        assert_eq!(
            escape_controls("eve\nINFO forged line\r\u{1b}[31mred\t"),
            "eve\\nINFO forged line\\r\\u{1b}[31mred\\t"
        );
    }

    #[test]
    fn text_logs_escape_field_values_and_messages() {
        use tracing_subscriber::layer::SubscriberExt;
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .fmt_fields(EscapedFields)
                .with_ansi(false)
                .with_writer(move || Sink(sink.clone())),
        );
        tracing::subscriber::with_default(subscriber, || {
            let name = "mallory\nERROR jellydemon: forged\u{1b}[2J";
            tracing::warn!(user = %name, other = ?name, "seen {name}");
        });
        let out = String::from_utf8(lock(&buf).clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
        assert!(
            out.contains("user=mallory\\nERROR jellydemon: forged\\u{1b}[2J"),
            "{out}"
        );
        assert!(out.contains("seen mallory\\n"), "{out}");
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        for i in 0..10 {
            f.write_all(format!("line {i:02} {}\n", "x".repeat(40)).as_bytes())
                .unwrap();
        }
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        // 50-byte lines, 100-byte files: two lines per file, newest in j.log.
        assert!(read(&path).contains("line 09"));
        assert!(read(&numbered(&path, 1)).contains("line 07"));
        assert!(read(&numbered(&path, 2)).contains("line 05"));
        assert!(!numbered(&path, 3).exists());
        for p in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            assert!(read(&p).len() <= 100);
            assert!(read(&p).ends_with('\n'));
        }
    }
}
