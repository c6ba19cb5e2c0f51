//! The HTTP/REST inference body: JSON tensors and the binary tensor data extension.
//!
//! Request: with an `Inference-Header-Content-Length: N` header the first N bytes of the body
//! are the JSON request and the rest is binary tensor data; each input whose parameters hold
//! `binary_data_size: K` takes the next K bytes, in input order (little-endian, row-major;
//! BOOL one byte). Inputs without it carry JSON `data` (flat or nested arrays).
//!
//! Response: outputs asked for with `parameters.binary_data: true` (or every output when the
//! request's parameters hold `binary_data_output: true`) are sent as binary data after the
//! JSON header, each with `parameters.binary_data_size`, and the response carries
//! `Inference-Header-Content-Length`; the others carry JSON `data`.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::core::{InferInput, InferRequest, InferResponse, InputData, RequestedOutput};
use crate::error::ServeError;
use crate::tensor;

/// The header naming the length of the JSON part of a binary-extension body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Deserialize)]
struct JsonRequest {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<JsonInput>,
    #[serde(default)]
    outputs: Vec<JsonOutput>,
}

#[derive(Deserialize)]
struct JsonInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

fn invalid(msg: String) -> ServeError {
    ServeError::InvalidArgument(msg)
}

fn uint_param(
    params: &Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Option<u64>, ServeError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            invalid(format!(
                "{what}: parameter '{key}' must be a non-negative integer, not {v}"
            ))
        }),
    }
}

fn bool_param(
    params: &Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Option<bool>, ServeError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(invalid(format!(
            "{what}: parameter '{key}' must be true or false, not {v}"
        ))),
    }
}

