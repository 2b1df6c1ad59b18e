//! Reading one input shard (Parquet, JSONL or CSV, through the arrow/parquet crates) into
//! chunks of [`Row`]s. A row that cannot be understood becomes a row whose request is an error
//! message; only a shard that cannot be read at all (missing key column, corrupt Parquet, broken
//! CSV structure) fails as a whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use serde::Deserialize;

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Apache Parquet.
    Parquet,
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header; `behaviors` and `candidates` are JSON cells.
    Csv,
}

impl InputFormat {
    /// The format a file name's extension names, if any.
    pub fn from_path(path: &Path) -> Option<InputFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "parquet" | "pq" => Some(InputFormat::Parquet),
            "jsonl" | "ndjson" | "json" => Some(InputFormat::Jsonl),
            "csv" => Some(InputFormat::Csv),
            _ => None,
        }
    }
}

/// A key column's value, passed through to the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// Missing (a null cell, or a JSONL line that is not valid JSON).
    Null,
    /// An integer key.
    Int(i64),
    /// A text key.
    Str(String),
}

/// The output type of a key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Integer keys (any integer input type up to 32-bit unsigned, and int64).
    Int,
    /// Text keys (strings, and uint64).
    Str,
}

pub use crate::owned::{OwnedBehavior, OwnedRequest};

/// One input row: its position in the shard, its keys, and its request (or why it has none).
#[derive(Debug, Clone)]
pub struct Row {
    pub index: u64,
    pub keys: Vec<KeyValue>,
    pub request: Result<OwnedRequest, String>,
}

/// A shard opened for reading: the key columns' output types and an iterator of row chunks.
pub struct Shard {
    pub key_kinds: Vec<KeyKind>,
    /// Rows in the shard when the format says so up front (Parquet).
    pub rows_hint: Option<u64>,
    pub chunks: Box<dyn Iterator<Item = Result<Vec<Row>, String>> + Send>,
}

/// Opens `path` as `format`; chunks hold at most `chunk_rows` rows.
pub fn open(
    path: &Path,
    format: InputFormat,
    keys: &[String],
    chunk_rows: usize,
) -> Result<Shard, String> {
    match format {
        InputFormat::Parquet => open_parquet(path, keys, chunk_rows),
        InputFormat::Jsonl => open_jsonl(path, keys, chunk_rows),
        InputFormat::Csv => open_csv(path, keys, chunk_rows),
    }
}

fn key_kind(name: &str, dt: &DataType) -> Result<KeyKind, String> {
    match dt {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => Ok(KeyKind::Int),
        DataType::UInt64 | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            Ok(KeyKind::Str)
        }
        other => Err(format!(
            "key column {name:?} has type {other}, expected an integer or a string"
        )),
    }
}

fn key_kinds(schema: &Schema, keys: &[String]) -> Result<Vec<KeyKind>, String> {
    keys.iter()
        .map(|k| {
            let field = schema
                .field_with_name(k)
                .map_err(|_| format!("no key column {k:?} (columns: {})", names(schema)))?;
            key_kind(k, field.data_type())
        })
        .collect()
}

