//! Embedding lookups served from the mapped table file, outside the engine.
//!
//! The exporter's graphs look embeddings up with `Gather(table, ids)`: `table` an initializer
//! kept in `tables.bin` (ONNX external data) and `ids` a graph input. Handed the graph as it
//! is, each engine makes its own copy of every table: ONNX Runtime copies external data given
//! from memory into its session, tract inlines it. A package is loaded as up to three graphs
//! (`model.onnx`, `encoder.onnx`, `scorer.onnx`) on up to [`super::MAX_SESSIONS`] ONNX Runtime
//! sessions each, so a 2.5 GB item table became 7.5 GB per session, none of it shared with
//! another process.
//!
//! [`lift`] rewrites such a graph before the engine sees it: each of these `Gather` nodes is
//! removed and its output becomes a new float32 graph input, and a table no node reads any more
//! is dropped from the initializers. [`LiftedGraph`] then fills those inputs at every call by
//! copying the rows the call's ids select straight out of the mapped `tables.bin` (a few
//! hundred KiB per request). The tables are read only through the one read-only mapping, so
//! every graph, session and thread of a process, and every process on the host, shares the
//! same page-cache pages, and only the rows requests touch become resident. The engines still
//! own every other weight (a few MB).
//!
//! The rewrite works on the protobuf wire format: every field of the model is kept byte for
//! byte except the removed nodes and initializers and the added inputs. A `Gather` is lifted
//! only when the result is certainly the same: default axis 0, a float32 table with external
//! data, indices that are an int64 graph input, and a graph without subgraphs (`If`, `Loop`,
//! `Scan` could read the table from inside). Out-of-range ids, which the preprocessing never
//! produces, are an error here as they are in the engines.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use prost::encoding::{decode_varint, encode_key, encode_varint, WireType};
use prost::Message;

use super::{ExternalFile, Feed, Fetched, Graph, PlanStats};
use crate::vocab::{touch, LOOKAHEAD};
use crate::{Error, Result};

const FLOAT: i32 = 1;
const INT64: i32 = 7;
/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: i32 = 1;
const GRAPH_FIELD: u32 = 7;
const NODE_FIELD: u32 = 1;
const INITIALIZER_FIELD: u32 = 5;
const INPUT_FIELD: u32 = 11;

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
    #[prost(string, tag = "7")]
    domain: String,
}

#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int64, tag = "3")]
    i: i64,
    /// Present when the attribute holds a graph (`g`, field 6) or graphs (`graphs`, 11).
    #[prost(bytes = "vec", optional, tag = "6")]
    g: Option<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "11")]
    graphs: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(message, repeated, tag = "13")]
    external_data: Vec<StringStringEntryProto>,
    #[prost(int32, tag = "14")]
    data_location: i32,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
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
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

/// One lifted lookup: the graph input `output` is `table[indices]`, rows of the table taken
/// from `file` at `offset`.
#[derive(Debug, Clone)]
pub struct Lifted {
    /// The new graph input (the removed `Gather`'s output).
    pub output: String,
    /// The int64 graph input holding the ids.
    pub indices: String,
    /// The table (initializer) name, for messages.
    pub table: String,
    /// Index into the external files.
    file: usize,
    offset: usize,
    rows: usize,
    /// float32 values per row (the product of the table's dims after the first).
    width: usize,
    /// The table's dims after the first (the trailing dims of the output).
    row_dims: Vec<usize>,
}

/// The fields of one protobuf message: (field number, wire type, the field's bytes with its
/// key).
fn fields(buf: &[u8]) -> Result<Vec<(u32, u64, std::ops::Range<usize>)>> {
    let bad = || Error::package("a graph is not a well-formed ONNX protobuf");
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let start = buf.len() - rest.len();
        let key = decode_varint(&mut rest).map_err(|_| bad())?;
        let wire = key & 7;
        let tag = u32::try_from(key >> 3).map_err(|_| bad())?;
        let skip = match wire {
            0 => {
                decode_varint(&mut rest).map_err(|_| bad())?;
                0
            }
            1 => 8,
            2 => {
                usize::try_from(decode_varint(&mut rest).map_err(|_| bad())?).map_err(|_| bad())?
            }
            5 => 4,
            _ => return Err(bad()),
        };
        rest = rest.get(skip..).ok_or_else(bad)?;
        out.push((tag, wire, start..buf.len() - rest.len()));
    }
    Ok(out)
}

/// The payload of a length-delimited field (its bytes after the key and length).
fn payload(field: &[u8]) -> Result<&[u8]> {
    let bad = || Error::package("a graph is not a well-formed ONNX protobuf");
    let mut rest = field;
    decode_varint(&mut rest).map_err(|_| bad())?;
    let len = usize::try_from(decode_varint(&mut rest).map_err(|_| bad())?).map_err(|_| bad())?;
    rest.get(..len).ok_or_else(bad)
}

