//! logbook's own logs: text or JSON on stderr, optionally also in size-rotated, compressed
//! files, with a level that can be changed while running.

use std::io;

use file_rotate::compression::Compression;
use file_rotate::suffix::{AppendTimestamp, FileLimit};
use file_rotate::{ContentLimit, FileRotate};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::{LogConfig, LogFileConfig, LogFormat};
use crate::telemetry::Telemetry;

/// Changes the level filter of a running logbook (the settings API will call this).
#[derive(Clone)]
pub struct LevelHandle(reload::Handle<EnvFilter, Registry>);

impl LevelHandle {
    pub fn set(&self, directives: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
        self.0.reload(filter).map_err(|e| e.to_string())
    }
}

/// Keeps the file writer's background thread alive; drop it last so buffered lines reach disk.
pub struct Logging {
    pub level: LevelHandle,
    _file_guard: Option<WorkerGuard>,
}

/// Installs the global subscriber. Call once, before anything logs. With `telemetry`,
/// logbook's own spans and events are also exported over OTLP.
pub fn init(config: &LogConfig, telemetry: Option<&Telemetry>) -> io::Result<Logging> {
    let filter = EnvFilter::try_new(&config.level).map_err(io::Error::other)?;
    let (filter, handle) = reload::Layer::new(filter);
    let mut outputs = vec![format_layer(config.format, io::stderr)];
    let guard = match &config.file {
        Some(file) => {
            let (writer, guard) = tracing_appender::non_blocking(rotating_file(file)?);
            outputs.push(format_layer(config.format, writer));
            Some(guard)
        }
        None => None,
    };
    if let Some(telemetry) = telemetry {
        outputs.push(Box::new(telemetry.layers()));
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(outputs)
        .try_init()
        .map_err(io::Error::other)?;
    Ok(Logging {
        level: LevelHandle(handle),
        _file_guard: guard,
    })
}

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;

fn format_layer<W>(format: LogFormat, writer: W) -> Box<dyn Layer<Filtered> + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => layer.with_ansi(false).boxed(),
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
    }
}

/// A log file that rotates at `max_size`: the full file is renamed with its date and time
/// (`logbook.log.20261121T093806`), gzip-compressed when configured, and only the newest
/// `keep` copies are kept. Rotation is `file-rotate`'s, a maintained crate.
pub fn rotating_file(config: &LogFileConfig) -> io::Result<FileRotate<AppendTimestamp>> {
    if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    Ok(FileRotate::new(
        &config.path,
        AppendTimestamp::with_format(
            "%Y%m%dT%H%M%S%.3f",
            FileLimit::MaxFiles(config.keep),
            file_rotate::suffix::DateFrom::Now,
        ),
        ContentLimit::BytesSurpassed(config.max_size.as_u64() as usize),
        if config.compress {
            Compression::OnRotate(0)
        } else {
            Compression::None
        },
        None,
    ))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn level_changes_while_running() {
        let lines = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let (filter, handle) = reload::Layer::new(EnvFilter::new("info"));
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_writer(move || Capture(sink.clone())));
        let level = LevelHandle(handle);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("hidden at info");
            level.set("debug").unwrap();
            tracing::debug!("shown at debug");
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert!(
            !text.contains("hidden at info") && text.contains("shown at debug"),
            "{text}"
        );
        assert!(level.set("not a level ===").is_err());
    }

    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_files_rotate_at_size_keep_n_compressed_copies() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogFileConfig {
            path: dir.path().join("logbook.log"),
            max_size: bytesize::ByteSize::kib(1),
            keep: 3,
            compress: true,
        };
        let mut file = rotating_file(&config).unwrap();
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..100 {
            file.write_all(line.as_bytes()).unwrap();
            // Distinct names for each rotation: the suffix has millisecond resolution.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        file.flush().unwrap();
        drop(file);

        let mut rotated: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap() != "logbook.log")
            .collect();
        rotated.sort();
        assert_eq!(rotated.len(), 3, "{rotated:?}");
        for path in &rotated {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with("logbook.log.20") && name.ends_with(".gz"),
                "{name}"
            );
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
                .read_to_string(&mut text)
                .unwrap();
            assert!(
                text.len() > 1024 && text.lines().all(|l| l == &line[..99]),
                "{name}"
            );
        }
        let active = std::fs::metadata(dir.path().join("logbook.log"))
            .unwrap()
            .len();
        assert!(active <= 1024 + 100, "active file is {active} bytes");
    }
}
