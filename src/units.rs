//! Durations, percentages, link rates and byte sizes as people write them in scenario and
//! configuration files: `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`, `"0.5%"`, `"10mbit"`, `"4MiB"`.
//! Each is a string with one strict grammar, so that a typo such as `"5 sec"` or `"5"` is an
//! error naming what was expected, never a silent guess. (Rates and sizes also take a bare
//! whole number, in bits per second and bytes, as `tc` does.)

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The grammar of a duration, as a regular expression (also published in the JSON Schema).
pub const DURATION_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(us|ms|s|m|h)$";
/// The grammar of a percentage.
pub const PERCENT_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?%$";
/// The grammar of a link rate written as a string.
pub const RATE_PATTERN: &str = r"^[0-9]+((\.[0-9]+)?(bit|kbit|mbit|gbit))?$";
/// The grammar of a byte size written as a string.
pub const SIZE_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(B|KB|KiB|MB|MiB|GB|GiB)$";

/// A duration written with a unit: `us`, `ms`, `s`, `m` or `h`, no space, e.g. `"250ms"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses the strict grammar; the error says what was expected.
    pub fn parse(s: &str) -> Result<Dur, String> {
        let expected = || {
            format!(
                "expected a duration such as \"250ms\", \"1.5s\", \"2m\" or \"1h\" \
                 (a number, then us, ms, s, m or h, no space), found {s:?}"
            )
        };
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(expected)?;
        let (number, unit) = s.split_at(split);
        let scale = match unit {
            "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(expected()),
        };
        if !is_decimal(number) {
            return Err(expected());
        }
        let value: f64 = number.parse().map_err(|_| expected())?;
        let secs = value * scale;
        if !(secs.is_finite() && secs < 1e9) {
            return Err(format!("duration {s:?} is too long"));
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

/// `digits` or `digits.digits`.
fn is_decimal(s: &str) -> bool {
    let mut parts = s.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && parts.next().is_none_or(all_digits)
}

impl fmt::Display for Dur {
    /// The shortest exact form: `"1h"`, `"2m"`, `"1.5s"`, `"250ms"`, `"20us"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&show(self.0))
    }
}

/// Writes a duration the way a scenario file does, in the largest unit that keeps it exact to
/// a microsecond: `1h`, `90s`, `1.5s`, `250ms`.
pub fn show(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        return "0s".into();
    }
    for (unit, size) in [("h", 3_600_000_000u128), ("m", 60_000_000)] {
        if us.is_multiple_of(size) {
            return format!("{}{unit}", us / size);
        }
    }
    if us.is_multiple_of(1000) && us >= 1_000_000 {
        let s = us as f64 / 1e6;
        return format!("{s}s");
    }
    if us.is_multiple_of(1000) {
        return format!("{}ms", us / 1000);
    }
    format!("{us}us")
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"250ms\", \"1.5s\", \"2m\" or \"1h\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                Dur::parse(s).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{n}s\" or \"{n}ms\", not {n}"
                )))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                self.visit_i64(n as i64)
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{n}s\", not {n}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number and a unit (us, ms, s, m, h), e.g. \"250ms\", \"1.5s\", \"2m\".",
            "examples": ["250ms", "1s", "1.5s", "2m", "1h"]
        })
    }
}

/// A fraction written as a percentage, e.g. `"0.5%"`; holds the fraction (0.005).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl Percent {
    pub fn parse(s: &str) -> Result<Percent, String> {
        let expected = || {
            format!("expected a percentage such as \"1%\" or \"0.5%\" (0% to 100%), found {s:?}")
        };
        let number = s.strip_suffix('%').ok_or_else(expected)?;
        if !is_decimal(number) {
            return Err(expected());
        }
        let v: f64 = number.parse().map_err(|_| expected())?;
        if v > 100.0 {
            return Err(expected());
        }
        Ok(Percent(v / 100.0))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0 * 100.0)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Percent, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Percent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a percentage string such as \"1%\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Percent, E> {
                Percent::parse(s).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Percent, E> {
                Err(E::custom(format!(
                    "write a percentage as a string with %, e.g. \"{}%\" for {n}",
                    n * 100.0
                )))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Percent, E> {
                Err(E::custom(format!(
                    "write a percentage as a string with %, e.g. \"{n}%\""
                )))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Percent, E> {
                self.visit_i64(n as i64)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PERCENT_PATTERN,
            "description": "A percentage, e.g. \"1%\" or \"0.5%\".",
            "examples": ["1%", "0.5%", "30%"]
        })
    }
}

/// A number with a unit suffix from `units` (name, scale): the value scaled, as a whole number,
/// or `None` if the grammar does not match.
fn scaled(s: &str, units: &[(&str, f64)]) -> Option<f64> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = s.split_at(split);
    let scale = units.iter().find(|(u, _)| *u == unit)?.1;
    if !is_decimal(number) {
        return None;
    }
    let v = number.parse::<f64>().ok()? * scale;
    v.is_finite().then_some(v.round())
}

/// A link rate in bits per second, written as `tc` does: `"512kbit"`, `"10mbit"`, `"1gbit"`
/// (decimal multiples: 1kbit = 1000 bit/s), or a bare number of bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(pub u64);

