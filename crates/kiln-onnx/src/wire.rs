//! A guard run over the protobuf wire format before the real decoder sees it.
//!
//! rust-protobuf 3.4 (the version `onnx-protobuf` is generated for) skips unknown *group* fields
//! by recursing without a depth limit, so a few hundred kilobytes of START_GROUP tags overflow
//! the stack. ONNX uses no groups, so this scan rejects them anywhere, together with invalid
//! wire types, over-long varints, lengths running past their enclosing message and messages
//! nested deeper than [`MAX_DEPTH`]. It walks the bytes once with an explicit stack, descending
//! only into the length-delimited fields that the ONNX schema declares as sub-messages; every
//! other payload (raw tensor data, strings, packed numbers) is skipped without being kept.
//!
//! `onnx-protobuf` is generated for the lite runtime and carries no reflection descriptors, so
//! which fields are sub-messages is written down in [`SCHEMA`] from `onnx.proto`; a test checks
//! each entry against the generated decoder.

use std::io::{BufRead, BufReader, Read};

use crate::error::{OnnxError, Origin, Result};

/// The deepest sub-message nesting accepted (the top-level `ModelProto` is depth 0). Matches the
/// recursion limit the decoder is run with.
pub(crate) const MAX_DEPTH: usize = 100;

/// Message types of `onnx.proto`, as indices into [`SCHEMA`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Msg {
    Model,
    Graph,
    Node,
    Attribute,
    ValueInfo,
    Tensor,
    Segment,
    SparseTensor,
    StringString,
    OperatorSetId,
    TrainingInfo,
    Function,
    TensorAnnotation,
    TensorShape,
    Dimension,
    Type,
    TypeTensor,
    TypeSequence,
    TypeMap,
    TypeOptional,
    TypeSparseTensor,
}

/// One message type: its name and its sub-message fields (field number, type).
type MsgSchema = (Msg, &'static str, &'static [(u32, Msg)]);

/// Every message type of `onnx.proto`.
pub(crate) const SCHEMA: &[MsgSchema] = &[
    (
        Msg::Model,
        "ModelProto",
        &[
            (7, Msg::Graph),
            (8, Msg::OperatorSetId),
            (14, Msg::StringString),
            (20, Msg::TrainingInfo),
            (25, Msg::Function),
        ],
    ),
    (
        Msg::Graph,
        "GraphProto",
        &[
            (1, Msg::Node),
            (5, Msg::Tensor),
            (11, Msg::ValueInfo),
            (12, Msg::ValueInfo),
            (13, Msg::ValueInfo),
            (14, Msg::TensorAnnotation),
            (15, Msg::SparseTensor),
            (16, Msg::StringString),
        ],
    ),
    (
        Msg::Node,
        "NodeProto",
        &[(5, Msg::Attribute), (9, Msg::StringString)],
    ),
    (
        Msg::Attribute,
        "AttributeProto",
        &[
            (5, Msg::Tensor),
            (6, Msg::Graph),
            (10, Msg::Tensor),
            (11, Msg::Graph),
            (14, Msg::Type),
            (15, Msg::Type),
            (22, Msg::SparseTensor),
            (23, Msg::SparseTensor),
        ],
    ),
    (
        Msg::ValueInfo,
        "ValueInfoProto",
        &[(2, Msg::Type), (4, Msg::StringString)],
    ),
    (
        Msg::Tensor,
        "TensorProto",
        &[
            (3, Msg::Segment),
            (13, Msg::StringString),
            (16, Msg::StringString),
        ],
    ),
    (Msg::Segment, "TensorProto.Segment", &[]),
    (
        Msg::SparseTensor,
        "SparseTensorProto",
        &[(1, Msg::Tensor), (2, Msg::Tensor)],
    ),
    (Msg::StringString, "StringStringEntryProto", &[]),
    (Msg::OperatorSetId, "OperatorSetIdProto", &[]),
    (
        Msg::TrainingInfo,
        "TrainingInfoProto",
        &[
            (1, Msg::Graph),
            (2, Msg::Graph),
            (3, Msg::StringString),
            (4, Msg::StringString),
        ],
    ),
    (
        Msg::Function,
        "FunctionProto",
        &[
            (7, Msg::Node),
            (9, Msg::OperatorSetId),
            (11, Msg::Attribute),
            (12, Msg::ValueInfo),
            (14, Msg::StringString),
        ],
    ),
    (
        Msg::TensorAnnotation,
        "TensorAnnotation",
        &[(2, Msg::StringString)],
    ),
    (Msg::TensorShape, "TensorShapeProto", &[(1, Msg::Dimension)]),
    (Msg::Dimension, "TensorShapeProto.Dimension", &[]),
    (
        Msg::Type,
        "TypeProto",
        &[
            (1, Msg::TypeTensor),
            (4, Msg::TypeSequence),
            (5, Msg::TypeMap),
            (8, Msg::TypeSparseTensor),
            (9, Msg::TypeOptional),
        ],
    ),
    (
        Msg::TypeTensor,
        "TypeProto.Tensor",
        &[(2, Msg::TensorShape)],
    ),
    (Msg::TypeSequence, "TypeProto.Sequence", &[(1, Msg::Type)]),
    (Msg::TypeMap, "TypeProto.Map", &[(2, Msg::Type)]),
    (Msg::TypeOptional, "TypeProto.Optional", &[(1, Msg::Type)]),
    (
        Msg::TypeSparseTensor,
        "TypeProto.SparseTensor",
        &[(2, Msg::TensorShape)],
    ),
];

