//! Batches ClickHouse refuses for good are set aside here, one JSON-lines file per table and
//! batch with a sidecar describing the error, instead of blocking the queue or being dropped.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone)]
pub struct DeadLetter {
    dir: PathBuf,
}

impl DeadLetter {
    pub fn new(dir: &Path) -> DeadLetter {
        DeadLetter {
            dir: dir.to_owned(),
        }
    }

    /// Writes `rows` to `<dir>/<table>-<token>.jsonl` and the reason beside it; returns the
    /// data file's path.
    pub fn put<T: Serialize>(
        &self,
        table: &str,
        token: &str,
        rows: &[T],
        error: &str,
    ) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{table}-{token}.jsonl"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for row in rows {
            serde_json::to_writer(&mut out, row)?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let meta = serde_json::json!({
            "table": table,
            "token": token,
            "rows": rows.len(),
            "error": error,
            "set_aside_at": time::OffsetDateTime::now_utc().unix_timestamp(),
        });
        std::fs::write(path.with_extension("error.json"), meta.to_string())?;
        Ok(path)
    }

    /// Data files currently set aside.
    pub fn files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        files
    }
}
