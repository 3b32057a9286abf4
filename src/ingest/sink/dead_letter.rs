//! Batches ClickHouse refuses for good are set aside here, one file per table and batch with a
//! sidecar describing the error, instead of blocking the queue or being dropped. A file is the
//! insert's body as it was sent, `RowBinaryWithNamesAndTypes`: self-describing, and loaded
//! back as it is with `INSERT … FORMAT RowBinaryWithNamesAndTypes`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::schema::TableDef;
use crate::schema::insert;

const EXTENSION: &str = "rowbinary";

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

    /// Writes `rows` RowBinary rows of `table` to `<dir>/<table>-<token>.rowbinary`, after
    /// the header that names their columns and types, and the reason beside it; returns the
    /// data file's path.
    pub fn put(
        &self,
        table: &TableDef,
        token: &str,
        body: &[u8],
        rows: usize,
        error: &str,
    ) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{}-{token}.{EXTENSION}", table.name));
        let mut out = std::fs::File::create(&path)?;
        out.write_all(&insert::header(table))?;
        out.write_all(body)?;
        out.sync_all()?;
        let meta = serde_json::json!({
            "table": table.name,
            "token": token,
            "rows": rows,
            "format": "RowBinaryWithNamesAndTypes",
            "error": error,
            "set_aside_at": time::OffsetDateTime::now_utc().unix_timestamp(),
        });
        std::fs::write(path.with_extension("error.json"), meta.to_string())?;
        Ok(path)
    }
}
