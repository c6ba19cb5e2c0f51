//! Element-type traits shared by the elementwise ops.
//!
//! [`Elem`] widens any element losslessly to a [`Scalar`] and narrows it back the way numpy's
//! `astype` does (integers wrap, floats truncate toward zero, non-zero is `true`); [`Arith`] is
//! the arithmetic of the numeric types (integers wrap like numpy, f16/bf16 are computed in f32
//! and rounded back); [`Float`] is the math of f32 and f64.

use half::{bf16, f16};

/// One element widened losslessly: integers to i128, floats to f64, bools as such.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Scalar {
    Int(i128),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Scalar::Int(i) => i as f64,
            Scalar::Float(f) => f,
            Scalar::Bool(b) => f64::from(u8::from(b)),
        }
    }
}

/// Every element type of [`crate::Value`].
pub(crate) trait Elem: Copy + PartialOrd + Send + Sync + 'static {
    fn to_scalar(self) -> Scalar;
    /// numpy's `astype` into this type: integers wrap, floats truncate toward zero (NaN gives
    /// 0, values out of range saturate at 64 bits and then wrap), bools are 0 or 1.
    fn from_scalar(s: Scalar) -> Self;
    fn to_f64(self) -> f64 {
        self.to_scalar().as_f64()
    }
}

/// A float truncated toward zero into 64 bits, as C casts do on common targets before
/// narrowing (so -1.0 into u8 gives 255 as numpy does).
fn trunc_i128(f: f64) -> i128 {
    if f < 0.0 {
        i128::from(f as i64)
    } else {
        i128::from(f as u64)
    }
}

macro_rules! elem_int {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn to_scalar(self) -> Scalar {
                Scalar::Int(i128::from(self))
            }
            fn from_scalar(s: Scalar) -> Self {
                match s {
                    Scalar::Int(i) => i as $t,
                    Scalar::Float(f) => trunc_i128(f) as $t,
                    Scalar::Bool(b) => <$t>::from(b),
                }
            }
        }
    )*};
}
elem_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Elem for f32 {
    fn to_scalar(self) -> Scalar {
        Scalar::Float(f64::from(self))
    }
    fn from_scalar(s: Scalar) -> Self {
        match s {
            Scalar::Int(i) => i as f32,
            Scalar::Float(f) => f as f32,
            Scalar::Bool(b) => f32::from(u8::from(b)),
        }
    }
}

impl Elem for f64 {
    fn to_scalar(self) -> Scalar {
        Scalar::Float(self)
    }
    fn from_scalar(s: Scalar) -> Self {
        s.as_f64()
    }
}

/// f64 to f32 rounding to odd: exact values stay, inexact ones are truncated toward zero with
/// the last bit set. Rounding that to nearest-even in a format of at most 22 significant bits
/// (f16, bf16) is the correctly rounded f64, with no double-rounding error (`half`'s own f64
/// conversions round through f32 or truncate, which can be off by one ulp).
fn f64_to_f32_odd(x: f64) -> f32 {
    let t = x as f32;
    if x.is_nan() || f64::from(t) == x {
        return t;
    }
    let mut bits = t.to_bits();
    if f64::from(t).abs() > x.abs() {
        // Rounded away from zero (|t| > 0): one step back toward zero.
        bits = bits.wrapping_sub(1);
    }
    f32::from_bits(bits | 1)
}

impl Elem for f16 {
    fn to_scalar(self) -> Scalar {
        Scalar::Float(self.to_f64())
    }
    fn from_scalar(s: Scalar) -> Self {
        f16::from_f32(f64_to_f32_odd(s.as_f64()))
    }
}

impl Elem for bf16 {
    fn to_scalar(self) -> Scalar {
        Scalar::Float(self.to_f64())
    }
    fn from_scalar(s: Scalar) -> Self {
        bf16::from_f32(f64_to_f32_odd(s.as_f64()))
    }
}

impl Elem for bool {
    fn to_scalar(self) -> Scalar {
        Scalar::Bool(self)
    }
    fn from_scalar(s: Scalar) -> Self {
        match s {
            Scalar::Int(i) => i != 0,
            // NaN is non-zero, so true (as numpy).
            Scalar::Float(f) => f != 0.0,
            Scalar::Bool(b) => b,
        }
    }
}

