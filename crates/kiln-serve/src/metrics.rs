//! Prometheus metrics (served on their own port at `/metrics`): the server's counters
//! (requests by protocol, endpoint and code; inferences by model and outcome) followed by each
//! loaded model's kiln-batch metrics (`Executor::prometheus_text`), every sample labelled with
//! `model` and `version` and each metric family described once. The text is OpenMetrics
//! (what prometheus-client writes), ending with `# EOF`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use parking_lot::Mutex;

use crate::repository::LoadedModel;

/// The server's own counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// (protocol, endpoint, code) → requests.
    requests: Mutex<BTreeMap<(&'static str, String, String), u64>>,
    /// (model, outcome) → inference requests.
    inferences: Mutex<BTreeMap<(String, String), u64>>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Counters {
    /// A request over `protocol` (`http`, `grpc`) to `endpoint`, answered with `code`.
    pub fn request(&self, protocol: &'static str, endpoint: &str, code: &str) {
        *self
            .requests
            .lock()
            .entry((protocol, endpoint.to_string(), code.to_string()))
            .or_default() += 1;
    }

    /// An inference request of `model` that ended with `outcome` (`success` or an error kind).
    pub fn infer(&self, model: &str, outcome: &str) {
        *self
            .inferences
            .lock()
            .entry((model.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    fn write(&self, out: &mut String) {
        out.push_str(
            "# HELP kiln_serve_requests Requests by protocol, endpoint and status code.\n",
        );
        out.push_str("# TYPE kiln_serve_requests counter\n");
        for ((p, e, c), n) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "kiln_serve_requests_total{{protocol=\"{p}\",endpoint=\"{}\",code=\"{}\"}} {n}",
                escape(e),
                escape(c)
            );
        }
        out.push_str("# HELP kiln_serve_inferences Inference requests by model and outcome.\n");
        out.push_str("# TYPE kiln_serve_inferences counter\n");
        for ((m, o), n) in self.inferences.lock().iter() {
            let _ = writeln!(
                out,
                "kiln_serve_inferences_total{{model=\"{}\",outcome=\"{}\"}} {n}",
                escape(m),
                escape(o)
            );
        }
    }
}

/// Adds `labels` (already `k="v"` pairs) to one sample line.
fn label_sample(line: &str, labels: &str) -> String {
    match line.find(['{', ' ']) {
        Some(i) if line.as_bytes()[i] == b'{' => {
            let rest = &line[i + 1..];
            if rest.starts_with('}') {
                format!("{}{{{labels}{rest}", &line[..i])
            } else {
                format!("{}{{{labels},{rest}", &line[..i])
            }
        }
        Some(i) => format!("{}{{{labels}}}{}", &line[..i], &line[i..]),
        None => line.to_string(),
    }
}

/// Merges per-model OpenMetrics texts: `(labels, text)` → one exposition where each family's
/// `# HELP`/`# TYPE`/`# UNIT` lines appear once, followed by every model's samples.
pub fn merge_families(parts: &[(String, String)]) -> String {
    // family → (header lines, samples), in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut families: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (labels, text) in parts {
        let mut current = String::new();
        for line in text.lines() {
            if line == "# EOF" || line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut words = rest.splitn(3, ' ');
                let _kind = words.next();
                let family = words.next().unwrap_or_default().to_string();
                if !families.contains_key(&family) {
                    order.push(family.clone());
                }
                let entry = families.entry(family.clone()).or_default();
                if !entry.0.iter().any(|l| l == line) {
                    entry.0.push(line.to_string());
                }
                current = family;
                continue;
            }
            let entry = families.entry(current.clone()).or_default();
            entry.1.push(label_sample(line, labels));
        }
    }
    let mut out = String::new();
    for f in order {
        if let Some((head, samples)) = families.get(&f) {
            head.iter().chain(samples).for_each(|l| {
                out.push_str(l);
                out.push('\n');
            });
        }
    }
    out
}

/// The whole exposition: server counters, then every loaded model's executor metrics.
pub fn exposition(counters: &Counters, models: &[std::sync::Arc<LoadedModel>]) -> String {
    let mut out = String::new();
    counters.write(&mut out);
    let parts: Vec<(String, String)> = models
        .iter()
        .map(|m| {
            (
                format!("model=\"{}\",version=\"{}\"", escape(&m.name), m.version),
                m.executor.prometheus_text(),
            )
        })
        .collect();
    out.push_str(&merge_families(&parts));
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_merge_with_model_labels() {
        let text = "# HELP kiln_batch_batches Batches run.\n# TYPE kiln_batch_batches counter\n\
                    kiln_batch_batches_total 3\n# HELP kiln_batch_requests Requests.\n\
                    # TYPE kiln_batch_requests counter\n\
                    kiln_batch_requests_total{outcome=\"completed\"} 5\n# EOF\n";
        let merged = merge_families(&[
            ("model=\"a\",version=\"1\"".into(), text.into()),
            ("model=\"b\",version=\"2\"".into(), text.into()),
        ]);
        assert_eq!(
            merged.matches("# TYPE kiln_batch_batches counter").count(),
            1
        );
        assert!(merged.contains("kiln_batch_batches_total{model=\"a\",version=\"1\"} 3"));
        assert!(merged.contains(
            "kiln_batch_requests_total{model=\"b\",version=\"2\",outcome=\"completed\"} 5"
        ));
        assert!(!merged.contains("# EOF"));
        // Each family's samples follow its header.
        let pos = |s: &str| merged.find(s).unwrap();
        assert!(pos("# TYPE kiln_batch_requests") < pos("kiln_batch_requests_total{model=\"a\""));
        assert!(pos("kiln_batch_batches_total{model=\"b\"") < pos("# HELP kiln_batch_requests"));
    }

    #[test]
    fn counters_are_written() {
        let c = Counters::default();
        c.request("http", "infer", "200");
        c.request("http", "infer", "200");
        c.infer("m\"x", "unavailable");
        let mut out = String::new();
        c.write(&mut out);
        assert!(out.contains(
            "kiln_serve_requests_total{protocol=\"http\",endpoint=\"infer\",code=\"200\"} 2"
        ));
        assert!(out.contains("model=\"m\\\"x\",outcome=\"unavailable\"} 1"));
    }
}
