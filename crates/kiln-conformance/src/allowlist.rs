//! The allow-list: which conformance tests must pass, with their tags.
//!
//! One test a line: `SUITE/TEST op=OP opset=N [rtol=X] [atol=Y]`. `#` starts a comment.
//! `op` is the op the test is filed under (the model's op for node tests; the most
//! characteristic op for model tests), `opset` the default-domain opset of the test's model
//! (so an entry documents since which opset kiln claims the op), and `rtol` / `atol` override the
//! default tolerance of ONNX's own runner (rtol 1e-3, atol 1e-7).

use std::collections::BTreeMap;
use std::fmt;

/// ONNX's runner's default relative tolerance.
pub const DEFAULT_RTOL: f64 = 1e-3;
/// ONNX's runner's default absolute tolerance.
pub const DEFAULT_ATOL: f64 = 1e-7;

/// One allow-listed test.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub op: String,
    pub opset: i64,
    pub rtol: f64,
    pub atol: f64,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op={} opset={}", self.op, self.opset)?;
        if self.rtol != DEFAULT_RTOL {
            write!(f, " rtol={}", self.rtol)?;
        }
        if self.atol != DEFAULT_ATOL {
            write!(f, " atol={}", self.atol)?;
        }
        Ok(())
    }
}

/// The parsed allow-list, keyed by `suite/test`.
#[derive(Debug, Default)]
pub struct AllowList {
    pub entries: BTreeMap<String, Entry>,
}

impl AllowList {
    /// Parses the file's text; errors name the line.
    pub fn parse(text: &str) -> Result<AllowList, String> {
        let mut entries = BTreeMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let Some(key) = parts.next() else { continue };
            if !key.contains('/') {
                return Err(format!(
                    "line {}: '{key}' should be SUITE/TEST (e.g. node/test_relu)",
                    n + 1
                ));
            }
            let mut e = Entry {
                op: String::new(),
                opset: 0,
                rtol: DEFAULT_RTOL,
                atol: DEFAULT_ATOL,
            };
            for tag in parts {
                let (k, v) = tag
                    .split_once('=')
                    .ok_or_else(|| format!("line {}: tag '{tag}' should be key=value", n + 1))?;
                let bad = |what: &str| format!("line {}: {k}={v} is not {what}", n + 1);
                match k {
                    "op" => e.op = v.to_string(),
                    "opset" => e.opset = v.parse().map_err(|_| bad("an integer"))?,
                    "rtol" => e.rtol = v.parse().map_err(|_| bad("a number"))?,
                    "atol" => e.atol = v.parse().map_err(|_| bad("a number"))?,
                    _ => return Err(format!("line {}: unknown tag '{k}'", n + 1)),
                }
            }
            if e.op.is_empty() {
                return Err(format!("line {}: '{key}' has no op= tag", n + 1));
            }
            if entries.insert(key.to_string(), e).is_some() {
                return Err(format!("line {}: '{key}' is listed twice", n + 1));
            }
        }
        Ok(AllowList { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_and_rejects_junk() {
        let a = AllowList::parse(
            "# comment\nnode/test_relu op=Relu opset=14\nnode/test_gelu op=Gelu opset=20 rtol=1e-2 # x\n",
        )
        .unwrap();
        assert_eq!(a.entries.len(), 2);
        assert_eq!(a.entries["node/test_gelu"].rtol, 1e-2);
        assert_eq!(a.entries["node/test_relu"].atol, DEFAULT_ATOL);
        assert!(AllowList::parse("test_relu op=Relu").is_err());
        assert!(AllowList::parse("node/test_relu opset=3").is_err());
        assert!(AllowList::parse("node/a op=X\nnode/a op=X").is_err());
        assert!(AllowList::parse("node/a op=X rtol=abc").is_err());
    }
}
