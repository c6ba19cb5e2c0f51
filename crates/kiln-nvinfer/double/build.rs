//! Compiles ../tests/double/*.cpp into shared libraries, one folder per variant, with the C++
//! compiler the `cc` crate finds (g++ on Linux).

use std::path::{Path, PathBuf};
use std::process::Command;

/// (folder, file major, defines)
const VARIANTS: &[(&str, u32, &[&str])] = &[
    (
        "trt10",
        10,
        &["TRT_MAJOR=10", "TRT_MINOR=16", "TRT_PATCH=1"],
    ),
    ("trt11", 11, &["TRT_MAJOR=11", "TRT_MINOR=1", "TRT_PATCH=0"]),
    (
        "trt10_0",
        10,
        &["TRT_MAJOR=10", "TRT_MINOR=0", "TRT_PATCH=0"],
    ),
    (
        "trt10_8",
        10,
        &["TRT_MAJOR=10", "TRT_MINOR=8", "TRT_PATCH=0"],
    ),
    (
        "major12",
        11,
        &["TRT_MAJOR=11", "TRT_MINOR=0", "DOUBLE_REPORT_MAJOR=12"],
    ),
    (
        "no_runtime",
        10,
        &["TRT_MAJOR=10", "TRT_MINOR=16", "DOUBLE_NO_RUNTIME"],
    ),
    (
        "bad_pimpl",
        10,
        &["TRT_MAJOR=10", "TRT_MINOR=16", "DOUBLE_BAD_PIMPL"],
    ),
];

fn main() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/double");
    for f in ["trt_double.h", "common.h", "nvinfer.cpp", "onnxparser.cpp"] {
        println!("cargo:rerun-if-changed={}", src.join(f).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let compiler = cc::Build::new()
        .cpp(true)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .get_compiler();
    let jobs: Vec<_> = VARIANTS
        .iter()
        .flat_map(|(dir, major, defs)| {
            ["nvinfer", "nvonnxparser"].map(|lib| (*dir, *major, *defs, lib))
        })
        .map(|(dir, major, defs, lib)| {
            let folder = out.join(dir);
            std::fs::create_dir_all(&folder).expect("create the variant folder");
            let file = if lib == "nvinfer" {
                "nvinfer.cpp"
            } else {
                "onnxparser.cpp"
            };
            let mut cmd: Command = compiler.to_command();
            cmd.args([
                "-std=c++17",
                "-O1",
                "-fPIC",
                "-shared",
                "-fvisibility=hidden",
            ])
            .args(defs.iter().map(|d| format!("-D{d}")))
            .arg(src.join(file))
            .arg("-o")
            .arg(folder.join(format!("lib{lib}.so.{major}")));
            std::thread::spawn(move || {
                let status = cmd.status();
                (format!("{cmd:?}"), status)
            })
        })
        .collect();
    for job in jobs {
        let (cmd, status) = job.join().expect("compiler thread");
        match status {
            Ok(s) if s.success() => {}
            other => panic!("compiling the TensorRT test double failed ({other:?}): {cmd}"),
        }
    }
    println!("cargo:rustc-env=KILN_NVINFER_DOUBLE_OUT={}", out.display());
}
