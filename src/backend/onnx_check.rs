//! Checks an ONNX graph against the package's spec before any backend sees it.
//!
//! The graph is decoded with a handful of `prost` messages that declare only the fields these
//! checks read (field numbers from ONNX's `onnx.proto`); every other field, weights included, is
//! skipped or borrowed without a copy. What is checked:
//! - the bytes are an ONNX model at all (a truncated or garbage file is `INVALID_PACKAGE`, not
//!   a backend error);
//! - the graph has at most [`MAX_GRAPH_NODES`] nodes and no constant shape that asks for more
//!   than [`MAX_CONSTANT_ELEMENTS`] elements;
//! - external data: only the graph's initializers may have it, and
//!   each reference names a file of the allow-list, lies inside it, starts at a multiple of
//!   [`EXTERNAL_ALIGNMENT`], and has exactly the bytes the tensor's type and shape need: a
//!   backend given the graph and the allow-listed files never reads outside them;
//! - its inputs are exactly the spec's, each with the dtype the runtime feeds, and its outputs
//!   are float32;
//! - every embedding table that an index input feeds (`Gather(table, input)`) has a row for
//!   every index the preprocessing can produce, so a package whose vocabularies, actions or
//!   time buckets outgrow its graph is refused at load instead of failing every request.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;

use crate::{Error, Result};

/// The most nodes a package graph may have. The exporter's graphs have about 100-150 nodes
/// (independent of widths and heads); the cap leaves room for far deeper models while keeping
/// a hostile graph of tens of thousands of nodes from taking minutes to optimise.
pub const MAX_GRAPH_NODES: usize = 4096;
/// The most elements a constant shape (the shape input of `ConstantOfShape`, `Expand`, `Tile`)
/// may ask for: 2^24 (64 MiB of float32). The exporter's graphs build no constant larger than
/// a few thousand elements; their large tensors are initializers, bounded by the file's size.
pub const MAX_CONSTANT_ELEMENTS: u128 = 1 << 24;
/// The alignment of every external tensor's offset (the package format's; a multiple of the
/// page size and of Windows' 64 KiB mapping granularity).
pub const EXTERNAL_ALIGNMENT: u64 = 65536;

const FLOAT: i32 = 1;
const INT64: i32 = 7;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "25")]
    functions: Vec<FunctionProto>,
}

#[derive(Clone, PartialEq, Message)]
struct FunctionProto {
    #[prost(message, repeated, tag = "7")]
    node: Vec<NodeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct SparseTensorProto {
    #[prost(message, optional, tag = "1")]
    values: Option<TensorProto>,
    #[prost(message, optional, tag = "2")]
    indices: Option<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "15")]
    sparse_initializer: Vec<SparseTensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "5")]
    t: Option<TensorProto>,
    #[prost(message, optional, boxed, tag = "6")]
    g: Option<Box<GraphProto>>,
    #[prost(message, repeated, tag = "10")]
    tensors: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    graphs: Vec<GraphProto>,
    #[prost(message, optional, tag = "22")]
    sparse_tensor: Option<SparseTensorProto>,
    #[prost(message, repeated, tag = "23")]
    sparse_tensors: Vec<SparseTensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(int64, repeated, tag = "7")]
    int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "bytes", tag = "9")]
    raw_data: Bytes,
    #[prost(message, repeated, tag = "13")]
    external_data: Vec<StringStringEntryProto>,
    #[prost(int32, tag = "14")]
    data_location: i32,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorType>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorType {
    #[prost(int32, tag = "1")]
    elem_type: i32,
}

/// The dtype the runtime feeds a graph input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    /// int64 (indices, lengths).
    I64,
    /// float32 (the encoder's outputs fed to the scorer).
    F32,
}

/// What the spec expects of one graph.
#[derive(Debug, Clone, Default)]
pub struct Expect<'a> {
    /// Every graph input and its dtype.
    pub inputs: Vec<(&'a str, InputType)>,
    /// Outputs the graph must have (float32).
    pub outputs: Vec<&'a str>,
    /// Index inputs and how many rows a table they index must have (largest index + 1).
    pub rows: Vec<(&'a str, usize)>,
}

fn bad<T>(file: &str, msg: impl std::fmt::Display) -> Result<T> {
    Err(Error::package(format!("{file}: {msg}")))
}

fn elem_type(v: &ValueInfoProto) -> Option<i32> {
    v.r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .map(|t| t.elem_type)
}

/// The int64 values of a small constant tensor (from `int64_data` or little-endian
/// `raw_data`); `None` when it is not an int64 tensor.
fn int64_values(t: &TensorProto) -> Option<Vec<i64>> {
    if t.data_type != INT64 {
        return None;
    }
    if !t.int64_data.is_empty() {
        return Some(t.int64_data.clone());
    }
    Some(
        t.raw_data
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                i64::from_le_bytes(b)
            })
            .collect(),
    )
}

