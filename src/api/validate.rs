//! Field checks shared by the request bodies. A failure names the field path and the problem.

use std::fmt;

/// One field that failed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for FieldError {}

/// A request body that can check itself beyond what its types already enforce.
pub trait Validate {
    fn validate(&self) -> Result<(), FieldError>;
}

/// Field names are `Display` values (often `format_args!`), turned into text only on failure, so
/// checking a valid body allocates nothing.
pub(crate) fn fail(field: impl fmt::Display, problem: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// Non-empty, at most `max` characters, no control characters.
pub(crate) fn text(field: impl fmt::Display, value: &str, max: usize) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(fail(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(fail(field, format!("must be at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(fail(field, "must not contain control characters"));
    }
    Ok(())
}

/// An identifier: 1 to 128 of `[A-Za-z0-9_.:-]`.
pub(crate) fn identifier(field: impl fmt::Display, value: &str) -> Result<(), FieldError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(fail(
            field,
            format!("expected 1 to 128 of A-Z a-z 0-9 _ . : -, got {value:?}"),
        ))
    }
}

/// A decimal number followed by `unit`, e.g. `15.68GB` or `550MB/s`.
pub(crate) fn quantity(
    field: impl fmt::Display,
    value: &str,
    unit: &str,
) -> Result<(), FieldError> {
    let number = value.strip_suffix(unit).unwrap_or("");
    let ok = !number.is_empty()
        && number.bytes().filter(|&b| b == b'.').count() <= 1
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && number.bytes().last().is_some_and(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(fail(
            field,
            format!("expected a number followed by {unit} (like \"16.00{unit}\"), got {value:?}"),
        ))
    }
}

/// A CPU list as the kernel writes it: `0-7`, `0-7,16-23`, `0,2,4`.
pub(crate) fn cpu_list(field: impl fmt::Display, value: &str) -> Result<(), FieldError> {
    let part_ok = |part: &str| match part.split_once('-') {
        Some((lo, hi)) => {
            matches!((lo.parse::<u32>(), hi.parse::<u32>()), (Ok(l), Ok(h)) if l <= h)
        }
        None => part.parse::<u32>().is_ok(),
    };
    if !value.is_empty() && value.split(',').all(part_ok) {
        Ok(())
    } else {
        Err(fail(
            field,
            format!("expected a CPU list like \"0-15\" or \"0-7,16-23\", got {value:?}"),
        ))
    }
}

/// A finite number within `range`.
pub(crate) fn number_in(
    field: impl fmt::Display,
    value: f64,
    range: std::ops::RangeInclusive<f64>,
) -> Result<(), FieldError> {
    if value.is_finite() && range.contains(&value) {
        Ok(())
    } else {
        Err(fail(
            field,
            format!(
                "expected a number from {} to {}, got {value}",
                range.start(),
                range.end()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_need_a_number_and_the_unit() {
        assert!(quantity("ram", "15.68GB", "GB").is_ok());
        assert!(quantity("ram", "16GB", "GB").is_ok());
        for bad in ["GB", "16 GB", "16", ".5GB", "1.2.3GB", "16gb", "-1GB"] {
            assert!(quantity("ram", bad, "GB").is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_lists_keep_their_shape() {
        for good in ["0-63", "0-7,16-23", "0,2,4", "5"] {
            assert!(cpu_list("online_cpus", good).is_ok(), "{good}");
        }
        for bad in ["", "7-0", "0-", "a-b", "0-7;8"] {
            assert!(cpu_list("online_cpus", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers_refuse_slashes_and_spaces() {
        assert!(identifier("id", "Pr1L34ioD8GHkwnhJR0q").is_ok());
        assert!(identifier("id", "a/b").is_err());
        assert!(identifier("id", "a b").is_err());
        assert!(identifier("id", "").is_err());
    }
}
