//! Threshold values for people and for the JSON summary: the reporters' shared spelling of
//! the core's figures ([`ThresholdResult`], [`ValueUnit`]).

use sipcheck_core::scenario::threshold::ValueUnit;
use sipcheck_core::stats::verdict::ThresholdResult;

/// A threshold's measured value for people: `312.4 ms`, `0.08%`, `12`, `20.1/s`, `no data`.
#[must_use]
pub fn actual_text(t: &ThresholdResult) -> String {
    match t.actual {
        None => "no data".to_owned(),
        Some(v) => format_value(t.unit(), v),
    }
}

/// A value in a threshold unit, for people.
#[must_use]
pub fn format_value(unit: ValueUnit, v: f64) -> String {
    match unit {
        ValueUnit::Milliseconds if v.abs() < 1.0 => format!("{v:.3} ms"),
        ValueUnit::Milliseconds => format!("{v:.1} ms"),
        ValueUnit::Fraction => format!("{}%", trim_float(v * 100.0, 3)),
        ValueUnit::Count => trim_float(v, 3),
        ValueUnit::PerSecond => format!("{v:.1}/s"),
        ValueUnit::Score => format!("{v:.2}"),
    }
}

/// `v` with at most `decimals` decimals and no trailing zeros.
fn trim_float(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// The short name of a threshold unit, as in the JSON summary.
#[must_use]
pub fn unit_name(unit: ValueUnit) -> &'static str {
    match unit {
        ValueUnit::Milliseconds => "ms",
        ValueUnit::Fraction => "fraction",
        ValueUnit::Count => "count",
        ValueUnit::PerSecond => "per_second",
        ValueUnit::Score => "score",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcheck_core::stats::fixture;

    #[test]
    fn values_in_their_units() {
        assert_eq!(format_value(ValueUnit::Milliseconds, 312.44), "312.4 ms");
        assert_eq!(format_value(ValueUnit::Milliseconds, 0.5), "0.500 ms");
        assert_eq!(format_value(ValueUnit::Fraction, 0.0008), "0.08%");
        assert_eq!(format_value(ValueUnit::Count, 12.0), "12");
        assert_eq!(format_value(ValueUnit::PerSecond, 20.06), "20.1/s");
        let s = fixture::run();
        let checked = s.check(&fixture::thresholds());
        assert_eq!(actual_text(&checked[1]), "4%");
        let empty = s.check(&[sipcheck_core::scenario::threshold::Threshold::parse(
            "dtmf.verified",
            "> 1%",
        )
        .unwrap()]);
        assert_eq!(actual_text(&empty[0]), "100%");
    }
}
