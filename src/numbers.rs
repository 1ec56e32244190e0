//! Numbers written for people: significant digits, powers of ten, SI
//! prefixes and durations. Tables, reports and terminal messages share these
//! so that one quantity reads the same everywhere (`74.9 nJ`, `2.7 × 10⁹`,
//! `≈ 7.3 months`).

/// `x` with `digits` significant digits, trailing zeros kept off:
/// `5.08`, `74.9`, `152`, `0.5`.
pub fn significant(x: f64, digits: i32) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A large or small number in words: `152`, `0.05`, `2.7 × 10⁹`,
/// `3.1 × 10⁻⁴`; three significant digits between 0.01 and 10⁵, a power of
/// ten outside.
pub fn scientific(x: f64) -> String {
    if !x.is_finite() {
        return if x > 0.0 { "∞".into() } else { "–".into() };
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if (1e-2..1e5).contains(&a) {
        return significant(x, 3);
    }
    let mut exponent = a.log10().floor() as i32;
    let mut mantissa = x / 10f64.powi(exponent);
    // 9.96 × 10³ rounds to "10 × 10³" at two digits: carry into the exponent.
    if significant(mantissa.abs(), 2) == "10" {
        mantissa /= 10.0;
        exponent += 1;
    }
    const SUPERSCRIPT: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let mut exp = String::new();
    if exponent < 0 {
        exp.push('⁻');
    }
    for d in exponent.unsigned_abs().to_string().chars() {
        exp.push(SUPERSCRIPT[d.to_digit(10).unwrap_or(0) as usize]);
    }
    format!("{} × 10{exp}", significant(mantissa, 2))
}

/// `value` in `unit` with an SI prefix and three significant digits:
/// `74.9 nJ`, `1.2 mm`, `0 J`; `∞` and `–` for non-finite values.
pub fn si(value: f64, unit: &str) -> String {
    if !value.is_finite() {
        return if value > 0.0 {
            "∞".into()
        } else {
            "–".into()
        };
    }
    if value == 0.0 {
        return format!("0 {unit}");
    }
    const PREFIXES: [(f64, &str); 11] = [
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
        (1.0, ""),
        (1e-3, "m"),
        (1e-6, "µ"),
        (1e-9, "n"),
        (1e-12, "p"),
        (1e-15, "f"),
        (1e-18, "a"),
    ];
    let a = value.abs();
    let (scale, p) = PREFIXES
        .iter()
        .find(|(s, _)| a >= *s)
        .copied()
        .unwrap_or((1e-18, "a"));
    format!("{} {p}{unit}", significant(value / scale, 3))
}

const MINUTE_S: f64 = 60.0;
const HOUR_S: f64 = 3600.0;
const DAY_S: f64 = 24.0 * HOUR_S;
/// The Julian year, 365.25 days.
const YEAR_S: f64 = 365.25 * DAY_S;
const MONTH_S: f64 = YEAR_S / 12.0;

/// A wall-clock duration as a run's time is stated: `42 s`, `17.5 min`,
/// `2.3 h` (seconds below two minutes, minutes below two hours).
pub fn duration_words(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 2.0 * HOUR_S {
        format!("{:.1} min", seconds / MINUTE_S)
    } else {
        format!("{:.1} h", seconds / HOUR_S)
    }
}

/// A long span of time in calendar words, two significant digits:
/// `45 s`, `12 min`, `5.1 hours`, `3.2 days`, `7.3 months`, `12 years`,
/// `2.7 × 10⁹ years`.
pub fn span_words(seconds: f64) -> String {
    if !seconds.is_finite() {
        return if seconds > 0.0 {
            "forever".into()
        } else {
            "–".into()
        };
    }
    let unit = |value: f64, singular: &str, plural: &str| {
        let v = significant(value, 2);
        format!("{v} {}", if v == "1" { singular } else { plural })
    };
    if seconds < 2.0 * MINUTE_S {
        unit(seconds, "second", "seconds")
    } else if seconds < 2.0 * HOUR_S {
        unit(seconds / MINUTE_S, "minute", "minutes")
    } else if seconds < 2.0 * DAY_S {
        unit(seconds / HOUR_S, "hour", "hours")
    } else if seconds < 2.0 * MONTH_S {
        unit(seconds / DAY_S, "day", "days")
    } else if seconds < 2.0 * YEAR_S {
        unit(seconds / MONTH_S, "month", "months")
    } else if seconds / YEAR_S < 1e5 {
        unit(seconds / YEAR_S, "year", "years")
    } else {
        format!("{} years", scientific(seconds / YEAR_S))
    }
}

/// A device lifetime in epochs, with the time it lasts at the measured
/// seconds per epoch when known: `2.7 × 10⁹ epochs ≈ 12 years of training`.
pub fn lifetime_words(epochs: f64, seconds_per_epoch: Option<f64>) -> String {
    let mut s = format!("{} epochs", scientific(epochs));
    if let Some(t) = seconds_per_epoch.filter(|t| *t > 0.0 && epochs.is_finite()) {
        s.push_str(&format!(" ≈ {} of training", span_words(epochs * t)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits_drop_trailing_zeros() {
        assert_eq!(significant(5.0812, 3), "5.08");
        assert_eq!(significant(74.94, 3), "74.9");
        assert_eq!(significant(152.4, 3), "152");
        assert_eq!(significant(0.5, 3), "0.5");
        assert_eq!(significant(-0.012345, 2), "-0.012");
    }

    #[test]
    fn scientific_switches_to_powers_of_ten_outside_the_readable_range() {
        assert_eq!(scientific(152.0), "152");
        assert_eq!(scientific(2.7e9), "2.7 × 10⁹");
        assert_eq!(scientific(3.14e-4), "3.1 × 10⁻⁴");
        assert_eq!(scientific(9.96e5), "1 × 10⁶");
        assert_eq!(scientific(0.0), "0");
        assert_eq!(scientific(f64::INFINITY), "∞");
    }

    #[test]
    fn si_prefixes_scale_by_thousands() {
        assert_eq!(si(7.49e-8, "J"), "74.9 nJ");
        assert_eq!(si(1.2e-3, "m"), "1.2 mm");
        assert_eq!(si(0.0, "J"), "0 J");
        assert_eq!(si(2.5e6, "W"), "2.5 MW");
        assert_eq!(si(f64::NAN, "J"), "–");
    }

    #[test]
    fn spans_are_written_in_calendar_units() {
        assert_eq!(span_words(45.0), "45 seconds");
        assert_eq!(span_words(1.0), "1 second");
        assert_eq!(span_words(12.0 * MINUTE_S), "12 minutes");
        assert_eq!(span_words(5.1 * HOUR_S), "5.1 hours");
        assert_eq!(span_words(3.2 * DAY_S), "3.2 days");
        assert_eq!(span_words(7.3 * MONTH_S), "7.3 months");
        assert_eq!(span_words(12.0 * YEAR_S), "12 years");
        assert_eq!(span_words(2.7e9 * YEAR_S), "2.7 × 10⁹ years");
    }

    #[test]
    fn lifetimes_state_epochs_and_time() {
        assert_eq!(lifetime_words(1e6, None), "1 × 10⁶ epochs");
        assert_eq!(
            lifetime_words(1000.0, Some(DAY_S / 100.0)),
            "1000 epochs ≈ 10 days of training"
        );
    }

    #[test]
    fn durations_switch_units_at_two_of_the_next() {
        assert_eq!(duration_words(42.0), "42 s");
        assert_eq!(duration_words(17.5 * 60.0), "17.5 min");
        assert_eq!(duration_words(2.3 * 3600.0), "2.3 h");
    }
}