fn names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that the request columns are there (their values are checked row by row).
fn require_columns(schema: &Schema) -> Result<(), String> {
    for c in ["behaviors", "candidates", "request_time"] {
        if schema.field_with_name(c).is_err() {
            return Err(format!(
                "no {c:?} column (columns: {}); see docs/batch-tool.md",
                names(schema)
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Parquet

fn open_parquet(path: &Path, keys: &[String], chunk_rows: usize) -> Result<Shard, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let schema = builder.schema().clone();
    require_columns(&schema)?;
    let key_kinds = key_kinds(&schema, keys)?;
    let rows_hint = u64::try_from(builder.metadata().file_metadata().num_rows()).ok();
    let reader = builder
        .with_batch_size(chunk_rows)
        .build()
        .map_err(|e| format!("cannot read Parquet: {e}"))?;
    let keys = keys.to_vec();
    let mut next_index = 0u64;
    let chunks = reader.map(move |batch| {
        let batch = batch.map_err(|e| format!("cannot read Parquet: {e}"))?;
        let rows = rows_of_batch(&batch, &keys, next_index)?;
        next_index += rows.len() as u64;
        Ok(rows)
    });
    Ok(Shard {
        key_kinds,
        rows_hint,
        chunks: Box::new(chunks),
    })
}

// ---------------------------------------------------------------------------------------------
// JSONL

/// The behavior struct arrow-json decodes each JSONL behavior object into.
fn behavior_fields() -> Fields {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    );
    Fields::from(vec![
        Field::new("group", DataType::Utf8, true),
        Field::new("id", DataType::Utf8, true),
        Field::new("item", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("action", DataType::Utf8, true),
        Field::new("timestamp", DataType::Int64, true),
        Field::new("features", DataType::Map(Arc::new(entries), false), true),
    ])
}

fn jsonl_schema(keys: &[String], key_kinds: &[KeyKind]) -> Schema {
    let mut fields: Vec<Field> = keys
        .iter()
        .zip(key_kinds)
        .map(|(k, kind)| {
            let dt = match kind {
                KeyKind::Int => DataType::Int64,
                KeyKind::Str => DataType::Utf8,
            };
            Field::new(k, dt, true)
        })
        .collect();
    for (name, dt) in [
        (
            "behaviors",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(behavior_fields()),
                true,
            ))),
        ),
        (
            "candidates",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        ),
        ("request_time", DataType::Int64),
    ] {
        if !keys.iter().any(|k| k == name) {
            fields.push(Field::new(name, dt, true));
        }
    }
    Schema::new(fields)
}

/// Key types from the first lines: integer when every sampled value is an integer.
fn sample_jsonl_keys(path: &Path, keys: &[String]) -> Result<Vec<KeyKind>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut all_int = vec![true; keys.len()];
    let mut seen = vec![false; keys.len()];
    let mut sampled = 0;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("cannot read: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(&line)
        else {
            continue;
        };
        for (i, k) in keys.iter().enumerate() {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) => {}
                Some(v) => {
                    seen[i] = true;
                    if v.as_i64().is_none() {
                        all_int[i] = false;
                    }
                }
            }
        }
        sampled += 1;
        if sampled >= 1000 {
            break;
        }
    }
    if sampled > 0 {
        if let Some((k, _)) = keys.iter().zip(&seen).find(|(_, &seen)| !seen) {
            return Err(format!(
                "no key column {k:?}: none of the first {sampled} objects has it"
            ));
        }
    }
    Ok(all_int
        .iter()
        .zip(&seen)
        .map(|(&int, &seen)| {
            if int && seen {
                KeyKind::Int
            } else {
                KeyKind::Str
            }
        })
        .collect())
}

fn decode_json(schema: &Arc<Schema>, text: &[u8], rows: usize) -> Result<RecordBatch, String> {
    let mut decoder = arrow_json::ReaderBuilder::new(Arc::clone(schema))
        .with_coerce_primitive(true)
        .with_batch_size(rows.max(1))
        .build_decoder()
        .map_err(|e| e.to_string())?;
    let mut at = 0;
    while at < text.len() {
        let used = decoder.decode(&text[at..]).map_err(|e| e.to_string())?;
        if used == 0 {
            break;
        }
        at += used;
    }
    let batch = decoder.flush().map_err(|e| e.to_string())?;
    let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema)));
    if batch.num_rows() != rows {
        return Err(format!(
            "expected {rows} JSON object(s), decoded {}",
            batch.num_rows()
        ));
    }
    Ok(batch)
}

fn open_jsonl(path: &Path, keys: &[String], chunk_rows: usize) -> Result<Shard, String> {
    let key_kinds = sample_jsonl_keys(path, keys)?;
    let schema = Arc::new(jsonl_schema(keys, &key_kinds));
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut lines = BufReader::new(file).lines().enumerate();
    let keys = keys.to_vec();
    let mut next_index = 0u64;
    let chunks = std::iter::from_fn(move || {
        // Up to chunk_rows non-blank lines, with their 1-based line numbers.
        let mut chunk: Vec<(usize, String)> = Vec::new();
        while chunk.len() < chunk_rows {
            match lines.next() {
                None => break,
                Some((_, Err(e))) => return Some(Err(format!("cannot read: {e}"))),
                Some((n, Ok(line))) => {
                    if !line.trim().is_empty() {
                        chunk.push((n + 1, line));
                    }
                }
            }
        }
        if chunk.is_empty() {
            return None;
        }
        let first = next_index;
        next_index += chunk.len() as u64;
        let mut text = Vec::new();
        for (_, l) in &chunk {
            text.extend_from_slice(l.as_bytes());
            text.push(b'\n');
        }
        let rows = match decode_json(&schema, &text, chunk.len()) {
            Ok(batch) => rows_of_batch(&batch, &keys, first),
            // Some line of the chunk does not decode: decode line by line, so that only the bad
            // lines carry an error.
            Err(_) => Ok(chunk
                .iter()
                .enumerate()
                .map(|(i, (n, line))| {
                    let index = first + i as u64;
                    match decode_json(&schema, line.as_bytes(), 1)
                        .and_then(|b| rows_of_batch(&b, &keys, index))
                    {
                        Ok(mut r) if r.len() == 1 => r.remove(0),
                        Ok(_) => unreadable(index, keys.len(), format!("line {n}: no row")),
                        Err(e) => unreadable(index, keys.len(), format!("line {n}: {e}")),
                    }
                })
                .collect()),
        };
        Some(rows)
    });
    Ok(Shard {
        key_kinds,
        rows_hint: None,
        chunks: Box::new(chunks),
    })
}