impl Rate {
    pub fn parse(s: &str) -> Result<Rate, String> {
        let units = [("bit", 1.0), ("kbit", 1e3), ("mbit", 1e6), ("gbit", 1e9)];
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            // A bare number is bits per second, as in `tc`.
            return Rate::check(s.parse::<f64>().unwrap_or(f64::INFINITY), s);
        }
        let bits = scaled(s, &units).ok_or_else(|| {
            let hint = if s.ends_with("bps") {
                " (tc's \"bps\" means bytes per second: write bits, e.g. \"8mbit\" for 1 MB/s)"
            } else {
                ""
            };
            format!(
                "expected a rate such as \"512kbit\", \"10mbit\" or \"1gbit\" (a number, then \
                 bit, kbit, mbit or gbit, no space), or a number of bits per second, found {s:?}{hint}"
            )
        })?;
        Rate::check(bits, s)
    }

    fn check(bits: f64, written: &str) -> Result<Rate, String> {
        if bits < 1.0 {
            return Err(format!("rate {written} is below 1 bit per second"));
        }
        if bits > 1e15 {
            return Err(format!("rate {written} is above 1 Pbit/s"));
        }
        Ok(Rate(bits as u64))
    }
}

impl fmt::Display for Rate {
    /// The largest unit that keeps it exact: `"10mbit"`, `"512kbit"`, `"1500bit"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1000)] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}bit", self.0)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a rate such as \"10mbit\" or a number of bits per second")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Rate, E> {
                Rate::parse(s).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Rate, E> {
                Rate::check(n as f64, &n.to_string()).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Rate, E> {
                Rate::check(n as f64, &n.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A link rate: a number and a unit (bit, kbit, mbit, gbit; 1kbit = 1000 bit/s), e.g. \"10mbit\", or a whole number of bits per second.",
            "anyOf": [
                { "type": "string", "pattern": RATE_PATTERN },
                { "type": "integer", "minimum": 1 }
            ],
            "examples": ["512kbit", "10mbit", "1gbit"]
        })
    }
}

/// A size in bytes: `"64KiB"`, `"4MiB"`, `"1MB"` (KB, MB, GB decimal; KiB, MiB, GiB binary),
/// `"1500B"`, or a bare number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let units = [
            ("B", 1.0),
            ("KB", 1e3),
            ("KiB", 1024.0),
            ("MB", 1e6),
            ("MiB", 1_048_576.0),
            ("GB", 1e9),
            ("GiB", 1_073_741_824.0),
        ];
        let n = scaled(s, &units).ok_or_else(|| {
            format!(
                "expected a size such as \"64KiB\", \"4MiB\" or \"1MB\" (a number, then B, KB, \
                 KiB, MB, MiB, GB or GiB, no space), or a number of bytes, found {s:?}"
            )
        })?;
        if n > 1e15 {
            return Err(format!("size {s} is above 1 PB"));
        }
        Ok(ByteSize(n as u64))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides it exactly, so that it parses back to itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= size && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"4MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                ByteSize::parse(s).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("a size cannot be negative, found {n}")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: a number and a unit (B, KB, KiB, MB, MiB, GB, GiB), e.g. \"4MiB\", or a whole number of bytes.",
            "anyOf": [
                { "type": "string", "pattern": SIZE_PATTERN },
                { "type": "integer", "minimum": 0 }
            ],
            "examples": ["256KiB", "4MiB"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_number_and_a_unit() {
        let ms = Duration::from_millis;
        assert_eq!(Dur::parse("250ms").unwrap().0, ms(250));
        assert_eq!(Dur::parse("1.5s").unwrap().0, ms(1500));
        assert_eq!(Dur::parse("2m").unwrap().0, ms(120_000));
        assert_eq!(Dur::parse("1h").unwrap().0, ms(3_600_000));
        assert_eq!(Dur::parse("20us").unwrap().0, Duration::from_micros(20));
    }

    #[test]
    fn a_duration_with_a_space_a_long_unit_or_no_unit_is_refused_with_the_expected_form() {
        for bad in [
            "5 sec", "5sec", "5", "s", "1.s", ".5s", "-1s", "1e3ms", "5S",
        ] {
            let err = Dur::parse(bad).unwrap_err();
            assert!(err.contains("expected a duration"), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_print_back_in_the_largest_exact_unit() {
        for s in ["1h", "2m", "90s", "1.5s", "250ms", "20us", "0s"] {
            assert_eq!(Dur::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rates_take_tc_units_in_bits_and_refuse_bytes_per_second() {
        assert_eq!(Rate::parse("10mbit").unwrap().0, 10_000_000);
        assert_eq!(Rate::parse("512kbit").unwrap().0, 512_000);
        assert_eq!(Rate::parse("1gbit").unwrap().0, 1_000_000_000);
        assert_eq!(Rate::parse("1.5mbit").unwrap().0, 1_500_000);
        assert_eq!(Rate::parse("10mbit").unwrap().to_string(), "10mbit");
        assert_eq!(Rate::parse("64000").unwrap().0, 64_000);
        for bad in ["10 mbit", "10Mbit", "10mbps", "mbit", "0bit", "-1mbit", "0"] {
            let err = Rate::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert!(
            Rate::parse("1mbps")
                .unwrap_err()
                .contains("bytes per second")
        );
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(ByteSize::parse("4MiB").unwrap().0, 4 << 20);
        assert_eq!(ByteSize::parse("64KB").unwrap().0, 64_000);
        assert_eq!(ByteSize::parse("1500B").unwrap().0, 1500);
        for bad in ["4 MiB", "4mib", "4M", "MiB"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentages_hold_fractions() {
        assert_eq!(Percent::parse("1%").unwrap().0, 0.01);
        assert_eq!(Percent::parse("0.5%").unwrap().0, 0.005);
        assert!(Percent::parse("1").is_err());
        assert!(Percent::parse("101%").is_err());
        assert!(Percent::parse("1 %").is_err());
    }
}