fn schema_of(msg: Msg) -> (&'static str, &'static [(u32, Msg)]) {
    SCHEMA
        .iter()
        .find(|(m, _, _)| *m == msg)
        .map(|(_, name, fields)| (*name, *fields))
        .unwrap_or(("?", &[]))
}

/// The type of sub-message field `field` of `msg`, if it is one.
pub(crate) fn sub_message(msg: Msg, field: u32) -> Option<Msg> {
    schema_of(msg)
        .1
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, m)| *m)
}

/// What a successful scan saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScanStats {
    /// Bytes scanned.
    pub bytes: u64,
    /// Sub-messages descended into.
    pub messages: u64,
    /// Deepest nesting seen.
    pub max_depth: usize,
}

/// Scans bytes held in memory.
pub(crate) fn scan_bytes(bytes: &[u8]) -> Result<ScanStats> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    scan(bytes, Some(len))
}

/// Scans a stream in one pass, keeping nothing but a small buffer. `total_len` (the file size,
/// when known) lets lengths past the end be refused before anything is skipped.
pub(crate) fn scan_reader<R: Read>(reader: R, total_len: Option<u64>) -> Result<ScanStats> {
    scan(BufReader::with_capacity(1 << 20, reader), total_len)
}

fn decode_err(detail: String) -> OnnxError {
    OnnxError::Decode {
        file: Origin::bytes(),
        detail,
    }
}

struct Cursor<B> {
    src: B,
    pos: u64,
}

impl<B: BufRead> Cursor<B> {
    fn io_err(&self, e: std::io::Error) -> OnnxError {
        decode_err(format!("offset {}: read failed: {e}", self.pos))
    }

    /// The next byte, `None` at the end of the input.
    fn byte(&mut self) -> Result<Option<u8>> {
        let b = match self.src.fill_buf() {
            Ok(buf) => buf.first().copied(),
            Err(e) => return Err(self.io_err(e)),
        };
        if b.is_some() {
            self.src.consume(1);
            self.pos = self.pos.saturating_add(1);
        }
        Ok(b)
    }

