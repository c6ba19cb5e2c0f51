//! Comparing computed outputs with expected ones.

use kiln_reference::Value;

/// Why an output did not match, or `None` when it did.
///
/// Element types and shapes must be equal; every element must satisfy
/// `|got - want| <= atol + rtol * |want|`; NaN matches only NaN, infinities only the same
/// infinity. Integers and bools are compared exactly through f64 (exact below 2^53).
pub fn mismatch(got: &Value, want: &Value, rtol: f64, atol: f64) -> Option<String> {
    if got.dtype() != want.dtype() {
        return Some(format!(
            "element type {} where {} was expected",
            got.dtype(),
            want.dtype()
        ));
    }
    if got.shape() != want.shape() {
        return Some(format!(
            "shape {:?} where {:?} was expected",
            got.shape(),
            want.shape()
        ));
    }
    let exact = !want.dtype().is_float();
    let g = got.to_f64_vec();
    let w = want.to_f64_vec();
    let mut bad = 0usize;
    let mut first = None;
    let mut worst = 0.0f64;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let ok = if b.is_nan() {
            a.is_nan()
        } else if exact || b.is_infinite() || a.is_infinite() {
            a == b
        } else {
            let d = (a - b).abs();
            worst = worst.max(d);
            d <= atol + rtol * b.abs()
        };
        if !ok {
            bad += 1;
            first.get_or_insert((i, a, b));
        }
    }
    first.map(|(i, a, b)| {
        format!(
            "{bad} of {} elements differ (first at flat index {i}: got {a}, expected {b}; max abs diff {worst:.3e}; rtol {rtol}, atol {atol})",
            w.len()
        )
    })
}

/// Relative L2 error ‖got − want‖ / ‖want‖ (0 when both are zero; infinite on NaN).
pub fn rel_l2(got: &Value, want: &Value) -> f64 {
    let g = got.to_f64_vec();
    let w = want.to_f64_vec();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (a, b) in g.iter().zip(&w) {
        num += (a - b) * (a - b);
        den += b * b;
    }
    if num.is_nan() {
        return f64::INFINITY;
    }
    if den == 0.0 {
        return if num == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (num / den).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn f(v: Vec<f32>) -> Value {
        Value::F32(ArrayD::from_shape_vec(vec![v.len()], v).unwrap())
    }

    #[test]
    fn tolerance_nan_and_shape() {
        assert!(mismatch(&f(vec![1.0, 2.0]), &f(vec![1.0005, 2.0]), 1e-3, 0.0).is_none());
        assert!(mismatch(&f(vec![1.0, 2.0]), &f(vec![1.01, 2.0]), 1e-3, 0.0).is_some());
        assert!(mismatch(&f(vec![f32::NAN]), &f(vec![f32::NAN]), 1e-3, 0.0).is_none());
        assert!(mismatch(&f(vec![1.0]), &f(vec![f32::NAN]), 1e-3, 0.0).is_some());
        assert!(mismatch(&f(vec![f32::NAN]), &f(vec![1.0]), 1e-3, 0.0).is_some());
        assert!(mismatch(&f(vec![1.0]), &f(vec![1.0, 1.0]), 1e-3, 0.0).is_some());
        let i = Value::I64(ArrayD::from_shape_vec(vec![1], vec![1]).unwrap());
        assert!(mismatch(&f(vec![1.0]), &i, 1e-3, 0.0).is_some());
        assert_eq!(rel_l2(&f(vec![3.0, 4.0]), &f(vec![3.0, 4.0])), 0.0);
        assert!(rel_l2(&f(vec![f32::NAN]), &f(vec![1.0])).is_infinite());
    }
}
