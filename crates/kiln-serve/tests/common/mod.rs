//! Helpers of kiln-serve's integration tests (`clients.rs`, `load.rs`, `deploy.rs`): the `kiln`
//! binary, a Python venv with the `tritonclient` package, temporary model repositories, a
//! `kiln serve` child process on free ports, and a minimal HTTP/1.1 client over `std::net`.
//!
//! The `kiln` binary lives in another package (kiln-cli), so `CARGO_BIN_EXE_kiln` is not
//! available here. [`kiln_bin`] uses `<target>/<profile>/kiln` (the folder above this test
//! binary's `deps/`) when it is newer than every source of the workspace (`cargo test
//! --workspace` builds it for kiln-cli's tests); otherwise it runs `cargo build -p kiln-cli`
//! (the `CARGO` that runs the tests, same profile, same target folder) first.
//! `KILN_BIN=/path/to/kiln` skips both and uses that file.
//!
//! The venv lives in `<target>/kiln-serve-venv` and holds pinned versions of tritonclient
//! (HTTP and gRPC), numpy and PyYAML from PyPI. `KILN_SERVE_PYTHON=/path/to/python` uses a
//! prepared interpreter instead. Without PyPI and without that variable the tests fail and say
//! why: issue 10 requires them, so they are never skipped.
//!
//! Everything here runs on a machine without a GPU (the repositories use the `cpu` backend).

#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Versions installed into the test venv (all published on PyPI with wheels for CPython 3.11).
pub const TRITONCLIENT_VERSION: &str = "2.73.0";
pub const NUMPY_VERSION: &str = "2.3.5";
pub const PYYAML_VERSION: &str = "6.0.3";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// The fixtures folder (`KILN_FIXTURES_DIR` overrides `<root>/fixtures`).
pub fn fixtures() -> PathBuf {
    std::env::var_os("KILN_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("fixtures"))
}

/// This crate's Python scripts.
pub fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// `<target>/<profile>`: the folder above the `deps/` folder this test binary runs from.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let deps = exe.parent().expect("the test binary lies in a folder");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The newest modification time of the workspace's sources: Cargo.lock, and every `.rs`,
/// `.toml` and `.proto` file under `crates/`.
fn newest_source(root: &Path) -> Option<std::time::SystemTime> {
    let mut newest = std::fs::metadata(root.join("Cargo.lock"))
        .ok()?
        .modified()
        .ok()?;
    let mut stack = vec![root.join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && !name.to_string_lossy().starts_with('.') {
                    stack.push(path);
                }
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "toml" || e == "proto")
            {
                newest = newest.max(entry.metadata().ok()?.modified().ok()?);
            }
        }
    }
    Some(newest)
}

/// The `kiln` binary: `KILN_BIN`, or kiln-cli built by cargo into this test's target folder.
pub fn kiln_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("KILN_BIN") {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "KILN_BIN={} is not a file: point it at a built `kiln` binary or unset it",
                bin.display()
            );
            return bin;
        }
        let profile = profile_dir();
        let target = profile.parent().unwrap_or(&profile).to_path_buf();
        let built = profile.join(format!("kiln{}", std::env::consts::EXE_SUFFIX));
        // `cargo test --workspace` builds kiln-cli's binary for kiln-cli's own tests: use it
        // when it is newer than every source of the workspace. A separate `cargo build -p
        // kiln-cli` would compile the whole dependency tree again with other features.
        if let (Ok(bin_time), Some(src_time)) = (
            std::fs::metadata(&built).and_then(|m| m.modified()),
            newest_source(&workspace_root()),
        ) && bin_time >= src_time
        {
            eprintln!(
                "kiln-serve tests: using {} (newer than every source)",
                built.display()
            );
            return built;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(workspace_root().join("Cargo.toml"))
            .args(["-p", "kiln-cli", "--bin", "kiln"])
            .env("CARGO_TARGET_DIR", &target);
        if profile.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        eprintln!(
            "kiln-serve tests: building the kiln binary into {} (KILN_BIN=... skips this)",
            target.display()
        );
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("running {cargo:?} build -p kiln-cli: {e}"));
        assert!(
            status.success(),
            "cargo build -p kiln-cli failed ({status})"
        );
        let bin = profile.join(format!("kiln{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "cargo build -p kiln-cli succeeded but {} is missing",
            bin.display()
        );
        bin
    })
    .clone()
}