    /// Skips exactly `n` bytes; false if the input ended first.
    fn skip(&mut self, mut n: u64) -> Result<bool> {
        while n > 0 {
            let avail = match self.src.fill_buf() {
                Ok(buf) => buf.len(),
                Err(e) => return Err(self.io_err(e)),
            };
            if avail == 0 {
                return Ok(false);
            }
            let take = usize::try_from(n).map_or(avail, |n| n.min(avail));
            self.src.consume(take);
            let t = u64::try_from(take).unwrap_or(u64::MAX);
            self.pos = self.pos.saturating_add(t);
            n = n.saturating_sub(t);
        }
        Ok(true)
    }

    /// A varint of at most 10 bytes. `Ok(None)` only if the input ends before its first byte.
    fn varint(&mut self, what: &str) -> Result<Option<u64>> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let Some(b) = self.byte()? else {
                if i == 0 {
                    return Ok(None);
                }
                return Err(decode_err(format!(
                    "offset {start}: the input ends inside a varint ({what})"
                )));
            };
            let bits = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(decode_err(format!(
                    "offset {start}: varint ({what}) overflows 64 bits"
                )));
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Err(decode_err(format!(
            "offset {start}: varint ({what}) is longer than 10 bytes"
        )))
    }
}

struct Frame {
    msg: Msg,
    /// Absolute offset where this message ends (`None`: the end of the input).
    end: Option<u64>,
}

fn scan<B: BufRead>(src: B, total_len: Option<u64>) -> Result<ScanStats> {
    scan_as(Msg::Model, src, total_len)
}

/// Scans bytes in memory holding one message of type `root` (e.g. a lone TensorProto).
pub(crate) fn scan_bytes_as(root: Msg, bytes: &[u8]) -> Result<ScanStats> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    scan_as(root, bytes, Some(len))
}

