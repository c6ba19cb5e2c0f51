//! Engine precisions (what the builder is allowed to compute in).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The arithmetic precision an engine is built for, in TensorRT's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// IEEE fp32 everywhere.
    #[default]
    Fp32,
    /// fp32 storage, TF32 tensor-core math for GEMMs and convolutions.
    Tf32,
    /// fp16 storage and tensor-core math; accumulations that need it stay fp32.
    Fp16,
    /// bf16 storage and tensor-core math; accumulations that need it stay fp32.
    Bf16,
    /// int8 with calibrated or explicit (Q/DQ) scales.
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 5] = [
        Precision::Fp32,
        Precision::Tf32,
        Precision::Fp16,
        Precision::Bf16,
        Precision::Int8,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// The relative L2 error within which results of this precision are accepted against the
    /// fp32 CPU reference (the project's correctness standard).
    pub const fn rel_l2_tolerance(self) -> f64 {
        match self {
            Precision::Fp32 => 1e-5,
            Precision::Tf32 => 1e-3,
            Precision::Fp16 | Precision::Bf16 => 1e-2,
            Precision::Int8 => 5e-2,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = crate::CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == lower)
            .ok_or_else(|| crate::CoreError::Parse {
                what: "precision",
                input: s.to_string(),
                expected: "one of fp32, tf32, fp16, bf16, int8",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert!("fp8".parse::<Precision>().is_err());
        assert_eq!("FP16".parse::<Precision>().unwrap(), Precision::Fp16);
    }
}