/// A Python with tritonclient[http,grpc], numpy and PyYAML: `KILN_SERVE_PYTHON`, or the venv
/// in `<target>/kiln-serve-venv`, created and filled from PyPI on first use.
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| match std::env::var_os("KILN_SERVE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => make_venv().unwrap_or_else(|why| {
            panic!(
                "kiln-serve client tests: could not prepare the Python venv: {why}\n\
                 These tests are required (issue 10). Make PyPI reachable, or set \
                 KILN_SERVE_PYTHON to a python that has tritonclient[http,grpc]=={TRITONCLIENT_VERSION}, \
                 numpy and PyYAML."
            )
        }),
    })
    .clone()
}

fn make_venv() -> Result<PathBuf, String> {
    let profile = profile_dir();
    let venv = profile.parent().unwrap_or(&profile).join("kiln-serve-venv");
    let py = venv.join("bin").join("python");
    let stamp = venv.join(format!(
        "tritonclient-{TRITONCLIENT_VERSION}-numpy-{NUMPY_VERSION}-pyyaml-{PYYAML_VERSION}.installed"
    ));
    if stamp.is_file() && py.is_file() {
        return Ok(py);
    }
    eprintln!(
        "kiln-serve tests: creating {} and installing tritonclient[http,grpc]=={TRITONCLIENT_VERSION}, \
         numpy=={NUMPY_VERSION}, PyYAML=={PYYAML_VERSION} from PyPI",
        venv.display()
    );
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| format!("running `python3 -m venv` (is Python 3 installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "python3 -m venv {} failed: {}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let out = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            "--timeout",
            "60",
        ])
        .arg(format!("tritonclient[http,grpc]=={TRITONCLIENT_VERSION}"))
        .arg(format!("numpy=={NUMPY_VERSION}"))
        .arg(format!("PyYAML=={PYYAML_VERSION}"))
        .output()
        .map_err(|e| format!("running pip in {}: {e}", venv.display()))?;
    if !out.status.success() {
        return Err(format!(
            "pip install failed (is PyPI reachable?): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    fs::write(&stamp, b"").map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    Ok(py)
}

/// One model of a temporary repository: `<repo>/<name>/<version>/model.onnx` plus
/// `<repo>/<name>/config.json` holding `config`.
pub fn add_model(repo: &Path, name: &str, version: u32, onnx: &Path, config: &serde_json::Value) {
    let dir = repo.join(name).join(version.to_string());
    fs::create_dir_all(&dir).unwrap();
    fs::copy(onnx, dir.join("model.onnx"))
        .unwrap_or_else(|e| panic!("copying {} into the repository: {e}", onnx.display()));
    fs::write(
        repo.join(name).join("config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
}

/// The fixture models (`fixtures/*.onnx`), sorted, as `(stem, path)`.
pub fn fixture_models() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = fs::read_dir(fixtures())
        .expect("the fixtures folder exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    v.sort();
    assert!(
        !v.is_empty(),
        "no .onnx fixtures in {}",
        fixtures().display()
    );
    v
}

/// A `kiln serve` child process on free ports (port 0), killed on drop if still running.
pub struct Server {
    child: Option<Child>,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    log: Arc<Mutex<String>>,
}

/// `host:port` of one `key=value` of the listening line, made connectable (a wildcard
/// address becomes loopback). Accepts `8000`, `0.0.0.0:8000`, `[::]:8000` and
/// `http://127.0.0.1:8000`.
pub fn listen_addr(line: &str, key: &str) -> Option<SocketAddr> {
    let value = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix(&format!("{key}=")))?;
    let value = value.split("://").last()?.trim_end_matches(['/', ',']);
    let (host, port) = match value.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']), p),
        None => ("", value),
    };
    let port: u16 = port.parse().ok()?;
    let host = match host {
        "" | "0.0.0.0" | "::" | "localhost" => "127.0.0.1",
        h => h,
    };
    (host, port).to_socket_addrs().ok()?.next()
}

impl Server {
    /// Starts `kiln serve --model-repository repo` on port 0 for all three listeners, plus
    /// `extra` arguments, and waits (up to 120 s) for its `kiln-serve listening:` line.
    pub fn start(repo: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(kiln_bin())
            .arg("serve")
            .arg("--model-repository")
            .arg(repo)
            .args([
                "--http-port",
                "0",
                "--grpc-port",
                "0",
                "--metrics-port",
                "0",
            ])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kiln serve starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for pipe in [out, err] {
            let (log, tx) = (log.clone(), tx.clone());
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("kiln-serve listening:") {
                        let _ = tx.send(line.clone());
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        drop(tx);
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                thread::sleep(Duration::from_millis(200));
                panic!(
                    "kiln serve printed no `kiln-serve listening:` line (exit: {status:?}); its output:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        let addr = |k: &str| {
            listen_addr(&line, k)
                .unwrap_or_else(|| panic!("no {k}=PORT in listening line {line:?}"))
        };
        Server {
            http: addr("http"),
            grpc: addr("grpc"),
            metrics: addr("metrics"),
            child: Some(child),
            log,
        }
    }

    /// Everything the server printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGINT and waits up to `within` for the process to end; returns its status.
    pub fn interrupt(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("the server is running");
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill -INT runs");
        assert!(status.success(), "kill -INT {} failed", child.id());
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if start.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "kiln serve did not exit within {within:?} of SIGINT; its output:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT, then asserts a clean exit (status 0) within 30 s.
    pub fn shutdown(mut self) {
        let status = self.interrupt(Duration::from_secs(30));
        assert!(
            status.success(),
            "kiln serve exited with {status} after SIGINT (expected 0); its output:\n{}",
            self.log()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if thread::panicking() {
                eprintln!("kiln serve output:\n{}", self.log());
            }
        }
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// A keep-alive HTTP/1.1 client on one connection (reconnects when the server closes it).
pub struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    timeout: Duration,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        Http {
            addr,
            conn: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// Sends one request and reads its response. `headers` are added to Host,
    /// Content-Length and Connection.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let sent = {
            let s = conn.get_mut();
            s.write_all(head.as_bytes())
                .and_then(|_| s.write_all(body))
                .and_then(|_| s.flush())
        };
        // A server may answer (413) and close before reading a large body: read anyway.
        let result = read_response(conn);
        let close = match &result {
            Ok(r) => r
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close")),
            Err(_) => true,
        };
        if close {
            self.conn = None;
        }
        match (sent, result) {
            (_, Ok(r)) => Ok(r),
            (Err(e), Err(_)) => Err(e),
            (Ok(()), Err(e)) => Err(e),
        }
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], &[])
    }

    pub fn post_json(&mut self, path: &str, body: &serde_json::Value) -> io::Result<Response> {
        let b = serde_json::to_vec(body).unwrap();
        self.request("POST", path, &[("Content-Type", "application/json")], &b)
    }
}

fn read_response(r: &mut BufReader<TcpStream>) -> io::Result<Response> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection before answering",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {l:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // trailers until the blank line
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = find("content-length") {
        let n: usize = n
            .parse()
            .map_err(|_| bad(format!("bad content-length {n:?}")))?;
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if status != 204 && status != 304 && !(100..200).contains(&status) {
        r.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Runs `python script args...` with the test venv's python, printing its output, and panics
/// with that output when it fails.
pub fn run_python(script: &Path, args: &[String], timeout: Duration) {
    let mut child = Command::new(python())
        .arg(script)
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (o, e) = (t_out.join().unwrap(), t_err.join().unwrap());
    println!("{o}");
    eprintln!("{e}");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "{} failed ({s}):\n--- stdout\n{o}\n--- stderr\n{e}",
            script.display()
        ),
        None => panic!(
            "{} ran past {timeout:?} and was killed:\n--- stdout\n{o}\n--- stderr\n{e}",
            script.display()
        ),
    }
}
