//! Writing one shard's results (Parquet or CSV) to a temporary file that is renamed into place
//! only when the whole shard is written.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::input::{KeyKind, KeyValue, Row};
use crate::score::Outcome;

/// Output file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Apache Parquet (snappy): `candidates` `list<string>`, `scores` `list<float32>`.
    Parquet,
    /// CSV with a header: `candidates` and `scores` as JSON array cells.
    Csv,
}

impl OutputFormat {
    /// The format a file name's extension names, if any.
    pub fn from_path(path: &Path) -> Option<OutputFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Some(OutputFormat::Parquet),
            "csv" => Some(OutputFormat::Csv),
            _ => None,
        }
    }

    /// The file extension written.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Csv => "csv",
        }
    }
}

/// Columns the tool adds; key columns must not use these names.
pub const RESERVED: [&str; 4] = ["row", "candidates", "scores", "error"];

/// The output schema: `row`, the key columns, `candidates`, `scores`, `error`.
pub fn schema(format: OutputFormat, keys: &[String], kinds: &[KeyKind]) -> SchemaRef {
    let mut fields = vec![Field::new("row", DataType::Int64, false)];
    for (k, kind) in keys.iter().zip(kinds) {
        let dt = match kind {
            KeyKind::Int => DataType::Int64,
            KeyKind::Str => DataType::Utf8,
        };
        fields.push(Field::new(k, dt, true));
    }
    match format {
        OutputFormat::Parquet => {
            fields.push(Field::new(
                "candidates",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ));
            fields.push(Field::new(
                "scores",
                DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
                true,
            ));
        }
        OutputFormat::Csv => {
            fields.push(Field::new("candidates", DataType::Utf8, true));
            fields.push(Field::new("scores", DataType::Utf8, true));
        }
    }
    fields.push(Field::new("error", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// Builds the output batch of one chunk.
pub fn batch(
    schema: &SchemaRef,
    format: OutputFormat,
    kinds: &[KeyKind],
    rows: &[Row],
    outcomes: &[Outcome],
) -> Result<RecordBatch, String> {
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(
        rows.iter().map(|r| r.index as i64),
    ))];
    for (k, kind) in kinds.iter().enumerate() {
        let values = rows
            .iter()
            .map(|r| r.keys.get(k).unwrap_or(&KeyValue::Null));
        let col: ArrayRef = match kind {
            KeyKind::Int => Arc::new(
                values
                    .map(|v| match v {
                        KeyValue::Int(i) => Some(*i),
                        _ => None,
                    })
                    .collect::<Int64Array>(),
            ),
            KeyKind::Str => Arc::new(
                values
                    .map(|v| match v {
                        KeyValue::Int(i) => Some(i.to_string()),
                        KeyValue::Str(s) => Some(s.clone()),
                        KeyValue::Null => None,
                    })
                    .collect::<StringArray>(),
            ),
        };
        columns.push(col);
    }
    let candidates = rows
        .iter()
        .map(|r| r.request.as_ref().ok().map(|q| &q.candidates));
    let scores = outcomes.iter().map(|o| o.as_ref().ok());
    match format {
        OutputFormat::Parquet => {
            let mut cb = ListBuilder::new(StringBuilder::new());
            for c in candidates {
                match c {
                    Some(c) => {
                        for id in c {
                            cb.values().append_value(id);
                        }
                        cb.append(true);
                    }
                    None => cb.append(false),
                }
            }
            let mut sb = ListBuilder::new(Float32Builder::new());
            for s in scores {
                match s {
                    Some(s) => {
                        sb.values().append_slice(s);
                        sb.append(true);
                    }
                    None => sb.append(false),
                }
            }
            columns.push(Arc::new(cb.finish()));
            columns.push(Arc::new(sb.finish()));
        }
        OutputFormat::Csv => {
            let json = |v: Option<String>| v;
            columns.push(Arc::new(
                candidates
                    .map(|c| json(c.and_then(|c| serde_json::to_string(c).ok())))
                    .collect::<StringArray>(),
            ));
            columns.push(Arc::new(
                scores
                    .map(|s| s.and_then(|s| serde_json::to_string(s).ok()))
                    .collect::<StringArray>(),
            ));
        }
    }
    columns.push(Arc::new(
        outcomes
            .iter()
            .map(|o| o.as_ref().err().map(String::as_str))
            .collect::<StringArray>(),
    ));
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| e.to_string())
}

enum Inner {
    Parquet(parquet::arrow::ArrowWriter<File>),
    Csv(arrow_csv::Writer<File>),
}

/// A shard's output being written: `tmp` until [`ShardWriter::finish`] renames it to `dest`.
pub struct ShardWriter {
    inner: Option<Inner>,
    tmp: PathBuf,
    dest: PathBuf,
}

/// The temporary file name for `dest`: hidden, in the same folder (so the rename is atomic),
/// and never taken for a finished output.
pub fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Whether `name` is one of this tool's temporary files for the output `dest_name`.
pub fn is_temp_of(name: &str, dest_name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_prefix(dest_name))
        .is_some_and(|rest| rest.starts_with(".partial-"))
}

impl ShardWriter {
    /// Opens the temporary file for `dest` (left-over temporary files of earlier runs for
    /// the same output are removed first).
    pub fn create(dest: &Path, format: OutputFormat, schema: &SchemaRef) -> Result<Self, String> {
        if let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) {
            let name = name.to_string_lossy();
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if is_temp_of(&e.file_name().to_string_lossy(), &name) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        let tmp = temp_path(dest);
        let file =
            File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let inner = match format {
            OutputFormat::Parquet => {
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .build();
                Inner::Parquet(
                    parquet::arrow::ArrowWriter::try_new(file, Arc::clone(schema), Some(props))
                        .map_err(|e| e.to_string())?,
                )
            }
            OutputFormat::Csv => {
                let mut w = arrow_csv::WriterBuilder::new()
                    .with_header(true)
                    .build(file);
                // The header, also for a shard without rows.
                w.write(&RecordBatch::new_empty(Arc::clone(schema)))
                    .map_err(|e| e.to_string())?;
                Inner::Csv(w)
            }
        };
        Ok(ShardWriter {
            inner: Some(inner),
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// Appends one chunk's batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        match &mut self.inner {
            Some(Inner::Parquet(w)) => w.write(batch).map_err(|e| e.to_string()),
            Some(Inner::Csv(w)) => w.write(batch).map_err(|e| e.to_string()),
            None => Err("writer already finished".into()),
        }
    }

    /// Flushes, syncs and renames the temporary file to the output.
    pub fn finish(mut self) -> Result<(), String> {
        let file = match self.inner.take() {
            Some(Inner::Parquet(w)) => w.into_inner().map_err(|e| e.to_string())?,
            Some(Inner::Csv(w)) => w.into_inner(),
            None => return Err("writer already finished".into()),
        };
        file.sync_all()
            .map_err(|e| format!("cannot sync {}: {e}", self.tmp.display()))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                self.tmp.display(),
                self.dest.display()
            )
        })
    }
}

impl Drop for ShardWriter {
    /// A shard that was not finished leaves no temporary file behind (when the process lives
    /// to drop it; a killed run's temporary file is removed by the next run).
    fn drop(&mut self) {
        if self.inner.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