/// Parses an inference body for `model` (`version`); `header_length` is the value of the
/// `Inference-Header-Content-Length` header, if any.
pub fn parse_request(
    body: &[u8],
    header_length: Option<&str>,
    model: &str,
    version: Option<&str>,
) -> Result<InferRequest, ServeError> {
    let split = match header_length {
        None => body.len(),
        Some(text) => {
            let n: usize = text.trim().parse().map_err(|_| {
                invalid(format!(
                    "header Inference-Header-Content-Length is '{text}', not a byte count"
                ))
            })?;
            if n > body.len() {
                return Err(invalid(format!(
                    "header Inference-Header-Content-Length says {n} bytes of JSON, but the body \
                     has {} bytes",
                    body.len()
                )));
            }
            n
        }
    };
    let (json, mut binary) = body.split_at(split);
    let parsed: JsonRequest = serde_json::from_slice(json).map_err(|e| {
        invalid(format!(
            "the request body is not an inference request in JSON: {e}"
        ))
    })?;
    let mut inputs = Vec::with_capacity(parsed.inputs.len());
    for input in parsed.inputs {
        let what = format!("input '{}'", input.name);
        let size = uint_param(&input.parameters, "binary_data_size", &what)?;
        let data = match (size, input.data) {
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "{what} has both `data` and parameter binary_data_size; give one"
                )));
            }
            (Some(k), None) => {
                let k = usize::try_from(k).unwrap_or(usize::MAX);
                if header_length.is_none() {
                    return Err(invalid(format!(
                        "{what} has binary_data_size but the request has no \
                         Inference-Header-Content-Length header"
                    )));
                }
                if k > binary.len() {
                    return Err(invalid(format!(
                        "{what}: binary_data_size {k} is more than the {} bytes of binary data \
                         left in the body",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(k);
                binary = rest;
                InputData::Raw(mine.to_vec())
            }
            (None, Some(v)) => InputData::Json(v),
            (None, None) => {
                return Err(invalid(format!(
                    "{what} has no data: give `data`, or binary_data_size with binary data after \
                     the JSON (binary tensor data extension)"
                )));
            }
        };
        inputs.push(InferInput {
            name: input.name,
            datatype: input.datatype,
            shape: input.shape,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(invalid(format!(
            "the body has {} bytes of binary data that no input's binary_data_size claims",
            binary.len()
        )));
    }
    let mut outputs = Vec::with_capacity(parsed.outputs.len());
    for o in parsed.outputs {
        let what = format!("output '{}'", o.name);
        let binary = bool_param(&o.parameters, "binary_data", &what)?;
        outputs.push(RequestedOutput {
            name: o.name,
            binary,
        });
    }
    let p = &parsed.parameters;
    let id = match parsed.id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    Ok(InferRequest {
        model: model.to_string(),
        version: version.map(str::to_string),
        id,
        inputs,
        outputs,
        priority: uint_param(p, "priority", "request")?,
        timeout_us: uint_param(p, "timeout", "request")?,
        binary_output: bool_param(p, "binary_data_output", "request")?.unwrap_or(false),
    })
}

/// An encoded response body: the JSON header's length when binary data follows it.
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

/// Encodes `resp` as JSON, with the binary outputs after it.
pub fn encode_response(resp: &InferResponse) -> EncodedResponse {
    let mut json = String::with_capacity(256);
    json.push_str("{\"model_name\":");
    json.push_str(&Value::from(resp.model_name.as_str()).to_string());
    json.push_str(",\"model_version\":");
    json.push_str(&Value::from(resp.model_version.as_str()).to_string());
    if let Some(id) = &resp.id {
        json.push_str(",\"id\":");
        json.push_str(&Value::from(id.as_str()).to_string());
    }
    json.push_str(",\"outputs\":[");
    let mut binary: Vec<&[u8]> = Vec::new();
    for (i, o) in resp.outputs.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str("{\"name\":");
        json.push_str(&Value::from(o.name.as_str()).to_string());
        json.push_str(",\"datatype\":\"");
        json.push_str(tensor::datatype_name(o.dtype));
        json.push_str("\",\"shape\":");
        json.push_str(&Value::from(o.dims.clone()).to_string());
        if o.binary {
            json.push_str(&format!(
                ",\"parameters\":{{\"binary_data_size\":{}}}}}",
                o.data.len()
            ));
            binary.push(&o.data);
        } else {
            json.push_str(",\"data\":");
            tensor::write_json_data(&mut json, o.dtype, &o.data);
            json.push('}');
        }
    }
    json.push_str("]}");
    if binary.is_empty() {
        return EncodedResponse {
            body: json.into_bytes(),
            header_length: None,
        };
    }
    let header_length = json.len();
    let mut body = json.into_bytes();
    body.reserve(binary.iter().map(|b| b.len()).sum());
    binary.iter().for_each(|b| body.extend_from_slice(b));
    EncodedResponse {
        body,
        header_length: Some(header_length),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::OutputTensor;
    use kiln_core::DataType;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn binary_inputs_are_cut_from_the_body_in_order() {
        let mut rng = fastrand::Rng::with_seed(3);
        let a: Vec<f32> = (0..4).map(|_| rng.f32()).collect();
        let b: Vec<i64> = (0..3).map(|_| rng.i64(-50..50)).collect();
        let json = r#"{"id":"r1","parameters":{"binary_data_output":true,"timeout":500},
            "inputs":[{"name":"a","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}},
                      {"name":"b","shape":[3],"datatype":"INT64","parameters":{"binary_data_size":24}},
                      {"name":"c","shape":[2],"datatype":"BOOL","data":[true,false]}],
            "outputs":[{"name":"y","parameters":{"binary_data":false}},{"name":"z"}]}"#;
        let mut body = json.as_bytes().to_vec();
        body.extend(f32_bytes(&a));
        body.extend(b.iter().flat_map(|x| x.to_le_bytes()));
        let len = json.len().to_string();
        let r = parse_request(&body, Some(&len), "m", Some("2")).unwrap();
        assert_eq!(r.id.as_deref(), Some("r1"));
        assert_eq!(r.version.as_deref(), Some("2"));
        assert_eq!(r.timeout_us, Some(500));
        assert!(r.binary_output);
        assert_eq!(r.inputs[0].data, InputData::Raw(f32_bytes(&a)));
        assert_eq!(
            r.inputs[1].data,
            InputData::Raw(b.iter().flat_map(|x| x.to_le_bytes()).collect())
        );
        assert!(matches!(r.inputs[2].data, InputData::Json(_)));
        assert_eq!(r.outputs[0].binary, Some(false));
        assert_eq!(r.outputs[1].binary, None);
    }

    #[test]
    fn malformed_binary_bodies_are_refused_with_the_reason() {
        let json = r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let mut body = json.as_bytes().to_vec();
        body.extend([0u8; 4]);
        let len = json.len().to_string();
        let e = parse_request(&body, Some(&len), "m", None).unwrap_err();
        assert!(e.to_string().contains("binary_data_size 8"), "{e}");
        body.extend([0u8; 8]);
        let e = parse_request(&body, Some(&len), "m", None).unwrap_err();
        assert!(e.to_string().contains("4 bytes of binary data"), "{e}");
        let e = parse_request(json.as_bytes(), None, "m", None).unwrap_err();
        assert!(
            e.to_string().contains("Inference-Header-Content-Length"),
            "{e}"
        );
        let e = parse_request(b"{}", Some("99"), "m", None).unwrap_err();
        assert!(e.to_string().contains("99"), "{e}");
        let e = parse_request(b"{\"inputs\": 3}", None, "m", None).unwrap_err();
        assert_eq!(e.http_status(), 400);
        let e = parse_request(
            br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32"}]}"#,
            None,
            "m",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("input 'a' has no data"), "{e}");
    }

    #[test]
    fn responses_put_binary_outputs_after_the_json() {
        let mut rng = fastrand::Rng::with_seed(5);
        let y: Vec<f32> = (0..6).map(|_| rng.f32() - 0.5).collect();
        let z: Vec<f32> = (0..2).map(|_| rng.f32() - 0.5).collect();
        let resp = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: Some("q".into()),
            outputs: vec![
                OutputTensor {
                    name: "y".into(),
                    dtype: DataType::F32,
                    dims: vec![2, 3],
                    data: f32_bytes(&y),
                    binary: true,
                },
                OutputTensor {
                    name: "z".into(),
                    dtype: DataType::F32,
                    dims: vec![2],
                    data: f32_bytes(&z),
                    binary: false,
                },
            ],
        };
        let enc = encode_response(&resp);
        let n = enc.header_length.unwrap();
        let head: Value = serde_json::from_slice(&enc.body[..n]).unwrap();
        assert_eq!(head["id"], "q");
        assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 24);
        assert_eq!(head["outputs"][0]["shape"], serde_json::json!([2, 3]));
        let zs: Vec<f32> = serde_json::from_value(head["outputs"][1]["data"].clone()).unwrap();
        assert_eq!(zs, z);
        assert_eq!(&enc.body[n..], f32_bytes(&y).as_slice());
        let all_json = encode_response(&InferResponse {
            outputs: vec![resp.outputs[1].clone()],
            ..resp
        });
        assert!(all_json.header_length.is_none());
        let v: Value = serde_json::from_slice(&all_json.body).unwrap();
        assert_eq!(v["model_version"], "1");
    }
}
