#!/usr/bin/env python3
"""Static checks of deploy/ (no container engine or cluster is needed, and none is used):

- deploy/kserve/*.yaml parse with PyYAML (safe_load_all) and hold what KServe needs: a
  ServingRuntime (serving.kserve.io/v1alpha1) for model format `onnx` and protocol `v2`, with a
  container, ports and probes that agree with its `kiln serve` flags; an InferenceService
  (serving.kserve.io/v1beta1) that names that runtime and format, protocol v2, a storageUri,
  and a GPU resource request;
- deploy/Dockerfile parses as Dockerfile instructions: known instruction names, line
  continuations, every stage named by `COPY --from` defined before, the binary the ENTRYPOINT
  runs copied into the last stage, exec-form (JSON) ENTRYPOINT and CMD, EXPOSE 8000 8001 8002;
- every `--flag` passed to `kiln serve` in these files appears in `kiln serve --help`
  (the text is given with --help-file).

Usage: python check_deploy.py DEPLOY_DIR [--help-file FILE]. Exit status 1 with every problem
listed when something is wrong. The image is not built and nothing is applied to a cluster.
"""

import argparse
import json
import os
import re
import shlex
import sys

import yaml

PROBLEMS = []


def problem(where, msg):
    PROBLEMS.append(f"{where}: {msg}")


def need(cond, where, msg):
    if not cond:
        problem(where, msg)
    return cond


def flags_of(args):
    """--flag names in a list of arguments (`--a=1` and `--a 1` both give `--a`)."""
    return [a.split("=", 1)[0] for a in args if isinstance(a, str) and a.startswith("--")]


def flag_value(args, flag):
    for k, a in enumerate(args):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag and k + 1 < len(args):
            return args[k + 1]
    return None


def check_runtime(doc, where):
    need(doc.get("apiVersion") == "serving.kserve.io/v1alpha1", where, "apiVersion serving.kserve.io/v1alpha1")
    spec = doc.get("spec") or {}
    formats = spec.get("supportedModelFormats") or []
    need(any(f.get("name") == "onnx" for f in formats), where, "supportedModelFormats has no onnx entry")
    need("v2" in (spec.get("protocolVersions") or []), where, "protocolVersions lacks v2")
    containers = spec.get("containers") or []
    if not need(len(containers) == 1, where, "exactly one container expected"):
        return None, []
    c = containers[0]
    need(c.get("name") == "kserve-container", where, "KServe expects the container to be named kserve-container")
    need(bool(c.get("image")), where, "container has no image")
    args = [str(a) for a in (c.get("args") or [])]
    need(flag_value(args, "--host") in ("0.0.0.0", "::"), where, "--host must be 0.0.0.0 (kiln serve listens on 127.0.0.1 by default: unreachable from outside the pod)")
    need(flag_value(args, "--model-repository") == "/mnt/models", where, "--model-repository must be /mnt/models (where the storage initializer puts storageUri)")
    http = flag_value(args, "--http-port")
    grpc = flag_value(args, "--grpc-port")
    metrics = flag_value(args, "--metrics-port")
    for name, v in (("--http-port", http), ("--grpc-port", grpc), ("--metrics-port", metrics)):
        need(v is not None and v.isdigit(), where, f"{name} missing or not a number")
    ports = [p.get("containerPort") for p in (c.get("ports") or [])]
    need(ports and str(ports[0]) == str(http), where, f"first containerPort {ports[:1]} is not the HTTP port {http}")
    for probe in ("readinessProbe", "livenessProbe"):
        g = (c.get(probe) or {}).get("httpGet") or {}
        need(str(g.get("port")) == str(http), where, f"{probe} port is not the HTTP port")
        need(str(g.get("path", "")).startswith("/v2/health/"), where, f"{probe} path is not a v2 health endpoint")
    ann = spec.get("annotations") or {}
    need(str(ann.get("prometheus.kserve.io/port")) == str(metrics), where, "prometheus port annotation != --metrics-port")
    return doc["metadata"]["name"], flags_of(args)


def check_isvc(doc, where, runtimes):
    need(doc.get("apiVersion") == "serving.kserve.io/v1beta1", where, "apiVersion serving.kserve.io/v1beta1")
    pred = (doc.get("spec") or {}).get("predictor") or {}
    model = pred.get("model") or {}
    need(model.get("runtime") in runtimes, where, f"runtime {model.get('runtime')!r} is not a ServingRuntime here ({sorted(runtimes)})")
    need((model.get("modelFormat") or {}).get("name") == "onnx", where, "modelFormat.name must be onnx")
    need(model.get("protocolVersion") in ("v2", "grpc-v2"), where, "protocolVersion must be v2 or grpc-v2")
    need(re.match(r"^(s3|gs|pvc|https?|hdfs|webhdfs|oci)://\S+", str(model.get("storageUri", ""))) is not None, where, "storageUri missing or not a URI")
    res = model.get("resources") or {}
    gpus = (res.get("limits") or {}).get("nvidia.com/gpu")
    need(gpus is not None and int(gpus) >= 1, where, "no nvidia.com/gpu limit")
    req = (res.get("requests") or {}).get("nvidia.com/gpu")
    need(req is None or str(req) == str(gpus), where, "GPU request and limit differ (Kubernetes requires them equal)")
    lo, hi = pred.get("minReplicas", 1), pred.get("maxReplicas", 1)
    need(0 <= int(lo) <= int(hi), where, f"minReplicas {lo} > maxReplicas {hi}")


DOCKER_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER",
}


