//! The whole binding driven through the C++ ABI test double (tests/double/*.cpp, compiled by
//! the kiln-nvinfer-double crate with g++) for the TensorRT 10 and 11 layouts: build →
//! serialise → save → load → deserialise → introspect → context → enqueue, the destructor
//! order, the logger bridge, and the error paths.

use std::io::Write;
use std::sync::{Arc, Mutex};

use kiln_core::{
    BackendError, DataType, DevicePtr, Dim, Engine, OptimizationProfile, Precision, ProfileInput,
    StreamHandle,
};
use kiln_nvinfer::{BuildOptions, LoadOptions, Model, NvInferError, TensorRt};
use kiln_nvinfer_double as double;

const MODEL: &str = "kiln-double-onnx
input x 0 2 -1 3
node relu_0 Relu
output y 0 2 -1 3
";

fn major_of(variant: &str) -> u32 {
    if variant.starts_with("trt11") || variant == "major12" {
        11
    } else {
        10
    }
}

fn load(variant: &str) -> (double::Fresh, Result<TensorRt, NvInferError>) {
    let dir = double::fresh(variant).expect("copy the double");
    let trt = TensorRt::load(&LoadOptions::only_dir(dir.path()));
    (dir, trt)
}

fn profile() -> OptimizationProfile {
    OptimizationProfile {
        inputs: vec![ProfileInput {
            name: "x".into(),
            min: vec![1, 3],
            opt: vec![4, 3],
            max: vec![8, 3],
        }],
    }
}

fn options(precision: Precision) -> BuildOptions {
    BuildOptions {
        workspace: Some(1 << 20),
        precision,
        optimization_level: Some(2),
        profiles: vec![profile()],
        parser_verbosity: 2,
    }
}

/// Captures `tracing` output (all levels) of the current thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured<R>(f: impl FnOnce() -> R) -> (R, String) {
    let cap = Capture::default();
    let writer = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let r = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8_lossy(&cap.0.lock().unwrap()).into_owned();
    (r, text)
}

fn pos(haystack: &str, needle: &str) -> usize {
    haystack
        .find(needle)
        .unwrap_or_else(|| panic!("'{needle}' not found in:\n{haystack}"))
}

fn full_path(variant: &str, api: &str) {
    let major = major_of(variant);
    let dir = double::fresh(variant).expect("copy the double");
    let _held = double::hold(dir.path(), major).unwrap();
    let trt = TensorRt::load(&LoadOptions::only_dir(dir.path()));
    let (events_before_drop, log) = captured(|| {
        let trt = trt.expect("the double loads");
        assert_eq!(trt.version().major, major);
        let built = trt
            .build(
                Model::Bytes {
                    bytes: MODEL.as_bytes(),
                    name: "mlp.onnx",
                },
                &options(Precision::Tf32),
            )
            .expect("build");
        assert_eq!(built.inputs[0].name, "x");
        assert_eq!(built.inputs[0].dims, vec![-1, 3]);
        assert_eq!(built.outputs[0].name, "y");
        let file = dir.path().join("model.engine");
        built.save(&file).unwrap();
        let engine = Arc::new(trt.load_engine(&file).expect("deserialise"));
        assert_eq!(engine.backend(), "tensorrt");
        let x = &engine.inputs()[0];
        assert_eq!((x.name.as_str(), x.dtype), ("x", DataType::F32));
        assert!(matches!(x.shape.dims()[0], Dim::Symbol(_)));
        assert_eq!(x.shape.dims()[1], Dim::Known(3));
        assert_eq!(engine.outputs()[0].name, "y");
        assert_eq!(engine.profiles(), &[profile()]);
        assert_eq!(engine.device_memory_size(&[]).unwrap(), 1 << 20);
        let mut ctx = engine.clone().create_context().expect("context");
        assert!(ctx.supports_device_io());
        ctx.set_input_shape("x", &[2, 3]).unwrap();
        assert_eq!(ctx.output_shape("y").unwrap(), vec![2, 3]);
        ctx.bind("x", DevicePtr(0x1000)).unwrap();
        ctx.bind("y", DevicePtr(0x2000)).unwrap();
        // SAFETY: the double never touches the addresses or the stream.
        unsafe { ctx.enqueue(StreamHandle(0x1234)) }.expect("enqueue");
        let second = engine.clone().create_context().expect("second context");
        drop(second);
        let ev = double::events(dir.path(), major);
        drop(ctx);
        drop(engine);
        drop(trt);
        ev
    });
    let ev = double::events(dir.path(), major);
    assert!(
        !ev.contains("BAD-SLOT") && !ev.contains("ORDER-ERROR"),
        "{ev}"
    );
    assert!(!ev.contains("BAD-LOGGER"), "{ev}");
    for want in [
        format!("createInferBuilder {api}").as_str(),
        "builder.createNetworkV2 0",
        "config.setMemoryPoolLimit 0 1048576",
        "config.setBuilderOptimizationLevel 2",
        "config.setFlag 6",
        "profile.set x 0 2 1 3",
        "profile.set x 1 2 4 3",
        "profile.set x 2 2 8 3",
        "builder.buildSerializedNetwork flags=64 workspace=1048576 optlevel=2 profiles=1",
        "runtime.deserializeCudaEngine",
        "engine.createExecutionContext 0",
        "context.setInputShape x 2 2 3",
        "context.enqueueV3 stream=0x1234 x=0x1000 y=0x2000",
    ] {
        assert!(
            events_before_drop.contains(want),
            "missing '{want}' in:\n{events_before_drop}"
        );
    }
    // Destruction order: config and network before builder; contexts before engine before
    // runtime; the logger (a Rust object) after everything.
    assert!(pos(&ev, "destroy IBuilderConfig") < pos(&ev, "destroy IBuilder\n"));
    assert!(pos(&ev, "destroy INetworkDefinition") < pos(&ev, "destroy IBuilder\n"));
    assert!(pos(&ev, "destroy IExecutionContext") < pos(&ev, "destroy ICudaEngine"));
    assert!(pos(&ev, "destroy ICudaEngine") < pos(&ev, "destroy IRuntime"));
    assert_eq!(double::live_objects(dir.path(), major).unwrap(), 0);
    // The logger bridge: severities mapped, the parser's and the library's messages, and the
    // logger released last.
    assert!(
        log.contains("INFO tensorrt: double: builder created"),
        "{log}"
    );
    assert!(
        log.contains("WARN tensorrt: double: runtime created"),
        "{log}"
    );
    assert!(
        log.contains("DEBUG tensorrt: double: destroy IBuilder"),
        "{log}"
    );
    assert!(pos(&log, "double: destroy IParser") < pos(&log, "double: destroy INetworkDefinition"));
    assert!(pos(&log, "double: destroy IRuntime") < pos(&log, "TensorRT logger released"));
    assert!(pos(&log, "double: destroy IBuilder\n") < pos(&log, "TensorRT logger released"));
}

