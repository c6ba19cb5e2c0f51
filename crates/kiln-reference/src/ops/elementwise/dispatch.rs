//! `match` helpers over the element types of [`crate::Value`], for this folder.
//!
//! Each binds the array(s) of the matched variant and `$wrap`, that variant's constructor, so a
//! body can rebuild a value of the same element type. Type lists: [`numeric!`] (all but bool),
//! [`floats!`] (f32, f64, f16, bf16), [`all_types!`].

/// `match` over the variants in the list; `$other` binds anything else.
macro_rules! typed_match {
    ($v:expr, [$($V:ident),*], ($a:ident, $wrap:ident) => $body:expr, $other:ident => $fallback:expr) => {
        match $v {
            $(
                $crate::Value::$V($a) => {
                    #[allow(unused_variables)]
                    let $wrap = $crate::Value::$V;
                    $body
                }
            )*
            #[allow(unreachable_patterns)]
            $other => $fallback,
        }
    };
}

/// `match` over two values of the same variant in the list; anything else goes to `$fallback`.
macro_rules! typed_zip {
    ($x:expr, $y:expr, [$($V:ident),*], ($a:ident, $b:ident, $wrap:ident) => $body:expr, _ => $fallback:expr) => {
        match ($x, $y) {
            $(
                ($crate::Value::$V($a), $crate::Value::$V($b)) => {
                    #[allow(unused_variables)]
                    let $wrap = $crate::Value::$V;
                    $body
                }
            )*
            _ => $fallback,
        }
    };
}

/// [`typed_match!`] over the numeric types (not bool).
macro_rules! numeric {
    ($v:expr, ($a:ident, $wrap:ident) => $body:expr, $other:ident => $fallback:expr) => {
        typed_match!($v, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64],
            ($a, $wrap) => $body, $other => $fallback)
    };
}

/// [`typed_match!`] over the float types.
macro_rules! floats {
    ($v:expr, ($a:ident, $wrap:ident) => $body:expr, $other:ident => $fallback:expr) => {
        typed_match!($v, [F32, F64, F16, BF16], ($a, $wrap) => $body, $other => $fallback)
    };
}

/// [`typed_zip!`] over the numeric types (not bool).
macro_rules! numeric_zip {
    ($x:expr, $y:expr, ($a:ident, $b:ident, $wrap:ident) => $body:expr, _ => $fallback:expr) => {
        typed_zip!($x, $y, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64],
            ($a, $b, $wrap) => $body, _ => $fallback)
    };
}

/// [`typed_zip!`] over every type.
macro_rules! all_zip {
    ($x:expr, $y:expr, ($a:ident, $b:ident, $wrap:ident) => $body:expr, _ => $fallback:expr) => {
        typed_zip!($x, $y, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool],
            ($a, $b, $wrap) => $body, _ => $fallback)
    };
}