def dockerfile_instructions(text):
    """[(line number, INSTRUCTION, rest)] with continuations joined and comments dropped."""
    out, buf, start = [], "", None
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if start is None:
            start = n
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        word, _, rest = buf.partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf, start = "", None
    if buf:
        out.append((start, "<unterminated>", buf))
    return out


def check_dockerfile(path):
    text = open(path).read()
    where = os.path.basename(path)
    ins = dockerfile_instructions(text)
    stages, last_from, copied, exposes = [], None, {}, []
    entry = cmd = None
    seen_from = False
    for n, word, rest in ins:
        at = f"{where}:{n}"
        if word not in DOCKER_INSTRUCTIONS:
            problem(at, f"unknown instruction {word!r}")
            continue
        if word == "ARG" and not seen_from:
            continue
        if word == "FROM":
            seen_from = True
            m = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest, re.IGNORECASE)
            if need(m is not None, at, f"FROM {rest!r} is not `FROM image [AS name]`"):
                last_from = m.group(2) or str(len(stages))
                stages.append(last_from)
                copied[last_from] = []
            continue
        if not need(seen_from, at, f"{word} before the first FROM"):
            continue
        if word == "COPY":
            parts = shlex.split(rest)
            opts = [p for p in parts if p.startswith("--")]
            paths = [p for p in parts if not p.startswith("--")]
            need(len(paths) >= 2, at, "COPY needs a source and a destination")
            for o in opts:
                if o.startswith("--from="):
                    src = o.split("=", 1)[1]
                    need(src in stages[:-1], at, f"COPY --from={src}: no earlier stage of that name ({stages[:-1]})")
            if paths:
                copied[last_from].append(paths[-1])
        if word in ("ENTRYPOINT", "CMD"):
            try:
                v = json.loads(rest)
                need(isinstance(v, list) and all(isinstance(x, str) for x in v), at, f"{word} must be a JSON array of strings")
            except json.JSONDecodeError as e:
                problem(at, f"{word} is not exec form (JSON array): {e}")
                v = None
            if word == "ENTRYPOINT":
                entry = v
            else:
                cmd = v
        if word == "EXPOSE":
            exposes += [p.split("/")[0] for p in rest.split()]
    need(len(stages) >= 2, where, "expected a multi-stage build (build and runtime stages)")
    need(sorted(exposes) == ["8000", "8001", "8002"], where, f"EXPOSE {exposes}, expected 8000 8001 8002")
    if need(entry, where, "no ENTRYPOINT"):
        need(entry[0] in copied.get(last_from, []), where, f"ENTRYPOINT runs {entry[0]} but the last stage never COPYs it")
        need(entry[1:2] == ["serve"], where, "ENTRYPOINT must run `kiln serve`")
    args = cmd or []
    need(flag_value(args, "--model-repository") is not None, where, "CMD has no --model-repository")
    need(flag_value(args, "--host") in ("0.0.0.0", "::"), where, "CMD must pass --host 0.0.0.0 (the default, 127.0.0.1, is unreachable from outside the container)")
    for flag, port in (("--http-port", "8000"), ("--grpc-port", "8001"), ("--metrics-port", "8002")):
        need(flag_value(args, flag) == port, where, f"CMD {flag} is not {port} (the EXPOSEd port)")
    return flags_of(args)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("deploy_dir")
    p.add_argument("--help-file", help="output of `kiln serve --help`")
    a = p.parse_args()
    used_flags = []
    runtimes = {}
    isvcs = []
    kserve = os.path.join(a.deploy_dir, "kserve")
    files = sorted(f for f in os.listdir(kserve) if f.endswith((".yaml", ".yml")))
    need(files, kserve, "no YAML files")
    for f in files:
        path = os.path.join(kserve, f)
        try:
            with open(path) as fh:
                docs = [d for d in yaml.safe_load_all(fh) if d is not None]
        except yaml.YAMLError as e:
            problem(f, f"YAML does not parse: {e}")
            continue
        for k, doc in enumerate(docs):
            where = f"{f}[{k}]"
            if not need(isinstance(doc, dict) and doc.get("kind") and (doc.get("metadata") or {}).get("name"), where, "a Kubernetes object needs kind and metadata.name"):
                continue
            if doc["kind"] == "ServingRuntime":
                name, flags = check_runtime(doc, where)
                if name:
                    runtimes[name] = where
                used_flags += [(where, x) for x in flags]
            elif doc["kind"] == "InferenceService":
                isvcs.append((doc, where))
            else:
                problem(where, f"unexpected kind {doc['kind']}")
    need(runtimes, kserve, "no ServingRuntime")
    need(isvcs, kserve, "no InferenceService")
    for doc, where in isvcs:
        check_isvc(doc, where, runtimes)
    used_flags += [("Dockerfile", x) for x in check_dockerfile(os.path.join(a.deploy_dir, "Dockerfile"))]
    if a.help_file:
        help_text = open(a.help_file).read()
        for where, flag in used_flags:
            need(re.search(re.escape(flag) + r"\b", help_text) is not None, where, f"`kiln serve` has no flag {flag} (not in --help)")
    if PROBLEMS:
        print("deploy/ problems:\n  " + "\n  ".join(PROBLEMS))
        sys.exit(1)
    print(f"deploy/: {len(files)} YAML files and the Dockerfile check out ({len(used_flags)} kiln serve flags, {len(runtimes)} runtime(s), {len(isvcs)} InferenceService(s)); not built, not applied")


if __name__ == "__main__":
    main()
