//! Decoding: bytes -> `ModelProto` -> [`Graph`].
//!
//! The bytes are first checked by [`crate::wire`] (no protobuf groups, bounded nesting, sane
//! lengths), then decoded by `onnx-protobuf` with a recursion limit, then converted: tensor data
//! moves out of the protobuf message without a copy where ONNX stores it as `raw_data`. External
//! data is read as each tensor is converted, then the graph is validated and sorted, and shapes
//! are inferred when asked for.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use kiln_core::{DataType, Dim, Shape};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, TensorProto, TypeProto,
    ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataLocation,
    tensor_shape_proto::dimension, type_proto,
};
use protobuf::CodedInputStream;

use crate::attribute::{AttrValue, Attribute};
use crate::error::{NodeRef, OnnxError, Origin, Result};
use crate::external::{self, ExternalCtx};
use crate::graph::{Graph, ModelMetadata, Node, OpsetImport, ValueInfo, ValueKind, is_onnx_domain};
use crate::tensor::Tensor;
use crate::wire;

/// IR versions kiln reads (ONNX 1.0's IR 3 up to IR 11).
const MIN_IR_VERSION: i64 = 3;
/// The IR version written by onnx 1.23 (newer IR versions add element types, which kiln
/// refuses per tensor).
const MAX_IR_VERSION: i64 = 14;

/// What [`load_with`] and [`from_bytes_with`] do beyond decoding.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Run shape and type inference for registered ops (default true).
    pub infer_shapes: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { infer_shapes: true }
    }
}

/// Loads the ONNX model in the file at `path` (external data is read from its folder).
pub fn load(path: impl AsRef<Path>) -> Result<Graph> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with options. The file is streamed twice (a wire-format check, then the decoder)
/// and never held in memory whole; tensor data ends up in the graph without further copies.
pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Graph> {
    let path = path.as_ref();
    let origin = Origin::file(path);
    load_file(path, opts).map_err(|e| e.in_file(&origin))
}

