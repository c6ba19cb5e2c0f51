//! Human-readable numbers: counts with decimal prefixes, byte sizes with binary ones.

/// `842`, `12.3 K`, `25.6 M`, `1.2 G`: decimal prefixes, one decimal place above a thousand.
pub fn count(n: usize) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")];
    // Precision loss above 2^53 is irrelevant at one decimal place.
    let x = n as f64;
    for (scale, unit) in UNITS {
        if x >= scale {
            return format!("{:.1} {unit}", x / scale);
        }
    }
    n.to_string()
}

/// `512 B`, `1.5 KiB`, `97.7 MiB`, `3.2 GiB`: binary prefixes, one decimal place above 1 KiB.
pub fn bytes(n: usize) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut x = n as f64 / 1024.0;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1.0 K");
        assert_eq!(count(25_557_032), "25.6 M");
        assert_eq!(count(7_000_000_000), "7.0 G");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(102_440_000), "97.7 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(1 << 62), "4.0 EiB");
    }
}