/// Arithmetic of the numeric element types (not bool).
pub(crate) trait Arith: Elem {
    const ZERO: Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// Floats divide IEEE-style; integers truncate toward zero, and give 0 for a zero divisor
    /// (numpy's result) and wrap for `MIN / -1`.
    fn div(self, o: Self) -> Self;
    fn neg(self) -> Self;
    fn abs(self) -> Self;
    /// -1, 0 or 1 (NaN stays NaN).
    fn sign(self) -> Self;
    fn is_nan(self) -> bool;
    /// numpy's `minimum`: NaN if either is NaN.
    fn min_nan(self, o: Self) -> Self {
        if self.is_nan() {
            self
        } else if o.is_nan() || o < self {
            o
        } else {
            self
        }
    }
    /// numpy's `maximum`: NaN if either is NaN.
    fn max_nan(self, o: Self) -> Self {
        if self.is_nan() {
            self
        } else if o.is_nan() || o > self {
            o
        } else {
            self
        }
    }
}

macro_rules! arith_int {
    ($abs:expr, $sign:expr; $($t:ty),*) => {$(
        impl Arith for $t {
            const ZERO: Self = 0;
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            fn div(self, o: Self) -> Self {
                if o == 0 { 0 } else { self.wrapping_div(o) }
            }
            fn neg(self) -> Self {
                self.wrapping_neg()
            }
            fn abs(self) -> Self {
                let f: fn($t) -> $t = $abs;
                f(self)
            }
            fn sign(self) -> Self {
                let f: fn($t) -> $t = $sign;
                f(self)
            }
            fn is_nan(self) -> bool {
                false
            }
        }
    )*};
}
arith_int!(|x| x.wrapping_abs(), |x| x.signum(); i8, i16, i32, i64);
arith_int!(|x| x, |x| if x > 0 { 1 } else { 0 }; u8, u16, u32, u64);

macro_rules! arith_float {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const ZERO: Self = 0.0;
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
            fn neg(self) -> Self {
                -self
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn sign(self) -> Self {
                if self > 0.0 {
                    1.0
                } else if self < 0.0 {
                    -1.0
                } else {
                    // 0 and NaN are their own sign.
                    self
                }
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    )*};
}
arith_float!(f32, f64);

macro_rules! arith_half {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const ZERO: Self = <$t>::ZERO;
            fn add(self, o: Self) -> Self {
                <$t>::from_f32(self.to_f32() + o.to_f32())
            }
            fn sub(self, o: Self) -> Self {
                <$t>::from_f32(self.to_f32() - o.to_f32())
            }
            fn mul(self, o: Self) -> Self {
                <$t>::from_f32(self.to_f32() * o.to_f32())
            }
            fn div(self, o: Self) -> Self {
                <$t>::from_f32(self.to_f32() / o.to_f32())
            }
            fn neg(self) -> Self {
                -self
            }
            fn abs(self) -> Self {
                <$t>::from_f32(self.to_f32().abs())
            }
            fn sign(self) -> Self {
                <$t>::from_f32(Arith::sign(self.to_f32()))
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    )*};
}
arith_half!(f16, bf16);