fn push_message(out: &mut Vec<u8>, tag: u32, body: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// Rewrites `bytes` (already checked by [`super::onnx_check`], external references included)
/// so that the engine does not hold the tables [`LiftedGraph`] serves; returns the graph
/// unchanged and no lookups when there is nothing to lift.
pub fn lift(bytes: &Bytes, external: &[ExternalFile]) -> Result<(Bytes, Vec<Lifted>)> {
    let unchanged = || Ok((bytes.clone(), Vec::new()));
    let model = ModelProto::decode(bytes.clone())
        .map_err(|e| Error::package(format!("not an ONNX model: {e}")))?;
    let Some(graph) = model.graph else {
        return unchanged();
    };
    let has_subgraphs = graph
        .node
        .iter()
        .flat_map(|n| &n.attribute)
        .any(|a| a.g.is_some() || !a.graphs.is_empty());
    if has_subgraphs {
        return unchanged();
    }
    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let inputs: HashMap<&str, &ValueInfoProto> =
        graph.input.iter().map(|v| (v.name.as_str(), v)).collect();
    let outputs: HashSet<&str> = graph.output.iter().map(|v| v.name.as_str()).collect();
    let mut lifted = Vec::new();
    let mut new_inputs = Vec::new();
    let mut dropped_nodes = HashSet::new();
    for (k, node) in graph.node.iter().enumerate() {
        let Some(l) = liftable(node, &inits, &inputs, &outputs, external) else {
            continue;
        };
        let (l, info) = l;
        dropped_nodes.insert(k);
        new_inputs.push(info.encode_to_vec());
        lifted.push(l);
    }
    if lifted.is_empty() {
        return unchanged();
    }
    let still_used: HashSet<&str> = graph
        .node
        .iter()
        .enumerate()
        .filter(|(k, _)| !dropped_nodes.contains(k))
        .flat_map(|(_, n)| n.input.iter().map(String::as_str))
        .collect();
    let dropped_inits: HashSet<usize> = graph
        .initializer
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            lifted.iter().any(|l| l.table == t.name)
                && !still_used.contains(t.name.as_str())
                && !outputs.contains(t.name.as_str())
        })
        .map(|(k, _)| k)
        .collect();

    let mut new_graph = Vec::new();
    let mut out = Vec::with_capacity(bytes.len());
    for (tag, wire, range) in fields(bytes)? {
        if tag != GRAPH_FIELD || wire != 2 {
            out.extend_from_slice(&bytes[range]);
            continue;
        }
        let body = payload(&bytes[range])?;
        let (mut node_k, mut init_k) = (0, 0);
        for (gtag, _, grange) in fields(body)? {
            let keep = match gtag {
                NODE_FIELD => {
                    node_k += 1;
                    !dropped_nodes.contains(&(node_k - 1))
                }
                INITIALIZER_FIELD => {
                    init_k += 1;
                    !dropped_inits.contains(&(init_k - 1))
                }
                _ => true,
            };
            if keep {
                new_graph.extend_from_slice(&body[grange]);
            }
        }
        for info in &new_inputs {
            push_message(&mut new_graph, INPUT_FIELD, info);
        }
        push_message(&mut out, GRAPH_FIELD, &new_graph);
        new_graph.clear();
    }
    Ok((Bytes::from(out), lifted))
}

