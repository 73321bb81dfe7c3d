//! The original's unit strings (`"15.68GB"`, `"550MB/s"`) and the table's human sizes.
//!
//! "GB" in the wire format means GiB: the original divided by 1024³, and validators compare
//! against that, so we keep it.

const GIB: f64 = (1u64 << 30) as f64;

/// Bytes as the wire format writes them, e.g. `15.68GB`.
pub fn wire_gb(bytes: u64) -> String {
    format!("{:.2}GB", bytes as f64 / GIB)
}

/// A measured speed as the wire format writes it, e.g. `550MB/s` (MB = 10⁶ bytes).
pub fn wire_mb_per_s(mb_per_s: f64) -> String {
    format!("{:.0}MB/s", mb_per_s.max(0.0))
}

/// Bytes for people, e.g. `15.7 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_match_the_original() {
        assert_eq!(wire_gb(16_837_316_608), "15.68GB");
        assert_eq!(wire_gb(0), "0.00GB");
        assert_eq!(wire_mb_per_s(549.6), "550MB/s");
        assert_eq!(wire_mb_per_s(-1.0), "0MB/s");
    }

    #[test]
    fn human_sizes_pick_a_readable_unit() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(274_877_906_944), "256.0 GiB");
    }
}