#[test]
fn trt10_full_path() {
    full_path("trt10", "101601");
}

#[test]
fn trt11_full_path() {
    full_path("trt11", "110100");
}

#[test]
fn trt10_8_full_path_skips_the_shifted_network_slots() {
    full_path("trt10_8", "100800");
}

#[test]
fn double_layout_matches_the_abi_facts() {
    for v in ["trt10", "trt11", "trt10_8"] {
        let dir = double::fresh(v).unwrap();
        let (bad, report) = double::check_layout(dir.path(), major_of(v)).unwrap();
        assert_eq!(bad, 0, "{v}: {report}");
    }
}

#[test]
fn precision_flags_per_major() {
    let (dir, trt) = load("trt10");
    let trt = trt.unwrap();
    trt.build(
        Model::Bytes {
            bytes: MODEL.as_bytes(),
            name: "m",
        },
        &options(Precision::Fp16),
    )
    .unwrap();
    trt.build(
        Model::Bytes {
            bytes: MODEL.as_bytes(),
            name: "m",
        },
        &options(Precision::Bf16),
    )
    .unwrap();
    let ev = double::events(dir.path(), 10);
    assert!(
        ev.contains("config.setFlag 0") && ev.contains("config.setFlag 17"),
        "{ev}"
    );
    let (_dir11, trt11) = load("trt11");
    let e = trt11
        .unwrap()
        .build(
            Model::Bytes {
                bytes: MODEL.as_bytes(),
                name: "m",
            },
            &options(Precision::Fp16),
        )
        .unwrap_err();
    assert!(matches!(e, NvInferError::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("strongly typed"), "{e}");
}

#[test]
fn parse_errors_name_every_node() {
    for v in ["trt10", "trt11"] {
        let (_dir, trt) = load(v);
        let bad = "kiln-double-onnx\ninput x 0 1 4\nnode a Relu\nunsupported conv_7 FancyConv\nunsupported attn_2 Magic\noutput y 0 1 4\n";
        let e = trt
            .unwrap()
            .build(
                Model::Bytes {
                    bytes: bad.as_bytes(),
                    name: "bad.onnx",
                },
                &BuildOptions::default(),
            )
            .unwrap_err();
        let NvInferError::Parse { errors, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(errors.len(), 2, "{e}");
        assert_eq!(
            (
                errors[0].node,
                errors[0].node_name.as_str(),
                errors[0].node_operator.as_str()
            ),
            (1, "conv_7", "FancyConv")
        );
        assert_eq!(errors[1].node_name, "attn_2");
        assert!(errors[0].origin.contains("onnxparser.cpp:42 parseGraph"));
        let text = e.to_string();
        assert!(
            text.contains("bad.onnx") && text.contains("conv_7") && text.contains("Magic"),
            "{text}"
        );
    }
}

#[test]
fn parse_from_file_and_garbage() {
    let (dir, trt) = load("trt11");
    let trt = trt.unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, MODEL).unwrap();
    trt.build(Model::File(&path), &options(Precision::Fp32))
        .unwrap();
    let e = trt
        .build(
            Model::Bytes {
                bytes: b"\x08\x07garbage",
                name: "junk.onnx",
            },
            &BuildOptions::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("could not parse the model"), "{e}");
    let e = trt
        .build(
            Model::File(&dir.path().join("absent.onnx")),
            &BuildOptions::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("failed to open file"), "{e}");
}

#[test]
fn failed_build_and_bad_profiles() {
    let (_dir, trt) = load("trt10");
    let trt = trt.unwrap();
    let no_out = "kiln-double-onnx\ninput x 0 1 4\n";
    let (e, log) = captured(|| {
        trt.build(
            Model::Bytes {
                bytes: no_out.as_bytes(),
                name: "m",
            },
            &BuildOptions::default(),
        )
        .unwrap_err()
    });
    assert!(
        matches!(
            e,
            NvInferError::CallFailed {
                call: "IBuilder::buildSerializedNetwork",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        log.contains("ERROR tensorrt: double: network has no outputs"),
        "{log}"
    );
    let e = trt
        .build(
            Model::Bytes {
                bytes: MODEL.as_bytes(),
                name: "m",
            },
            &BuildOptions::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("dynamic inputs (x [-1, 3])"), "{e}");
    let mut o = options(Precision::Fp32);
    o.profiles[0].inputs[0].name = "nope".into();
    let e = trt
        .build(
            Model::Bytes {
                bytes: MODEL.as_bytes(),
                name: "m",
            },
            &o,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("no shapes for dynamic input 'x'"),
        "{e}"
    );
    let mut o = options(Precision::Fp32);
    o.profiles[0].inputs[0].min = vec![1, 4];
    o.profiles[0].inputs[0].opt = vec![4, 4];
    o.profiles[0].inputs[0].max = vec![8, 4];
    let e = trt
        .build(
            Model::Bytes {
                bytes: MODEL.as_bytes(),
                name: "m",
            },
            &o,
        )
        .unwrap_err();
    assert!(e.to_string().contains("keep its fixed dims"), "{e}");
    let mut o = options(Precision::Fp32);
    o.optimization_level = Some(9);
    assert!(
        trt.build(
            Model::Bytes {
                bytes: MODEL.as_bytes(),
                name: "m"
            },
            &o
        )
        .is_err()
    );
}

#[test]
fn context_errors() {
    let (_dir, trt) = load("trt11");
    let trt = trt.unwrap();
    let built = trt
        .build(
            Model::Bytes {
                bytes: MODEL.as_bytes(),
                name: "m",
            },
            &options(Precision::Fp32),
        )
        .unwrap();
    let engine = Arc::new(trt.deserialize(&built.bytes).unwrap());
    let mut ctx = engine.create_context().unwrap();
    assert!(matches!(
        ctx.set_input_shape("x", &[9, 3]),
        Err(BackendError::ShapeOutsideProfile { .. })
    ));
    assert!(matches!(
        ctx.set_input_shape("x", &[2, 4]),
        Err(BackendError::WrongShape { .. })
    ));
    assert!(matches!(
        ctx.set_input_shape("zz", &[2, 3]),
        Err(BackendError::UnknownTensor { .. })
    ));
    assert!(matches!(
        ctx.output_shape("y"),
        Err(BackendError::Unset { .. })
    ));
    ctx.set_input_shape("x", &[2, 3]).unwrap();
    // SAFETY: the double never touches memory; no address is bound, so enqueueV3 fails.
    let e = unsafe { ctx.enqueue(StreamHandle(0)) }.unwrap_err();
    assert!(e.to_string().contains("enqueueV3"), "{e}");
    let e = trt.deserialize(b"not an engine").unwrap_err();
    assert!(
        matches!(
            e,
            NvInferError::CallFailed {
                call: "IRuntime::deserializeCudaEngine",
                ..
            }
        ),
        "{e}"
    );
    let e = ctx.bind("x\0y", DevicePtr(1)).unwrap_err();
    assert!(e.to_string().contains("tensors are"), "{e}");
}

#[test]
fn plans_of_another_major_are_refused() {
    let (_d10, t10) = load("trt10");
    let plan = t10
        .unwrap()
        .build(
            Model::Bytes {
                bytes: MODEL.as_bytes(),
                name: "m",
            },
            &options(Precision::Fp32),
        )
        .unwrap();
    let (_d11, t11) = load("trt11");
    let (e, log) = captured(|| t11.unwrap().deserialize(&plan.bytes).unwrap_err());
    assert!(e.to_string().contains("deserializeCudaEngine"), "{e}");
    assert!(
        log.contains("built by TensorRT 10, this is TensorRT 11"),
        "{log}"
    );
}

#[test]
fn execute_host_needs_cuda() {
    let (_dir, trt) = load("trt10");
    let trt = trt.unwrap();
    let built = trt
        .build(
            Model::Bytes {
                bytes: MODEL.as_bytes(),
                name: "m",
            },
            &options(Precision::Fp32),
        )
        .unwrap();
    let engine = Arc::new(trt.deserialize(&built.bytes).unwrap());
    let mut ctx = engine.create_context().unwrap();
    let x = kiln_core::HostTensor::from_slice("x", &[2, 3], &[1f32; 6]).unwrap();
    match ctx.execute_host(&[x]) {
        Ok(out) => {
            // A CUDA device is present: the double's enqueue does nothing, the copies ran.
            assert_eq!(out[0].dims, vec![2, 3]);
            println!("execute_host ran on a CUDA device (the double computes nothing)");
        }
        Err(e) => {
            assert!(e.to_string().contains("CUDA"), "{e}");
            println!("execute_host: skipped the device part: no CUDA ({e})");
        }
    }
}

#[test]
fn wrong_major_is_refused() {
    let (_dir, trt) = load("major12");
    let e = trt.unwrap_err();
    assert!(matches!(e, NvInferError::UnsupportedVersion { .. }), "{e}");
    assert!(
        e.to_string().contains("TensorRT 12.0.0") && e.to_string().contains("10.x and 11.x"),
        "{e}"
    );
}

#[test]
fn missing_symbol_is_reported() {
    let (_dir, trt) = load("no_runtime");
    let e = trt.unwrap_err();
    assert!(
        matches!(
            e,
            NvInferError::SymbolMissing {
                symbol: "createInferRuntime_INTERNAL",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("KILN_TENSORRT_DIR"), "{e}");
}

#[test]
fn missing_library_says_where_it_looked() {
    let empty = tempfile::tempdir().unwrap();
    let e = TensorRt::load(&LoadOptions::only_dir(empty.path())).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("TensorRT is not installed or not found"),
        "{text}"
    );
    assert!(
        text.contains(&empty.path().join("libnvinfer.so.11").display().to_string()),
        "{text}"
    );
    assert!(
        text.contains("libnvinfer.so.10")
            && text.contains("KILN_TENSORRT_DIR")
            && text.contains("LD_LIBRARY_PATH"),
        "{text}"
    );
    let all = LoadOptions {
        dir: Some(empty.path().into()),
        use_env: false,
        use_system: true,
    };
    if let Err(e) = TensorRt::load(&all) {
        assert!(e.to_string().contains("system library path"), "{e}");
    }
}

#[test]
fn missing_parser_only_blocks_building() {
    let dir = double::fresh("trt10").unwrap();
    std::fs::remove_file(dir.path().join("libnvonnxparser.so.10")).unwrap();
    let trt = TensorRt::load(&LoadOptions::only_dir(dir.path())).unwrap();
    let e = trt
        .build(
            Model::Bytes {
                bytes: MODEL.as_bytes(),
                name: "m",
            },
            &BuildOptions::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("libnvonnxparser"), "{e}");
}

#[test]
fn self_check_catches_a_wrong_pimpl() {
    let (_dir, trt) = load("bad_pimpl");
    let trt = trt.unwrap();
    let built = trt
        .build(
            Model::Bytes {
                bytes: MODEL.as_bytes(),
                name: "m",
            },
            &options(Precision::Fp32),
        )
        .unwrap();
    let e = trt.deserialize(&built.bytes).unwrap_err();
    assert!(matches!(e, NvInferError::SelfCheck { .. }), "{e}");
    assert!(e.to_string().contains("ICudaEngine::getPImpl"), "{e}");
}

#[test]
fn slots_newer_than_the_library_are_refused() {
    let (_dir, trt) = load("trt10_0");
    let trt = trt.unwrap();
    let built = trt
        .build(
            Model::Bytes {
                bytes: MODEL.as_bytes(),
                name: "m",
            },
            &options(Precision::Fp32),
        )
        .unwrap();
    let engine = trt.deserialize(&built.bytes).unwrap();
    let e = engine.device_memory_size(&[]).unwrap_err();
    assert!(
        e.to_string().contains("needs TensorRT 10.1 or newer"),
        "{e}"
    );
}