fn load_file(path: &Path, opts: &LoadOptions) -> Result<Graph> {
    let io_err = |e: std::io::Error| OnnxError::Io {
        file: Origin::file(path),
        what: "the model file".into(),
        source: e,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    tracing::debug!(path = %path.display(), bytes = len, "loading ONNX model");
    let stats = wire::scan_reader(&mut file, Some(len))?;
    tracing::trace!(?stats, "wire scan passed");
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut is = CodedInputStream::from_buf_read(&mut reader);
    let model = decode(&mut is)?;
    build(model, Some(path), opts)
}

/// Decodes an ONNX model held in memory. Models with external data must be loaded from their
/// file instead ([`load`]).
pub fn from_bytes(bytes: &[u8]) -> Result<Graph> {
    from_bytes_with(bytes, &LoadOptions::default())
}

/// [`from_bytes`] with options.
pub fn from_bytes_with(bytes: &[u8], opts: &LoadOptions) -> Result<Graph> {
    let origin = Origin::bytes();
    let run = || -> Result<Graph> {
        wire::scan_bytes(bytes)?;
        let mut is = CodedInputStream::from_bytes(bytes);
        let model = decode(&mut is)?;
        build(model, None, opts)
    };
    run().map_err(|e| e.in_file(&origin))
}

/// Decodes one serialised `TensorProto` (the `.pb` files of ONNX's test data sets) into a
/// [`Tensor`]. The bytes get the same hostile-input pre-scan as models; tensors that point to
/// external data are refused (there is no model folder to resolve them against).
pub fn tensor_from_pb(bytes: &[u8]) -> Result<Tensor> {
    let origin = Origin::bytes();
    let run = || -> Result<Tensor> {
        wire::scan_bytes_as(wire::Msg::Tensor, bytes)?;
        let mut is = CodedInputStream::from_bytes(bytes);
        is.set_recursion_limit(u32::try_from(wire::MAX_DEPTH).unwrap_or(100));
        let tp = TensorProto::parse_from(&mut is).map_err(|e| OnnxError::Decode {
            file: Origin::bytes(),
            detail: format!("offset {}: protobuf decoding failed: {e}", is.pos()),
        })?;
        let ctx = Ctx {
            opsets: Vec::new(),
            external: ExternalCtx::new(None),
            path: None,
        };
        convert_tensor(tp, "tensor", &ctx)
    };
    run().map_err(|e| e.in_file(&origin))
}

fn decode(is: &mut CodedInputStream<'_>) -> Result<ModelProto> {
    is.set_recursion_limit(u32::try_from(wire::MAX_DEPTH).unwrap_or(100));
    ModelProto::parse_from(is).map_err(|e| OnnxError::Decode {
        file: Origin::bytes(),
        detail: format!("offset {}: protobuf decoding failed: {e}", is.pos()),
    })
}

/// ModelProto -> validated Graph.
fn build(mut model: ModelProto, path: Option<&Path>, opts: &LoadOptions) -> Result<Graph> {
    let opsets = check_model(&model)?;
    let Some(graph) = model.graph.take() else {
        return Err(model_err(
            "the model has no graph",
            "The file holds model metadata only; re-export the full model",
        ));
    };
    let ctx = Ctx {
        opsets,
        external: ExternalCtx::new(path),
        path,
    };
    let mut g = convert_graph(graph, &ctx)?;
    g.metadata = ModelMetadata {
        ir_version: model.ir_version,
        producer_name: std::mem::take(&mut model.producer_name),
        producer_version: std::mem::take(&mut model.producer_version),
        domain: std::mem::take(&mut model.domain),
        model_version: model.model_version,
        doc_string: std::mem::take(&mut model.doc_string),
        props: model
            .metadata_props
            .drain(..)
            .map(|p| (p.key, p.value))
            .collect(),
    };
    drop(model);
    crate::validate::validate_and_sort(&mut g)?;
    if opts.infer_shapes {
        crate::infer_shapes(&mut g)?;
    }
    tracing::debug!(
        nodes = g.nodes.len(),
        initializers = g.initializers.len(),
        "model loaded"
    );
    Ok(g)
}

fn model_err(problem: impl Into<String>, fix: impl Into<String>) -> OnnxError {
    OnnxError::Model {
        file: Origin::bytes(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// IR version and opset imports.
fn check_model(model: &ModelProto) -> Result<Vec<OpsetImport>> {
    let ir = model.ir_version;
    if ir < MIN_IR_VERSION {
        return Err(model_err(
            format!(
                "IR version {ir} is older than kiln reads ({MIN_IR_VERSION}..={MAX_IR_VERSION})"
            ),
            "Convert the model with a newer onnx (onnx.version_converter) or re-export it",
        ));
    }
    if ir > MAX_IR_VERSION {
        return Err(model_err(
            format!(
                "IR version {ir} is newer than kiln reads ({MIN_IR_VERSION}..={MAX_IR_VERSION})"
            ),
            "Re-export the model with an older onnx, or update kiln",
        ));
    }
    let mut opsets: Vec<OpsetImport> = Vec::new();
    for o in &model.opset_import {
        let domain = if is_onnx_domain(&o.domain) {
            String::new()
        } else {
            o.domain.clone()
        };
        if let Some(prev) = opsets.iter().find(|p| p.domain == domain) {
            if prev.version != o.version {
                return Err(model_err(
                    format!(
                        "domain '{}' is imported twice, at opsets {} and {}",
                        if domain.is_empty() {
                            "ai.onnx"
                        } else {
                            &domain
                        },
                        prev.version,
                        o.version
                    ),
                    "Keep one opset_import entry per domain (re-export the model)",
                ));
            }
            continue;
        }
        if domain.is_empty() && !(crate::MIN_OPSET..=crate::MAX_OPSET).contains(&o.version) {
            return Err(model_err(
                format!(
                    "the model imports default-domain opset {}; kiln supports opsets {} to {}",
                    o.version,
                    crate::MIN_OPSET,
                    crate::MAX_OPSET
                ),
                "Re-export the model with a supported opset (e.g. torch.onnx.export(..., \
                 opset_version=17)) or convert it with onnx.version_converter",
            ));
        }
        if domain.is_empty() && o.version > crate::CHECKED_OPSET {
            tracing::warn!(
                "default-domain opset {} is newer than {}, the newest kiln's ops were written \
                 against; ops changed since then run with kiln's newest semantics",
                o.version,
                crate::CHECKED_OPSET
            );
        }
        opsets.push(OpsetImport {
            domain,
            version: o.version,
        });
    }
    Ok(opsets)
}

struct Ctx<'a> {
    opsets: Vec<OpsetImport>,
    external: ExternalCtx,
    path: Option<&'a Path>,
}

fn graph_err(graph: &str, problem: impl Into<String>, fix: impl Into<String>) -> OnnxError {
    OnnxError::Graph {
        file: Origin::bytes(),
        graph: graph.to_string(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

fn convert_graph(mut gp: GraphProto, ctx: &Ctx<'_>) -> Result<Graph> {
    let name = std::mem::take(&mut gp.name);
    if let Some(sparse) = gp.sparse_initializer.first() {
        let tname = sparse.values.as_ref().map_or("", |v| v.name.as_str());
        return Err(OnnxError::tensor(
            tname,
            format!("graph '{name}' has sparse initialisers, which kiln does not support"),
            "Convert sparse initialisers to dense ones before loading (e.g. with onnx's \
             numpy_helper)",
        ));
    }
    let mut initializers = Vec::with_capacity(gp.initializer.len());
    let mut init_names = HashSet::new();
    for (i, tp) in gp.initializer.drain(..).enumerate() {
        if tp.name.is_empty() {
            return Err(graph_err(
                &name,
                format!("initialiser #{i} has no name"),
                "Give every initialiser a name (re-export the model)",
            ));
        }
        if !init_names.insert(tp.name.clone()) {
            return Err(graph_err(
                &name,
                format!("two initialisers are named '{}'", tp.name),
                "Initialiser names must be unique; re-export the model",
            ));
        }
        initializers.push(convert_tensor(tp, "", ctx)?);
    }

    let mut inputs = Vec::with_capacity(gp.input.len());
    let mut overridable = Vec::new();
    for vi in gp.input.drain(..) {
        let v = convert_value(vi, &name)?;
        if init_names.contains(&v.name) {
            // IR 3 style: initialisers are listed as inputs too; a caller may feed them.
            overridable.push(v.name);
        } else {
            inputs.push(v);
        }
    }
    let outputs = gp
        .output
        .drain(..)
        .map(|v| convert_value(v, &name))
        .collect::<Result<Vec<_>>>()?;
    let value_info = gp
        .value_info
        .drain(..)
        .map(|v| convert_value(v, &name))
        .collect::<Result<Vec<_>>>()?;
    let nodes = gp
        .node
        .drain(..)
        .enumerate()
        .map(|(i, n)| convert_node(n, i, ctx))
        .collect::<Result<Vec<_>>>()?;

    Ok(Graph {
        name,
        inputs,
        outputs,
        value_info,
        nodes,
        initializers,
        overridable_initializers: overridable,
        opsets: ctx.opsets.clone(),
        metadata: ModelMetadata::default(),
        source: ctx.path.map(Path::to_path_buf),
        doc_string: std::mem::take(&mut gp.doc_string),
    })
}

/// A value's type: dense tensors get a dtype and shape; everything else is `Unsupported`.
fn convert_value(mut vi: ValueInfoProto, graph: &str) -> Result<ValueInfo> {
    let mut v = ValueInfo::unknown(std::mem::take(&mut vi.name));
    v.doc_string = std::mem::take(&mut vi.doc_string);
    let Some(tp) = vi.type_.take() else {
        return Ok(v);
    };
    let TypeProto { value, .. } = tp;
    match value {
        None => {}
        Some(type_proto::Value::TensorType(t)) => {
            if t.elem_type != 0 {
                match DataType::from_onnx_code(t.elem_type) {
                    Some(d) => v.dtype = Some(d),
                    None => {
                        v.kind = ValueKind::Unsupported(format!(
                            "tensor({})",
                            DataType::onnx_code_name(t.elem_type).to_ascii_lowercase()
                        ));
                    }
                }
            }
            if let Some(shape) = t.shape.as_ref() {
                let mut dims = Vec::with_capacity(shape.dim.len());
                for (axis, d) in shape.dim.iter().enumerate() {
                    dims.push(match &d.value {
                        Some(dimension::Value::DimValue(n)) => {
                            let n = usize::try_from(*n).map_err(|_| {
                                graph_err(
                                    graph,
                                    format!("value '{}' has dimension {n} at axis {axis}", v.name),
                                    "Dimensions must be non-negative; use a named dimension \
                                     (dim_param) for sizes known only at run time",
                                )
                            })?;
                            Dim::Known(n)
                        }
                        Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::symbol(p),
                        _ => Dim::Unknown,
                    });
                }
                v.shape = Some(Shape::new(dims));
            }
        }
        Some(type_proto::Value::SequenceType(_)) => {
            v.kind = ValueKind::Unsupported("sequence".into())
        }
        Some(type_proto::Value::MapType(_)) => v.kind = ValueKind::Unsupported("map".into()),
        Some(type_proto::Value::OptionalType(_)) => {
            v.kind = ValueKind::Unsupported("optional".into())
        }
        Some(type_proto::Value::SparseTensorType(_)) => {
            v.kind = ValueKind::Unsupported("sparse_tensor".into())
        }
        Some(_) => v.kind = ValueKind::Unsupported("unknown type".into()),
    }
    Ok(v)
}

fn convert_node(mut np: NodeProto, index: usize, ctx: &Ctx<'_>) -> Result<Node> {
    let mut node = Node {
        name: std::mem::take(&mut np.name),
        op_type: std::mem::take(&mut np.op_type),
        domain: if is_onnx_domain(&np.domain) {
            String::new()
        } else {
            std::mem::take(&mut np.domain)
        },
        inputs: std::mem::take(&mut np.input),
        outputs: std::mem::take(&mut np.output),
        attributes: Vec::with_capacity(np.attribute.len()),
        doc_string: std::mem::take(&mut np.doc_string),
        index,
    };
    let nref = node.node_ref();
    let mut seen = HashSet::new();
    for ap in np.attribute.drain(..) {
        if !seen.insert(ap.name.clone()) {
            return Err(OnnxError::node(
                nref,
                format!("attribute '{}' is given twice", ap.name),
                "Keep one value per attribute (re-export the model)",
            ));
        }
        node.attributes.push(convert_attribute(ap, &nref, ctx)?);
    }
    Ok(node)
}

/// The attribute's type; old files may leave it UNDEFINED, then it is told by the field set.
fn attribute_type(ap: &AttributeProto, nref: &NodeRef) -> Result<AttributeType> {
    let bad = |problem: String| {
        OnnxError::node(
            nref.clone(),
            problem,
            "Fix the attribute in the model (re-export it)",
        )
    };
    match ap.type_.enum_value() {
        Err(code) => Err(bad(format!(
            "attribute '{}' has unknown type code {code}",
            ap.name
        ))),
        Ok(AttributeType::UNDEFINED) => {
            let t = if ap.t.is_some() {
                AttributeType::TENSOR
            } else if ap.g.is_some() {
                AttributeType::GRAPH
            } else if !ap.floats.is_empty() {
                AttributeType::FLOATS
            } else if !ap.ints.is_empty() {
                AttributeType::INTS
            } else if !ap.strings.is_empty() {
                AttributeType::STRINGS
            } else if !ap.tensors.is_empty() {
                AttributeType::TENSORS
            } else if !ap.graphs.is_empty() {
                AttributeType::GRAPHS
            } else if !ap.s.is_empty() {
                AttributeType::STRING
            } else if ap.i != 0 {
                AttributeType::INT
            } else if ap.f != 0.0 {
                AttributeType::FLOAT
            } else {
                return Err(bad(format!(
                    "attribute '{}' has no type and no value",
                    ap.name
                )));
            };
            Ok(t)
        }
        Ok(t) => Ok(t),
    }
}

fn convert_attribute(mut ap: AttributeProto, nref: &NodeRef, ctx: &Ctx<'_>) -> Result<Attribute> {
    let ty = attribute_type(&ap, nref)?;
    let name = std::mem::take(&mut ap.name);
    let missing = |what: &str| {
        OnnxError::node(
            nref.clone(),
            format!("attribute '{name}' is of type {what} but holds no {what} value"),
            "Fix the attribute in the model (re-export it)",
        )
    };
    let label = format!("attribute '{name}' of {nref}");
    let value = match ty {
        AttributeType::FLOAT => AttrValue::Float(ap.f),
        AttributeType::INT => AttrValue::Int(ap.i),
        AttributeType::STRING => AttrValue::String(std::mem::take(&mut ap.s)),
        AttributeType::TENSOR => {
            let t = ap.t.take().ok_or_else(|| missing("TENSOR"))?;
            AttrValue::Tensor(convert_tensor(t, &label, ctx)?)
        }
        AttributeType::GRAPH => {
            let g = ap.g.take().ok_or_else(|| missing("GRAPH"))?;
            AttrValue::Graph(Box::new(convert_graph(g, ctx)?))
        }
        AttributeType::FLOATS => AttrValue::Floats(std::mem::take(&mut ap.floats)),
        AttributeType::INTS => AttrValue::Ints(std::mem::take(&mut ap.ints)),
        AttributeType::STRINGS => AttrValue::Strings(std::mem::take(&mut ap.strings)),
        AttributeType::TENSORS => AttrValue::Tensors(
            ap.tensors
                .drain(..)
                .map(|t| convert_tensor(t, &label, ctx))
                .collect::<Result<_>>()?,
        ),
        AttributeType::GRAPHS => AttrValue::Graphs(
            ap.graphs
                .drain(..)
                .map(|g| convert_graph(g, ctx))
                .collect::<Result<_>>()?,
        ),
        AttributeType::SPARSE_TENSOR => AttrValue::Unsupported("SPARSE_TENSOR"),
        AttributeType::SPARSE_TENSORS => AttrValue::Unsupported("SPARSE_TENSORS"),
        AttributeType::TYPE_PROTO => AttrValue::Unsupported("TYPE_PROTO"),
        AttributeType::TYPE_PROTOS => AttrValue::Unsupported("TYPE_PROTOS"),
        AttributeType::UNDEFINED => return Err(missing("UNDEFINED")),
    };
    Ok(Attribute {
        name,
        value,
        ref_attr_name: Some(std::mem::take(&mut ap.ref_attr_name)).filter(|s| !s.is_empty()),
    })
}

/// A TensorProto -> Tensor. `fallback` names tensors without a name (attribute values).
fn convert_tensor(mut tp: TensorProto, fallback: &str, ctx: &Ctx<'_>) -> Result<Tensor> {
    let name = std::mem::take(&mut tp.name);
    let label = if name.is_empty() { fallback } else { &name };
    let terr = |problem: String, fix: &str| OnnxError::tensor(label, problem, fix);

    let mut dims = Vec::with_capacity(tp.dims.len());
    for &d in &tp.dims {
        dims.push(usize::try_from(d).map_err(|_| {
            terr(
                format!("has a negative dimension {d} (dims {:?})", tp.dims),
                "Dimensions of stored tensors must be non-negative; re-export the model",
            )
        })?);
    }
    let dtype = DataType::from_onnx_code(tp.data_type).ok_or_else(|| {
        let kind = DataType::onnx_code_name(tp.data_type);
        terr(
            format!(
                "has element type {kind} (code {}), which kiln does not support for stored \
                 tensors",
                tp.data_type
            ),
            "kiln computes with f32/f64/f16/bf16, integer and bool tensors; convert this \
             tensor (or the op using it) before loading",
        )
    })?;
    if tp.segment.is_some() {
        return Err(terr(
            "is stored in segments (TensorProto.segment), which kiln does not read".into(),
            "Re-save the model with whole tensors (onnx.save_model without segmenting)",
        ));
    }
    let external = tp.data_location.enum_value() == Ok(DataLocation::EXTERNAL);
    let bytes = if external {
        external::read(&ctx.external, label, dtype, &dims, &tp.external_data)?
    } else if !tp.raw_data.is_empty() {
        std::mem::take(&mut tp.raw_data)
    } else {
        typed_bytes(&mut tp, dtype, label)?
    };
    Tensor::from_bytes(label, dtype, dims, bytes)
}

/// Data held in a typed field, as little-endian bytes. Narrowed only where ONNX stores a type
/// in a wider field (int32_data for 8/16-bit types and f16/bf16 bits, uint64_data for u32).
fn typed_bytes(tp: &mut TensorProto, dtype: DataType, label: &str) -> Result<Vec<u8>> {
    fn bulk<T: bytemuck::Pod>(v: Vec<T>) -> Vec<u8> {
        let bytes = bytemuck::cast_slice::<T, u8>(&v).to_vec();
        drop(v);
        bytes
    }
    fn narrow<S: Copy + std::fmt::Display, T: bytemuck::Pod + TryFrom<S>>(
        v: &[S],
        label: &str,
        dtype: DataType,
        field: &str,
    ) -> Result<Vec<u8>> {
        let mut out: Vec<T> = Vec::with_capacity(v.len());
        for (i, &x) in v.iter().enumerate() {
            out.push(T::try_from(x).map_err(|_| {
                OnnxError::tensor(
                    label,
                    format!("{field}[{i}] = {x} does not fit in {dtype}"),
                    "The tensor data is corrupt; re-export the model",
                )
            })?);
        }
        Ok(bytemuck::cast_slice::<T, u8>(&out).to_vec())
    }
    let le = cfg!(target_endian = "little");
    if !le {
        return Err(OnnxError::tensor(
            label,
            "typed tensor fields cannot be read on a big-endian host",
            "Use a little-endian machine",
        ));
    }
    let i32s = std::mem::take(&mut tp.int32_data);
    let bytes = match dtype {
        DataType::F32 => bulk(std::mem::take(&mut tp.float_data)),
        DataType::F64 => bulk(std::mem::take(&mut tp.double_data)),
        DataType::I64 => bulk(std::mem::take(&mut tp.int64_data)),
        DataType::U64 => bulk(std::mem::take(&mut tp.uint64_data)),
        DataType::I32 => bulk(i32s),
        DataType::U32 => narrow::<u64, u32>(&tp.uint64_data, label, dtype, "uint64_data")?,
        DataType::I16 => narrow::<i32, i16>(&i32s, label, dtype, "int32_data")?,
        DataType::U16 | DataType::F16 | DataType::BF16 => {
            narrow::<i32, u16>(&i32s, label, dtype, "int32_data")?
        }
        DataType::I8 => narrow::<i32, i8>(&i32s, label, dtype, "int32_data")?,
        DataType::U8 => narrow::<i32, u8>(&i32s, label, dtype, "int32_data")?,
        DataType::Bool => {
            if let Some((i, x)) = i32s.iter().enumerate().find(|(_, x)| !(0..=1).contains(*x)) {
                return Err(OnnxError::tensor(
                    label,
                    format!("int32_data[{i}] = {x} is not a bool (0 or 1)"),
                    "The tensor data is corrupt; re-export the model",
                ));
            }
            narrow::<i32, u8>(&i32s, label, dtype, "int32_data")?
        }
    };
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_refuses_out_of_range_values() {
        let mut tp = TensorProto::new();
        tp.int32_data = vec![1, 300];
        let e = typed_bytes(&mut tp, DataType::U8, "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("int32_data[1] = 300"), "{e}");
        let mut tp = TensorProto::new();
        tp.int32_data = vec![-1, 0x3c00];
        assert!(typed_bytes(&mut tp, DataType::F16, "t").is_err());
        let mut tp = TensorProto::new();
        tp.int32_data = vec![0x3c00, 0xbc00];
        let b = typed_bytes(&mut tp, DataType::F16, "t").unwrap();
        assert_eq!(b, vec![0x00, 0x3c, 0x00, 0xbc]);
    }
}