/// The bytes of one element of ONNX data type `data_type`, for the types that may be stored as
/// external data: those both backends read from raw bytes (tract reads no other type from raw
/// bytes).
fn element_size(data_type: i32) -> Option<u64> {
    Some(match data_type {
        2 | 3 | 9 => 1,       // uint8, int8, bool
        4 | 5 | 10 => 2,      // uint16, int16, float16
        FLOAT | 6 | 12 => 4,  // float, int32, uint32
        INT64 | 11 | 13 => 8, // int64, double, uint64
        _ => return None,
    })
}

/// Why a location names no allowed file, for the message.
fn location_problem(location: &str) -> &'static str {
    if location.starts_with('/') || location.starts_with('\\') || location.contains(':') {
        "an absolute path"
    } else if location.split(['/', '\\']).any(|c| c == "..") {
        "a path outside the package"
    } else {
        "not one of the package's external data files"
    }
}

/// A decimal integer as ONNX writes offsets and lengths: ASCII digits only (no sign, space or
/// prefix, which backends might parse differently), at most `u64::MAX`.
fn parse_decimal(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Checks the external data reference of initializer `t`: keys `location`, `offset` and
/// `length` (each exactly once; `checksum` is allowed and ignored), the location one of
/// `files` (name, size in bytes), the offset a multiple of [`EXTERNAL_ALIGNMENT`], the range
/// inside the file (no overflow), no inline `raw_data` besides, and the length exactly the
/// tensor's element count (dims checked for overflow) times its element size.
fn check_external(file: &str, t: &TensorProto, files: &[(&str, u64)]) -> Result<()> {
    let name = &t.name;
    let (mut location, mut offset, mut length) = (None, None, None);
    for e in &t.external_data {
        let slot = match e.key.as_str() {
            "location" => &mut location,
            "offset" => &mut offset,
            "length" => &mut length,
            "checksum" => continue,
            other => {
                return bad(
                    file,
                    format!("initializer {name:?}: unknown external data key {other:?}"),
                )
            }
        };
        if slot.replace(e.value.as_str()).is_some() {
            return bad(
                file,
                format!(
                    "initializer {name:?}: external data key {:?} given twice",
                    e.key
                ),
            );
        }
    }
    let (Some(location), Some(offset), Some(length)) = (location, offset, length) else {
        return bad(
            file,
            format!("initializer {name:?}: external data needs a location, an offset and a length"),
        );
    };
    let Some(&(_, size)) = files.iter().find(|(n, _)| *n == location) else {
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        return bad(
            file,
            format!(
                "initializer {name:?}: external data location {location:?} is {} \
                 (allowed: {names:?})",
                location_problem(location)
            ),
        );
    };
    let (Some(offset), Some(length)) = (parse_decimal(offset), parse_decimal(length)) else {
        return bad(
            file,
            format!(
                "initializer {name:?}: external data offset {offset:?} and length {length:?} \
                 must be decimal integers"
            ),
        );
    };
    if offset % EXTERNAL_ALIGNMENT != 0 {
        return bad(
            file,
            format!(
                "initializer {name:?}: external data offset {offset} is not a multiple of \
                 {EXTERNAL_ALIGNMENT}"
            ),
        );
    }
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return bad(
            file,
            format!(
                "initializer {name:?}: external data range {offset} + {length} bytes lies \
                 outside {location:?} ({size} bytes)"
            ),
        );
    }
    if !t.raw_data.is_empty() {
        return bad(
            file,
            format!("initializer {name:?} has both raw_data and external data"),
        );
    }
    let Some(elem) = element_size(t.data_type) else {
        return bad(
            file,
            format!(
                "initializer {name:?}: ONNX data type {} cannot be stored as external data",
                t.data_type
            ),
        );
    };
    let bytes = t
        .dims
        .iter()
        .try_fold(elem, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?));
    if bytes != Some(length) {
        let need = bytes.map_or_else(|| "more than 2^64".to_owned(), |b| b.to_string());
        return bad(
            file,
            format!(
                "initializer {name:?}: external data length {length} differs from its shape \
                 {:?} x {elem} bytes = {need} bytes",
                t.dims
            ),
        );
    }
    Ok(())
}

