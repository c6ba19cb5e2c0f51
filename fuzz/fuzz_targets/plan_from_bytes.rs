//! Plans: `Plan::from_bytes` on arbitrary bytes returns, never panics; and on the same bytes
//! re-sealed (the last four bytes replaced by the CRC-32 of the rest), so that mutations reach
//! the header JSON and the section table instead of stopping at the checksum.
//!
//! For every plan that parses: `to_bytes` writes it, `from_bytes` reads back an equal plan and
//! a second write gives the same bytes; the graph section goes through the ONNX loader, the
//! tactics section through `Tactics::from_bytes` (and back, when it re-serialises), the kernel
//! sections through `kernel_binaries`, and the header through the compatibility check. None of
//! them may panic.
#![no_main]

use kiln_engine::plan::{Fingerprint, Plan};
use kiln_engine::runtime::kernel_binaries;
use kiln_engine::runtime::libs::{TACTICS_SECTION, Tactics};
use libfuzzer_sys::fuzz_target;

/// `data` with its last four bytes replaced by the CRC-32 of the bytes before them.
fn reseal(data: &[u8]) -> Option<Vec<u8>> {
    let body = data.get(..data.len().checked_sub(4)?)?;
    let mut out = body.to_vec();
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    Some(out)
}

fn check(bytes: &[u8]) {
    let Ok(plan) = Plan::from_bytes(bytes) else {
        return;
    };
    let written = plan.to_bytes().expect("a parsed plan serialises");
    let back = Plan::from_bytes(&written).expect("what to_bytes wrote parses");
    assert_eq!(back, plan, "the plan changed on a write/read round trip");
    assert_eq!(
        back.to_bytes().expect("a parsed plan serialises"),
        written,
        "a second write gave other bytes"
    );

    if let Ok(graph) = plan.graph() {
        let _ = graph.op_histogram();
        let _ = graph.parameter_count();
    }
    if let Some(section) = plan.section(TACTICS_SECTION)
        && let Ok(tactics) = Tactics::from_bytes(section)
        && let Ok(again) = tactics.to_bytes()
    {
        let back = Tactics::from_bytes(&again).expect("written tactics parse");
        assert_eq!(back, tactics, "tactics changed on a round trip");
    }
    if let Ok(bins) = kernel_binaries(&plan) {
        assert_eq!(bins.len(), plan.kernels().count());
    }
    let _ = plan.check_compatible(&Fingerprint::default());
    let _ = plan.check_compatible(&plan.header.fingerprint);
    for p in &plan.header.config.profiles {
        if p.validate().is_ok() {
            for i in &p.inputs {
                let _ = p.check(&i.name, &i.opt);
            }
        }
    }
    let _ = kiln_engine::builder::compute_dtype(plan.header.config.precision);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(sealed) = reseal(data) {
        check(&sealed);
    }
});
