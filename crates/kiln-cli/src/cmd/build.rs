//! `kiln build`: ONNX model -> serialised engine (trtexec --onnx ... --saveEngine ...).
//!
//! kiln's own builder is not implemented yet: its wiring to kiln-engine comes with issue 9. `--backend
//! tensorrt` goes through kiln-nvinfer: it probes for TensorRT first, so a machine without it
//! gets a clear error saying how to point kiln at it.

use std::path::PathBuf;

pub use super::PendingArgs as Args;

/// The parts of the pending arguments the TensorRT path reads.
#[derive(Debug, Default)]
struct TrtArgs {
    model: Option<PathBuf>,
    output: Option<PathBuf>,
    dir: Option<PathBuf>,
}

/// `Some` when the arguments ask for `--backend tensorrt` (or `--backend=tensorrt`).
fn tensorrt_args(args: &[String]) -> Option<TrtArgs> {
    let mut out = TrtArgs::default();
    let mut tensorrt = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned());
        match key {
            "--backend" => tensorrt = value().is_some_and(|v| v.eq_ignore_ascii_case("tensorrt")),
            "--tensorrt-dir" => out.dir = value().map(PathBuf::from),
            "-o" | "--output" | "--save-engine" => out.output = value().map(PathBuf::from),
            _ if !a.starts_with('-') && out.model.is_none() => out.model = Some(PathBuf::from(a)),
            _ => {}
        }
    }
    tensorrt.then_some(out)
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match tensorrt_args(&args.args) {
        Some(trt) => build_tensorrt(trt),
        None => Err(super::not_implemented(
            "build",
            "the CLI wiring of kiln-engine (issue 9)",
        )),
    }
}

fn build_tensorrt(args: TrtArgs) -> anyhow::Result<()> {
    let opts = kiln_nvinfer::LoadOptions {
        dir: args.dir,
        ..Default::default()
    };
    let trt = kiln_nvinfer::TensorRt::load(&opts)?;
    let model = args.model.ok_or_else(|| {
        anyhow::anyhow!("`kiln build --backend tensorrt` needs an ONNX model path")
    })?;
    let output = args
        .output
        .unwrap_or_else(|| model.with_extension("engine"));
    let built = trt.build(
        kiln_nvinfer::Model::File(&model),
        &kiln_nvinfer::BuildOptions::default(),
    )?;
    built.save(&output)?;
    println!(
        "built {} with TensorRT {} -> {} ({} bytes)",
        model.display(),
        trt.version(),
        output.display(),
        built.bytes.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recognises_the_tensorrt_backend() {
        let a = tensorrt_args(&v(&["--backend", "tensorrt", "m.onnx", "-o", "m.plan"])).unwrap();
        assert_eq!(a.model.unwrap(), PathBuf::from("m.onnx"));
        assert_eq!(a.output.unwrap(), PathBuf::from("m.plan"));
        let a = tensorrt_args(&v(&["m.onnx", "--backend=TensorRT", "--tensorrt-dir=/x"])).unwrap();
        assert_eq!(a.dir.unwrap(), PathBuf::from("/x"));
        assert!(tensorrt_args(&v(&["m.onnx"])).is_none());
        assert!(tensorrt_args(&v(&["m.onnx", "--backend", "kiln"])).is_none());
        assert!(tensorrt_args(&v(&["--backend"])).is_none());
    }
}