fn scan_as<B: BufRead>(root: Msg, src: B, total_len: Option<u64>) -> Result<ScanStats> {
    let mut cur = Cursor { src, pos: 0 };
    let mut stack = vec![Frame {
        msg: root,
        end: total_len,
    }];
    let mut stats = ScanStats::default();
    while let Some(top) = stack.last() {
        let (msg, end) = (top.msg, top.end);
        if end == Some(cur.pos) {
            if stack.len() == 1 {
                break;
            }
            stack.pop();
            continue;
        }
        let tag_at = cur.pos;
        let Some(tag) = cur.varint("field tag")? else {
            if stack.len() == 1 && end.is_none() {
                break;
            }
            return Err(decode_err(format!(
                "offset {tag_at}: the input ends inside a {} message",
                schema_of(msg).0
            )));
        };
        let field = tag >> 3;
        let wire_type = tag & 7;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(decode_err(format!(
                "offset {tag_at}: invalid field number {field} in a {} message",
                schema_of(msg).0
            )));
        }
        let remaining = end.map(|e| e.saturating_sub(cur.pos));
        match wire_type {
            0 => {
                if cur.varint("field value")?.is_none() {
                    return Err(decode_err(format!(
                        "offset {}: the input ends before the value of field {field}",
                        cur.pos
                    )));
                }
            }
            1 | 5 => {
                let n = if wire_type == 1 { 8 } else { 4 };
                if remaining.is_some_and(|r| r < n) || !cur.skip(n)? {
                    return Err(decode_err(format!(
                        "offset {tag_at}: fixed-size field {field} runs past the end of its \
                         {} message",
                        schema_of(msg).0
                    )));
                }
            }
            2 => {
                let len_at = cur.pos;
                let Some(len) = cur.varint("length")? else {
                    return Err(decode_err(format!(
                        "offset {len_at}: the input ends before the length of field {field}"
                    )));
                };
                let remaining = end.map(|e| e.saturating_sub(cur.pos));
                if remaining.is_some_and(|r| len > r) || len > u64::from(u32::MAX) {
                    return Err(decode_err(format!(
                        "offset {len_at}: field {field} of a {} message claims {len} bytes but \
                         only {} remain",
                        schema_of(msg).0,
                        remaining.map_or_else(|| "fewer".to_string(), |r| r.to_string())
                    )));
                }
                match sub_message(msg, u32::try_from(field).unwrap_or(0)) {
                    Some(child) => {
                        if stack.len() > MAX_DEPTH {
                            return Err(decode_err(format!(
                                "offset {tag_at}: messages are nested more than {MAX_DEPTH} \
                                 deep"
                            )));
                        }
                        stats.messages = stats.messages.saturating_add(1);
                        stack.push(Frame {
                            msg: child,
                            end: Some(cur.pos.saturating_add(len)),
                        });
                        stats.max_depth = stats.max_depth.max(stack.len() - 1);
                    }
                    None => {
                        if !cur.skip(len)? {
                            return Err(decode_err(format!(
                                "offset {len_at}: the input ends inside field {field} \
                                 ({len} bytes) of a {} message",
                                schema_of(msg).0
                            )));
                        }
                    }
                }
            }
            3 | 4 => {
                return Err(decode_err(format!(
                    "offset {tag_at}: field {field} of a {} message uses the protobuf group \
                     encoding, which ONNX never uses (refused: deep groups crash the decoder)",
                    schema_of(msg).0
                )));
            }
            other => {
                return Err(decode_err(format!(
                    "offset {tag_at}: invalid wire type {other} for field {field}"
                )));
            }
        }
        if end.is_some_and(|e| cur.pos > e) {
            return Err(decode_err(format!(
                "offset {tag_at}: field {field} runs past the end of its {} message",
                schema_of(msg).0
            )));
        }
    }
    stats.bytes = cur.pos;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_protobuf::Message;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn ld(field: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(field) << 3 | 2, &mut out);
        varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    fn fails<M: Message>(b: &[u8]) -> bool {
        M::parse_from_bytes(b).is_err()
    }

    /// Whether the generated decoder of `msg` fails on bytes it would only fail on if it
    /// parsed them as a message.
    fn parser_of(msg: Msg) -> fn(&[u8]) -> bool {
        use onnx_protobuf as p;
        match msg {
            Msg::Model => fails::<p::ModelProto>,
            Msg::Graph => fails::<p::GraphProto>,
            Msg::Node => fails::<p::NodeProto>,
            Msg::Attribute => fails::<p::AttributeProto>,
            Msg::ValueInfo => fails::<p::ValueInfoProto>,
            Msg::Tensor => fails::<p::TensorProto>,
            Msg::Segment => fails::<p::tensor_proto::Segment>,
            Msg::SparseTensor => fails::<p::SparseTensorProto>,
            Msg::StringString => fails::<p::StringStringEntryProto>,
            Msg::OperatorSetId => fails::<p::OperatorSetIdProto>,
            Msg::TrainingInfo => fails::<p::TrainingInfoProto>,
            Msg::Function => fails::<p::FunctionProto>,
            Msg::TensorAnnotation => fails::<p::TensorAnnotation>,
            Msg::TensorShape => fails::<p::TensorShapeProto>,
            Msg::Dimension => fails::<p::tensor_shape_proto::Dimension>,
            Msg::Type => fails::<p::TypeProto>,
            Msg::TypeTensor => fails::<p::type_proto::Tensor>,
            Msg::TypeSequence => fails::<p::type_proto::Sequence>,
            Msg::TypeMap => fails::<p::type_proto::Map>,
            Msg::TypeOptional => fails::<p::type_proto::Optional>,
            Msg::TypeSparseTensor => fails::<p::type_proto::SparseTensor>,
        }
    }

    /// Checks the hand-written schema against the generated decoder: eight bytes of 0x0F are
    /// a valid string, bytes, packed number list of any width, but an invalid message (wire
    /// type 7). So the decoder fails on them exactly for the sub-message fields.
    #[test]
    fn schema_matches_generated_decoder() {
        let payload = [0x0Fu8; 8];
        let mut checked = 0;
        for &(msg, name, _) in SCHEMA {
            let parse = parser_of(msg);
            for field in 1..=40u32 {
                let bytes = ld(field, &payload);
                let decoder_descends = parse(&bytes);
                let schema_descends = sub_message(msg, field).is_some();
                assert_eq!(
                    decoder_descends, schema_descends,
                    "{name} field {field}: decoder and schema disagree"
                );
                // The scanner agrees with its schema.
                assert_eq!(scan_bytes_as(msg, &bytes).is_err(), schema_descends);
                checked += 1;
            }
        }
        assert!(checked > 800);
    }

    fn scan_bytes_as(msg: Msg, inner: &[u8]) -> Result<ScanStats> {
        // Wrap `inner` so that it is read as a `msg` message: find a path from ModelProto.
        let mut path = Vec::new();
        assert!(
            find_path(Msg::Model, msg, &mut path, 0),
            "{msg:?} unreachable"
        );
        let mut bytes = inner.to_vec();
        for &field in path.iter().rev() {
            bytes = ld(field, &bytes);
        }
        scan_bytes(&bytes)
    }

    fn find_path(from: Msg, to: Msg, path: &mut Vec<u32>, depth: usize) -> bool {
        if from == to {
            return true;
        }
        if depth > 6 {
            return false;
        }
        for &(f, child) in schema_of(from).1 {
            path.push(f);
            if find_path(child, to, path, depth + 1) {
                return true;
            }
            path.pop();
        }
        false
    }

    #[test]
    fn groups_are_refused_anywhere() {
        // A START_GROUP at top level.
        let e = scan_bytes(&[0x0B]).unwrap_err().to_string();
        assert!(e.contains("offset 0") && e.contains("group"), "{e}");
        // An END_GROUP inside the graph.
        let bytes = ld(7, &[0x0C]);
        let e = scan_bytes(&bytes).unwrap_err().to_string();
        assert!(e.contains("offset 2") && e.contains("group"), "{e}");
        // A group-tag-looking byte inside a string is fine.
        assert!(scan_bytes(&ld(2, &[0x0B, 0x0B])).is_ok());
        // A deep bomb of START_GROUP tags is refused at its first byte, without recursion.
        let bomb = vec![0x0Bu8; 1 << 20];
        assert!(scan_reader(&bomb[..], None).is_err());
    }

    #[test]
    fn depth_lengths_and_varints() {
        // Graph -> Node -> Attribute -> Graph -> ... nested past the limit.
        let mut bytes = Vec::new();
        for i in 0..120 {
            let field = match i % 3 {
                0 => 6, // AttributeProto.g
                1 => 5, // NodeProto.attribute
                _ => 1, // GraphProto.node
            };
            bytes = ld(field, &bytes);
        }
        bytes = ld(7, &bytes);
        let e = scan_bytes(&bytes).unwrap_err().to_string();
        assert!(e.contains("nested more than 100"), "{e}");
        // Within the limit is fine and the depth is reported.
        let mut ok = Vec::new();
        for _ in 0..10 {
            ok = ld(1, &ld(5, &ld(6, &ok)));
        }
        let stats = scan_bytes(&ld(7, &ok)).unwrap();
        assert_eq!(stats.max_depth, 31);
        assert_eq!(stats.messages, 31);
        // Length past the end.
        let e = scan_bytes(&[0x12, 0x05, b'a']).unwrap_err().to_string();
        assert!(e.contains("claims 5 bytes"), "{e}");
        // Streamed with unknown length: ends inside the field.
        assert!(scan_reader(&[0x12u8, 0x05, b'a'][..], None).is_err());
        // Over-long varint.
        let e = scan_bytes(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("varint"), "{e}");
        // Invalid wire type and field 0.
        assert!(scan_bytes(&[0x0E]).is_err());
        assert!(scan_bytes(&[0x00, 0x00]).is_err());
        // Truncated fixed64.
        assert!(scan_bytes(&[0x09, 1, 2, 3]).is_err());
        // Empty input is a valid (empty) message as far as the wire is concerned.
        assert_eq!(scan_bytes(&[]).unwrap().bytes, 0);
    }
}