fn unreadable(index: u64, keys: usize, message: String) -> Row {
    Row {
        index,
        keys: vec![KeyValue::Null; keys],
        request: Err(message),
    }
}

// ---------------------------------------------------------------------------------------------
// CSV

fn open_csv(path: &Path, keys: &[String], chunk_rows: usize) -> Result<Shard, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    // Only the header's names are taken from inference: every column is read as text, so no
    // cell can fail a whole batch; values are converted row by row.
    let (inferred, _) = arrow_csv::reader::Format::default()
        .with_header(true)
        .infer_schema(file, Some(1))
        .map_err(|e| format!("cannot read the CSV header: {e}"))?;
    let schema = Arc::new(Schema::new(
        inferred
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    require_columns(&schema)?;
    let key_kinds = keys
        .iter()
        .map(|k| {
            schema
                .field_with_name(k)
                .map(|_| KeyKind::Str)
                .map_err(|_| format!("no key column {k:?} (columns: {})", names(&schema)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let reader = arrow_csv::ReaderBuilder::new(schema)
        .with_header(true)
        .with_truncated_rows(true)
        .with_batch_size(chunk_rows)
        .build(file)
        .map_err(|e| format!("cannot read CSV: {e}"))?;
    let keys = keys.to_vec();
    let mut next_index = 0u64;
    let chunks = reader.map(move |batch| {
        let batch = batch.map_err(|e| format!("cannot read CSV: {e}"))?;
        let rows = rows_of_batch(&batch, &keys, next_index)?;
        next_index += rows.len() as u64;
        Ok(rows)
    });
    Ok(Shard {
        key_kinds,
        rows_hint: None,
        chunks: Box::new(chunks),
    })
}

// ---------------------------------------------------------------------------------------------
// Arrow batch -> rows

/// Converts a batch to rows; `first` is the shard index of its first row. Fails only when a
/// required column is missing.
pub fn rows_of_batch(batch: &RecordBatch, keys: &[String], first: u64) -> Result<Vec<Row>, String> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("no {name:?} column"))
    };
    let key_cols = keys.iter().map(|k| col(k)).collect::<Result<Vec<_>, _>>()?;
    let behaviors = col("behaviors")?;
    let candidates = col("candidates")?;
    let request_time = col("request_time")?;
    Ok((0..batch.num_rows())
        .map(|i| Row {
            index: first + i as u64,
            keys: key_cols.iter().map(|c| key_at(c.as_ref(), i)).collect(),
            request: request_at(behaviors, candidates, request_time, i),
        })
        .collect())
}

fn key_at(arr: &dyn Array, i: usize) -> KeyValue {
    if arr.is_null(i) {
        return KeyValue::Null;
    }
    let int = match arr.data_type() {
        DataType::Int8 => Some(i64::from(arr.as_primitive::<Int8Type>().value(i))),
        DataType::Int16 => Some(i64::from(arr.as_primitive::<Int16Type>().value(i))),
        DataType::Int32 => Some(i64::from(arr.as_primitive::<Int32Type>().value(i))),
        DataType::Int64 => Some(arr.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => Some(i64::from(arr.as_primitive::<UInt8Type>().value(i))),
        DataType::UInt16 => Some(i64::from(arr.as_primitive::<UInt16Type>().value(i))),
        DataType::UInt32 => Some(i64::from(arr.as_primitive::<UInt32Type>().value(i))),
        _ => None,
    };
    match int {
        Some(v) => KeyValue::Int(v),
        None => match text_at(arr, i) {
            Ok(Some(s)) => KeyValue::Str(s),
            _ => KeyValue::Null,
        },
    }
}

/// A text or integer cell as text; `None` for null.
fn text_at(arr: &dyn Array, i: usize) -> Result<Option<String>, String> {
    if arr.is_null(i) {
        return Ok(None);
    }
    let s = match arr.data_type() {
        DataType::Utf8 => arr.as_string::<i32>().value(i).to_owned(),
        DataType::LargeUtf8 => arr.as_string::<i64>().value(i).to_owned(),
        DataType::Utf8View => arr.as_string_view().value(i).to_owned(),
        DataType::UInt64 => arr.as_primitive::<UInt64Type>().value(i).to_string(),
        _ => match int_at(arr, i)? {
            Some(v) => v.to_string(),
            None => return Ok(None),
        },
    };
    Ok(Some(s))
}

/// An integer cell (any integer type, or text holding an integer); `None` for null.
fn int_at(arr: &dyn Array, i: usize) -> Result<Option<i64>, String> {
    if arr.is_null(i) {
        return Ok(None);
    }
    let v = match arr.data_type() {
        DataType::Int8 => i64::from(arr.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => i64::from(arr.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => i64::from(arr.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => arr.as_primitive::<Int64Type>().value(i),
        DataType::UInt8 => i64::from(arr.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => i64::from(arr.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => i64::from(arr.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => {
            let v = arr.as_primitive::<UInt64Type>().value(i);
            i64::try_from(v).map_err(|_| format!("{v} does not fit in int64"))?
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = text_at(arr, i)?.unwrap_or_default();
            s.trim()
                .parse::<i64>()
                .map_err(|_| format!("{s:?} is not an integer"))?
        }
        other => return Err(format!("type {other} is not an integer type")),
    };
    Ok(Some(v))
}

/// The list cell at `i` (List or LargeList); `None` for null.
fn list_at(arr: &dyn Array, i: usize) -> Option<ArrayRef> {
    if arr.is_null(i) {
        return None;
    }
    match arr.data_type() {
        DataType::List(_) => Some(arr.as_list::<i32>().value(i)),
        DataType::LargeList(_) => Some(arr.as_list::<i64>().value(i)),
        _ => None,
    }
}

fn is_text(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn request_at(
    behaviors: &ArrayRef,
    candidates: &ArrayRef,
    request_time: &ArrayRef,
    i: usize,
) -> Result<OwnedRequest, String> {
    let request_time = int_at(request_time.as_ref(), i)
        .map_err(|e| format!("request_time: {e}"))?
        .ok_or("request_time is null")?;
    let candidates = candidates_at(candidates.as_ref(), i)?;
    let behaviors = behaviors_at(behaviors.as_ref(), i)?;
    Ok(OwnedRequest {
        behaviors,
        candidates,
        request_time,
    })
}

fn candidates_at(arr: &dyn Array, i: usize) -> Result<Vec<String>, String> {
    if arr.is_null(i) {
        return Err("candidates is null".into());
    }
    if is_text(arr.data_type()) {
        let text = text_at(arr, i)?.unwrap_or_default();
        let values: Vec<serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| format!("candidates is not a JSON array: {e}"))?;
        return values
            .iter()
            .enumerate()
            .map(|(k, v)| json_id(v).ok_or_else(|| format!("candidates[{k}] is not a string")))
            .collect();
    }
    let list = list_at(arr, i).ok_or_else(|| {
        format!(
            "candidates has type {}, expected a list of strings or a JSON string",
            arr.data_type()
        )
    })?;
    (0..list.len())
        .map(|k| {
            text_at(list.as_ref(), k)
                .map_err(|e| format!("candidates[{k}]: {e}"))?
                .ok_or_else(|| format!("candidates[{k}] is null"))
        })
        .collect()
}

/// A JSON id: a string, or a number written as text.
fn json_id(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A behavior in a JSON cell (CSV, or a text `behaviors` column).
#[derive(Debug, Deserialize)]
struct JsonBehavior {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    item: Option<serde_json::Value>,
    #[serde(default)]
    category: Option<serde_json::Value>,
    #[serde(default)]
    features: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    action: Option<String>,
    timestamp: i64,
}

fn behaviors_at(arr: &dyn Array, i: usize) -> Result<Vec<OwnedBehavior>, String> {
    if arr.is_null(i) {
        // No history at all is a valid request (a new user).
        return Ok(Vec::new());
    }
    if is_text(arr.data_type()) {
        let text = text_at(arr, i)?.unwrap_or_default();
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let parsed: Vec<JsonBehavior> = serde_json::from_str(&text)
            .map_err(|e| format!("behaviors is not a JSON array of behaviors: {e}"))?;
        return parsed
            .into_iter()
            .enumerate()
            .map(|(k, b)| {
                let id =
                    b.id.as_ref()
                        .or(b.item.as_ref())
                        .and_then(json_id)
                        .ok_or_else(|| format!("behaviors[{k}]: no string \"id\" (or \"item\")"))?;
                let category = match &b.category {
                    None | Some(serde_json::Value::Null) => None,
                    Some(v) => Some(
                        json_id(v)
                            .ok_or_else(|| format!("behaviors[{k}]: category is not a string"))?,
                    ),
                };
                let features = b
                    .features
                    .iter()
                    .map(|(name, v)| {
                        json_id(v).map(|v| (name.clone(), v)).ok_or_else(|| {
                            format!("behaviors[{k}]: feature {name:?} is not a string")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(OwnedBehavior {
                    group: b.group,
                    id,
                    category,
                    features,
                    action: b.action,
                    timestamp: b.timestamp,
                })
            })
            .collect();
    }
    let list = list_at(arr, i).ok_or_else(|| {
        format!(
            "behaviors has type {}, expected a list of structs or a JSON string",
            arr.data_type()
        )
    })?;
    let structs: &StructArray = list.as_struct_opt().ok_or_else(|| {
        format!(
            "behaviors has elements of type {}, expected structs",
            list.data_type()
        )
    })?;
    let field = |name: &str| structs.column_by_name(name);
    let (id, item) = (field("id"), field("item"));
    let (group, category, action) = (field("group"), field("category"), field("action"));
    let timestamp = field("timestamp").ok_or("behaviors have no \"timestamp\" field")?;
    let features = field("features");
    if id.is_none() && item.is_none() {
        return Err("behaviors have no \"id\" (or \"item\") field".into());
    }
    let opt_text = |c: Option<&ArrayRef>, k: usize| -> Result<Option<String>, String> {
        match c {
            None => Ok(None),
            Some(c) => text_at(c.as_ref(), k),
        }
    };
    (0..structs.len())
        .map(|k| {
            if structs.is_null(k) {
                return Err(format!("behaviors[{k}] is null"));
            }
            let at = |e: String| format!("behaviors[{k}]: {e}");
            let the_id = match opt_text(id, k).map_err(at)? {
                Some(v) => v,
                None => opt_text(item, k)
                    .map_err(at)?
                    .ok_or_else(|| format!("behaviors[{k}]: no id"))?,
            };
            let timestamp = int_at(timestamp.as_ref(), k)
                .map_err(|e| format!("behaviors[{k}].timestamp: {e}"))?
                .ok_or_else(|| format!("behaviors[{k}].timestamp is null"))?;
            Ok(OwnedBehavior {
                group: opt_text(group, k).map_err(at)?,
                id: the_id,
                category: opt_text(category, k).map_err(at)?,
                features: match features {
                    Some(f) => features_at(f.as_ref(), k).map_err(at)?,
                    None => Vec::new(),
                },
                action: opt_text(action, k).map_err(at)?,
                timestamp,
            })
        })
        .collect()
}

/// A behavior's `features` cell: a map of text to text (Arrow Map), or null.
fn features_at(arr: &dyn Array, k: usize) -> Result<Vec<(String, String)>, String> {
    if arr.is_null(k) {
        return Ok(Vec::new());
    }
    let map = arr
        .as_map_opt()
        .ok_or_else(|| format!("features has type {}, expected a map", arr.data_type()))?;
    let entries = map.value(k);
    let (names, values) = (entries.column(0), entries.column(1));
    (0..entries.len())
        .map(|e| {
            let name = text_at(names.as_ref(), e)?.ok_or("a feature name is null")?;
            let value =
                text_at(values.as_ref(), e)?.ok_or_else(|| format!("feature {name:?} is null"))?;
            Ok((name, value))
        })
        .collect()
}