/// Refuses external data in every tensor under `graph` (attributes and subgraphs, recursively)
/// except its own initializers when `top` is set: only the top-level initializers may be
/// external (the only ones the runtime checks and hands a backend data for).
fn no_nested_external(file: &str, graph: &GraphProto, top: bool) -> Result<()> {
    let refuse = |what: &str, t: &TensorProto| {
        if t.data_location != 0 || !t.external_data.is_empty() {
            bad(
                file,
                format!(
                    "{what} {:?} uses external data, which only the graph's initializers may",
                    t.name
                ),
            )
        } else {
            Ok(())
        }
    };
    let sparse = |s: &SparseTensorProto| -> Result<()> {
        for t in s.values.iter().chain(&s.indices) {
            refuse("sparse tensor", t)?;
        }
        Ok(())
    };
    if !top {
        for t in &graph.initializer {
            refuse("subgraph initializer", t)?;
        }
    }
    for s in &graph.sparse_initializer {
        sparse(s)?;
    }
    no_nested_in_nodes(file, &graph.node, &refuse, &sparse)
}

fn no_nested_in_nodes(
    file: &str,
    nodes: &[NodeProto],
    refuse: &dyn Fn(&str, &TensorProto) -> Result<()>,
    sparse: &dyn Fn(&SparseTensorProto) -> Result<()>,
) -> Result<()> {
    for n in nodes {
        for a in &n.attribute {
            for t in a.t.iter().chain(&a.tensors) {
                refuse("constant", t)?;
            }
            for s in a.sparse_tensor.iter().chain(&a.sparse_tensors) {
                sparse(s)?;
            }
            for g in a.g.iter().map(|g| &**g).chain(&a.graphs) {
                no_nested_external(file, g, false)?;
            }
        }
    }
    Ok(())
}

/// Checks only the external data of the ONNX graph `bytes` (file `file`): every reference is
/// one [`check`] accepts with the allow-list `external` (name, size in bytes), and no tensor
/// but a top-level initializer has external data. [`super::load_graph`] runs it on every
/// graph, so that no backend sees an unchecked reference even from a caller that skipped
/// [`check`].
pub fn check_external_refs(file: &str, bytes: Bytes, external: &[(&str, u64)]) -> Result<()> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| Error::package(format!("{file} is not a valid ONNX model: {e}")))?;
    let Some(graph) = model.graph else {
        return bad(file, "the ONNX model has no graph");
    };
    external_refs(file, &model.functions, &graph, external)
}

/// The external data checks of [`check`] and [`check_external_refs`].
fn external_refs(
    file: &str,
    functions: &[FunctionProto],
    graph: &GraphProto,
    external: &[(&str, u64)],
) -> Result<()> {
    no_nested_external(file, graph, true)?;
    for f in functions {
        no_nested_in_nodes(
            file,
            &f.node,
            &|what, t| {
                if t.data_location != 0 || !t.external_data.is_empty() {
                    bad(
                        file,
                        format!("{what} {:?} of a function uses external data", t.name),
                    )
                } else {
                    Ok(())
                }
            },
            &|_| Ok(()),
        )?;
    }
    for t in &graph.initializer {
        match t.data_location {
            0 if t.external_data.is_empty() => {}
            0 => {
                return bad(
                    file,
                    format!(
                        "initializer {:?} has external data entries but is not marked external",
                        t.name
                    ),
                )
            }
            1 => check_external(file, t, external)?,
            other => {
                return bad(
                    file,
                    format!("initializer {:?} has unknown data_location {other}", t.name),
                )
            }
        }
    }
    Ok(())
}