/// The lookup a node is, when it is one this module can serve (see the module docs), with the
/// graph input that replaces it.
fn liftable(
    node: &NodeProto,
    inits: &HashMap<&str, &TensorProto>,
    inputs: &HashMap<&str, &ValueInfoProto>,
    outputs: &HashSet<&str>,
    external: &[ExternalFile],
) -> Option<(Lifted, ValueInfoProto)> {
    let axis_zero = node.attribute.iter().all(|a| a.name != "axis" || a.i == 0);
    if node.op_type != "Gather"
        || !(node.domain.is_empty() || node.domain == "ai.onnx")
        || !axis_zero
        || node.input.len() != 2
        || node.output.len() != 1
        || outputs.contains(node.output[0].as_str())
    {
        return None;
    }
    let table = inits.get(node.input[0].as_str())?;
    let ids = inputs.get(node.input[1].as_str())?;
    let id_type = ids.r#type.as_ref()?.tensor_type.as_ref()?;
    if table.data_type != FLOAT
        || table.data_location != EXTERNAL
        || table.dims.is_empty()
        || id_type.elem_type != INT64
    {
        return None;
    }
    let value = |key: &str| {
        table
            .external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let file = external
        .iter()
        .position(|f| Some(f.name.as_str()) == value("location"))?;
    let offset: usize = value("offset")?.parse().ok()?;
    let length: usize = value("length")?.parse().ok()?;
    let dims: Vec<usize> = table
        .dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()?;
    let rows = dims[0];
    let width = dims[1..]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))?;
    // The checks already made (onnx_check): the range lies in the file and has exactly the
    // bytes the dims need. Checked again, as the copy at run time relies on it.
    let end = offset.checked_add(length)?;
    if end > external[file].data.len() || rows.checked_mul(width)?.checked_mul(4)? != length {
        return None;
    }
    let mut shape = id_type.shape.clone()?;
    shape.dim.extend(dims[1..].iter().map(|&d| Dimension {
        dim_value: i64::try_from(d).ok(),
        dim_param: None,
    }));
    let info = ValueInfoProto {
        name: node.output[0].clone(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorType {
                elem_type: FLOAT,
                shape: Some(shape),
            }),
        }),
    };
    Some((
        Lifted {
            output: node.output[0].clone(),
            indices: node.input[1].clone(),
            table: table.name.clone(),
            file,
            offset,
            rows,
            width,
            row_dims: dims[1..].to_vec(),
        },
        info,
    ))
}

/// A graph whose lookups [`lift`] took out of the engine: fills their inputs from the mapped
/// tables, then runs the engine's graph.
pub struct LiftedGraph {
    inner: Box<dyn Graph>,
    lifted: Vec<Lifted>,
    /// The external files the tables are read from (clones of the mapping, not copies).
    external: Vec<Bytes>,
}

impl LiftedGraph {
    /// Wraps `inner`, loaded from the graph [`lift`] returned with `lifted`.
    pub fn new(inner: Box<dyn Graph>, lifted: Vec<Lifted>, external: &[ExternalFile]) -> Self {
        LiftedGraph {
            inner,
            lifted,
            external: external.iter().map(|f| f.data.clone()).collect(),
        }
    }

    /// `l`'s rows for the ids `ids`, as float32 (little-endian in the file).
    fn gather(&self, l: &Lifted, ids: &[i64]) -> Result<Vec<f32>> {
        let file = &self.external[l.file];
        let row_bytes = l.width * 4;
        let mut out = Vec::with_capacity(ids.len() * l.width);
        let start = |id: i64| {
            usize::try_from(id)
                .ok()
                .filter(|&r| r < l.rows)
                .map(|row| l.offset + row * row_bytes)
        };
        for chunk in ids.chunks(LOOKAHEAD) {
            // Every row's cache lines first, with no read waiting on another: the misses of
            // rows scattered over a big table overlap instead of queueing (vocab::touch).
            let mut sum = 0u8;
            for &id in chunk {
                if let Some(at) = start(id) {
                    sum ^= touch(file, at..at + row_bytes);
                }
            }
            std::hint::black_box(sum);
            for &id in chunk {
                let at = start(id).ok_or_else(|| {
                    Error::Backend(format!(
                        "index {id} of input {:?} is outside table {:?} ({} rows)",
                        l.indices, l.table, l.rows
                    ))
                })?;
                let bytes = file
                    .get(at..at + row_bytes)
                    .ok_or_else(|| Error::Backend(format!("table {:?} is truncated", l.table)))?;
                out.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
        }
        Ok(out)
    }
}

impl Graph for LiftedGraph {
    fn run(&self, feeds: &[Feed<'_>], outputs: &[&str]) -> Result<Vec<Fetched>> {
        let mut values = Vec::with_capacity(self.lifted.len());
        for l in &self.lifted {
            let (shape, ids) = feeds
                .iter()
                .find_map(|f| match f {
                    Feed::I64(name, shape, data) if *name == l.indices => Some((*shape, *data)),
                    _ => None,
                })
                .ok_or_else(|| {
                    Error::Backend(format!(
                        "no int64 tensor fed for graph input {:?}",
                        l.indices
                    ))
                })?;
            let mut out_shape = shape.to_vec();
            out_shape.extend_from_slice(&l.row_dims);
            values.push((out_shape, self.gather(l, ids)?));
        }
        let mut all: Vec<Feed<'_>> = feeds.to_vec();
        for (l, (shape, data)) in self.lifted.iter().zip(&values) {
            all.push(Feed::F32(&l.output, shape, data));
        }
        self.inner.run(&all, outputs)
    }

    fn plan_stats(&self) -> PlanStats {
        self.inner.plan_stats()
    }

    fn sessions_busy(&self) -> usize {
        self.inner.sessions_busy()
    }

    fn sessions(&self) -> usize {
        self.inner.sessions()
    }
}
