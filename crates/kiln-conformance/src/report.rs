//! The conformance report: `report.json` (every test) and `report.md` (a table per op).

use std::collections::BTreeMap;

use serde::Serialize;

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
}

/// One test's result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub key: String,
    pub suite: String,
    pub name: String,
    /// The op it is filed under: the allow-list's `op` tag, else the model's first op.
    pub op: String,
    pub ops: Vec<String>,
    pub opset: Option<i64>,
    pub claimed: bool,
    pub status: Status,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub millis: u64,
}

/// Counts for one op.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpRow {
    pub claimed: usize,
    pub passed: usize,
    pub failed: usize,
    pub not_claimed: usize,
    /// Not claimed, but passing: candidates for the allow-list.
    pub not_claimed_passing: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub total: usize,
    pub claimed: usize,
    pub claimed_passed: usize,
    pub claimed_failed: usize,
    pub not_claimed: usize,
    pub not_claimed_passing: usize,
    /// Allow-list entries for which no test was found.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub per_suite: BTreeMap<String, OpRow>,
    pub per_op: BTreeMap<String, OpRow>,
    pub tests: Vec<Outcome>,
}

fn add(row: &mut OpRow, o: &Outcome) {
    match (o.claimed, o.status) {
        (true, Status::Pass) => {
            row.claimed += 1;
            row.passed += 1;
        }
        (true, Status::Fail) => {
            row.claimed += 1;
            row.failed += 1;
        }
        (false, s) => {
            row.not_claimed += 1;
            if s == Status::Pass {
                row.not_claimed_passing += 1;
            }
        }
    }
}

impl Report {
    pub fn new(tests: Vec<Outcome>, missing: Vec<String>) -> Report {
        let mut per_op: BTreeMap<String, OpRow> = BTreeMap::new();
        let mut per_suite: BTreeMap<String, OpRow> = BTreeMap::new();
        for o in &tests {
            add(per_op.entry(o.op.clone()).or_default(), o);
            add(per_suite.entry(o.suite.clone()).or_default(), o);
        }
        let claimed: Vec<_> = tests.iter().filter(|o| o.claimed).collect();
        let summary = Summary {
            total: tests.len(),
            claimed: claimed.len(),
            claimed_passed: claimed.iter().filter(|o| o.status == Status::Pass).count(),
            claimed_failed: claimed.iter().filter(|o| o.status == Status::Fail).count(),
            not_claimed: tests.len() - claimed.len(),
            not_claimed_passing: tests
                .iter()
                .filter(|o| !o.claimed && o.status == Status::Pass)
                .count(),
            missing,
        };
        Report {
            summary,
            per_suite,
            per_op,
            tests,
        }
    }

    /// The markdown table: one row per op, then per suite, then the failing claimed tests.
    pub fn markdown(&self) -> String {
        let s = &self.summary;
        let mut md = String::new();
        md.push_str("# kiln conformance report\n\n");
        md.push_str(&format!(
            "{} tests; {} claimed: {} passed, {} failed; {} not claimed ({} of them pass).\n\n",
            s.total,
            s.claimed,
            s.claimed_passed,
            s.claimed_failed,
            s.not_claimed,
            s.not_claimed_passing
        ));
        let table = |title: &str, rows: &BTreeMap<String, OpRow>| {
            let mut t = format!(
                "## {title}\n\n| {title} | claimed | passed | failed | not claimed | not claimed but passing |\n|---|---:|---:|---:|---:|---:|\n"
            );
            for (k, r) in rows {
                t.push_str(&format!(
                    "| {k} | {} | {} | {} | {} | {} |\n",
                    r.claimed, r.passed, r.failed, r.not_claimed, r.not_claimed_passing
                ));
            }
            t.push('\n');
            t
        };
        md.push_str(&table("suite", &self.per_suite));
        md.push_str(&table("op", &self.per_op));
        let failing: Vec<_> = self
            .tests
            .iter()
            .filter(|o| o.claimed && o.status == Status::Fail)
            .collect();
        if !failing.is_empty() {
            md.push_str("## Failing claimed tests\n\n");
            for o in failing {
                md.push_str(&format!(
                    "- `{}`: {}\n",
                    o.key,
                    o.message.replace('\n', " ")
                ));
            }
        }
        if !s.missing.is_empty() {
            md.push_str("\n## Allow-list entries with no test on disk\n\n");
            for m in &s.missing {
                md.push_str(&format!("- `{m}`\n"));
            }
        }
        md
    }
}