/// Checks the ONNX graph `bytes` (file `file` of the package) against `expect`. `external`
/// lists the files its initializers may keep their data in (name as the graph writes it in
/// `location`, size in bytes): the spec's `graph.external_data`, already resolved inside the
/// package and size-checked; empty, no external data is allowed. Decoding from `Bytes`
/// borrows the weights instead of copying them.
pub fn check(
    file: &str,
    bytes: Bytes,
    expect: &Expect<'_>,
    external: &[(&str, u64)],
) -> Result<()> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| Error::package(format!("{file} is not a valid ONNX model: {e}")))?;
    let Some(graph) = model.graph else {
        return bad(file, "the ONNX model has no graph");
    };
    if graph.node.len() > MAX_GRAPH_NODES {
        return bad(
            file,
            format!(
                "the graph has {} nodes, more than the {MAX_GRAPH_NODES} allowed",
                graph.node.len()
            ),
        );
    }
    external_refs(file, &model.functions, &graph, external)?;
    let mut constants: HashMap<&str, &TensorProto> = HashMap::new();
    for t in &graph.initializer {
        constants.insert(t.name.as_str(), t);
    }
    for n in &graph.node {
        if n.op_type == "Constant" {
            if let (Some(out), Some(t)) = (
                n.output.first(),
                n.attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref()),
            ) {
                constants.insert(out.as_str(), t);
            }
        }
    }
    // Constant shapes that ask for an absurd number of elements.
    for n in &graph.node {
        let shape_input = match n.op_type.as_str() {
            "ConstantOfShape" => n.input.first(),
            "Expand" | "Tile" => n.input.get(1),
            _ => None,
        };
        let Some(shape) = shape_input.and_then(|s| constants.get(s.as_str())) else {
            continue;
        };
        if shape.data_location != 0 {
            return bad(
                file,
                format!(
                    "the shape {:?} of a {} node is external data (shapes are small and stay \
                     inline)",
                    shape.name, n.op_type
                ),
            );
        }
        let Some(values) = int64_values(shape) else {
            continue;
        };
        let elements = values.iter().try_fold(1u128, |acc, &d| {
            acc.checked_mul(u128::try_from(d.max(0)).ok()?)
        });
        if elements.is_none_or(|e| e > MAX_CONSTANT_ELEMENTS) {
            return bad(
                file,
                format!(
                    "a {} node asks for shape {values:?}, more than {MAX_CONSTANT_ELEMENTS} elements",
                    n.op_type
                ),
            );
        }
    }
    // Inputs: exactly the expected names, each with its dtype.
    let real_inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !constants.contains_key(i.name.as_str()))
        .collect();
    for i in &real_inputs {
        let Some((_, want)) = expect.inputs.iter().find(|(n, _)| *n == i.name) else {
            let names: Vec<&str> = expect.inputs.iter().map(|(n, _)| *n).collect();
            return bad(
                file,
                format!(
                    "graph input {:?} is not one of the spec's inputs {names:?}",
                    i.name
                ),
            );
        };
        let want_code = match want {
            InputType::I64 => INT64,
            InputType::F32 => FLOAT,
        };
        if elem_type(i) != Some(want_code) {
            return bad(
                file,
                format!(
                    "graph input {:?} has ONNX element type {:?}, expected {} ({want:?})",
                    i.name,
                    elem_type(i),
                    want_code
                ),
            );
        }
    }
    for (name, _) in &expect.inputs {
        if !real_inputs.iter().any(|i| i.name == *name) {
            return bad(file, format!("the graph has no input {name:?}"));
        }
    }
    for name in &expect.outputs {
        match graph.output.iter().find(|o| o.name == *name) {
            None => return bad(file, format!("the graph has no output {name:?}")),
            Some(o) if elem_type(o) != Some(FLOAT) => {
                return bad(
                    file,
                    format!("graph output {name:?} is not float32 ({:?})", elem_type(o)),
                )
            }
            Some(_) => {}
        }
    }
    // Tables indexed by each index input must cover every index the runtime can produce.
    for (input, need) in &expect.rows {
        let mut tables = 0;
        for n in graph.node.iter().filter(|n| n.op_type == "Gather") {
            if n.input.get(1).map(String::as_str) != Some(*input) {
                continue;
            }
            let Some(table) = n.input.first().and_then(|t| constants.get(t.as_str())) else {
                continue;
            };
            tables += 1;
            let rows = table.dims.first().copied().unwrap_or(0);
            if usize::try_from(rows).map_or(true, |r| r < *need) {
                return bad(
                    file,
                    format!(
                        "the table {:?} indexed by input {input:?} has {rows} rows, but the \
                         package's vocabularies, actions or time buckets produce indices up to \
                         {} (spec and graph do not belong together)",
                        table.name,
                        need - 1
                    ),
                );
            }
        }
        if tables == 0 {
            return bad(
                file,
                format!(
                    "no embedding table is gathered by input {input:?} (Gather(table, {input}))"
                ),
            );
        }
    }
    Ok(())
}