/// The math of f32 and f64 (f16 and bf16 are computed in f32).
pub(crate) trait Float:
    Arith
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    /// A constant in this precision.
    fn c(v: f64) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    fn round_ties_even(self) -> Self;
    fn error_fn(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tan(self) -> Self;
    fn asin(self) -> Self;
    fn acos(self) -> Self;
    fn atan(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn asinh(self) -> Self;
    fn acosh(self) -> Self;
    fn atanh(self) -> Self;
}

macro_rules! float_impl {
    ($($t:ty),*) => {$(
        impl Float for $t {
            fn c(v: f64) -> Self {
                v as $t
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            fn ceil(self) -> Self {
                <$t>::ceil(self)
            }
            fn round_ties_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
            fn error_fn(self) -> Self {
                erf64(f64::from(self)) as $t
            }
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            fn tan(self) -> Self {
                <$t>::tan(self)
            }
            fn asin(self) -> Self {
                <$t>::asin(self)
            }
            fn acos(self) -> Self {
                <$t>::acos(self)
            }
            fn atan(self) -> Self {
                <$t>::atan(self)
            }
            fn sinh(self) -> Self {
                <$t>::sinh(self)
            }
            fn cosh(self) -> Self {
                <$t>::cosh(self)
            }
            fn asinh(self) -> Self {
                <$t>::asinh(self)
            }
            fn acosh(self) -> Self {
                <$t>::acosh(self)
            }
            fn atanh(self) -> Self {
                <$t>::atanh(self)
            }
        }
    )*};
}
float_impl!(f32, f64);

/// The error function in f64 (std has none), within about 1e-15 relative of the true value:
/// for |x| < 1 the Maclaurin series; for |x| < 2 `2/sqrt(pi) * exp(-x^2) * sum 2^n x^(2n+1) /
/// (1*3*...*(2n+1))` (positive terms, no cancellation); for |x| < 6 `1 - erfc(x)` with erfc's
/// continued fraction; beyond, +-1 (erf rounds to +-1 in f64).
pub(crate) fn erf64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let two_over_sqrt_pi = std::f64::consts::FRAC_2_SQRT_PI;
    let r = if ax < 1.0 {
        let mut sum = 0.0;
        let mut t = ax;
        let mut n = 0.0_f64;
        loop {
            let term = t / (2.0 * n + 1.0);
            sum += term;
            if term.abs() <= 1e-17 * sum.abs() {
                break;
            }
            n += 1.0;
            t *= -ax * ax / n;
        }
        two_over_sqrt_pi * sum
    } else if ax < 2.0 {
        let x2 = ax * ax;
        let mut term = ax;
        let mut sum = ax;
        let mut n = 0.0_f64;
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
        }
        two_over_sqrt_pi * (-x2).exp() * sum
    } else if ax < 6.0 {
        let mut t = ax;
        for k in (1..=60).rev() {
            t = ax + f64::from(k) * 0.5 / t;
        }
        1.0 - (-ax * ax).exp() / (std::f64::consts::PI.sqrt() * t)
    } else {
        1.0
    };
    r.min(1.0).copysign(x)
}

#[cfg(test)]
#[allow(clippy::excessive_precision, clippy::approx_constant)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_math_erf() {
        // python3 -c "import math; print([repr(math.erf(x)) for x in (0.1,0.5,1,2,3.5,5.9,-1.3)])"
        let cases = [
            (0.1, 0.1124629160182849),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (3.5, 0.9999992569016276),
            (1e-3, 0.0011283787909692365),
            (1.5, 0.9661051464753108),
            (2.4, 0.999311486103355),
            (5.9, 0.9999999999999999),
            (-1.3, -0.9340079449406524),
        ];
        for (x, want) in cases {
            let got = erf64(x);
            assert!(
                (got - want).abs() <= 1e-15 * want.abs(),
                "erf({x}) = {got}, want {want}"
            );
        }
        assert_eq!(erf64(0.0), 0.0);
        assert_eq!(erf64(-7.0), -1.0);
        assert!(erf64(f64::NAN).is_nan());
    }

    #[test]
    fn casts_like_numpy() {
        assert_eq!(u8::from_scalar(Scalar::Float(-1.0)), 255);
        assert_eq!(i32::from_scalar(Scalar::Float(-2.7)), -2);
        assert_eq!(i8::from_scalar(Scalar::Int(200)), -56);
        assert!(bool::from_scalar(Scalar::Float(f64::NAN)));
        assert_eq!(Arith::div(-7_i32, 2), -3);
        assert_eq!(Arith::div(7_i32, 0), 0);
        assert_eq!(Arith::div(i32::MIN, -1), i32::MIN);
        assert_eq!(Arith::abs(i8::MIN), i8::MIN);
        assert_eq!(Arith::sign(0_u8), 0);
        assert!(Arith::min_nan(1.0_f32, f32::NAN).is_nan());
        assert!(Arith::max_nan(f32::NAN, 1.0_f32).is_nan());
    }
}
