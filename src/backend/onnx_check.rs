//! Checks an ONNX graph against the package's spec before any backend sees it.
//!
//! The graph is decoded with a handful of `prost` messages that declare only the fields these
//! checks read (field numbers from ONNX's `onnx.proto`); every other field, weights included, is
//! skipped or borrowed without a copy. What is checked:
//! - the bytes are an ONNX model at all (a truncated or garbage file is `INVALID_PACKAGE`, not
//!   a backend error);
//! - the graph has at most [`MAX_GRAPH_NODES`] nodes, no external data (the package format has
//!   none), and no constant shape that asks for more than [`MAX_CONSTANT_ELEMENTS`] elements;
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

const FLOAT: i32 = 1;
const INT64: i32 = 7;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
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

/// Checks the ONNX graph `bytes` (file `file` of the package) against `expect`. Decoding from
/// `Bytes` borrows the weights instead of copying them.
pub fn check(file: &str, bytes: Bytes, expect: &Expect<'_>) -> Result<()> {
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
    let mut constants: HashMap<&str, &TensorProto> = HashMap::new();
    for t in &graph.initializer {
        if t.data_location != 0 {
            return bad(
                file,
                format!(
                    "initializer {:?} uses external data, which packages do not have",
                    t.name
                ),
            );
        }
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
                if t.data_location != 0 {
                    return bad(file, format!("constant {out:?} uses external data"));
                }
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
        let Some(values) = shape_input
            .and_then(|s| constants.get(s.as_str()))
            .and_then(|t| int64_values(t))
        else {
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
