//! Shared parsing and formatting rules (operations.md §12): numbers, Python number text, dates,
//! strftime patterns, booleans in text.

use std::sync::LazyLock;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use regex::Regex;

// ---------------------------------------------------------------------------------------------
// §12.1 Number parsing
// ---------------------------------------------------------------------------------------------

/// ASCII whitespace as Python's `str.strip()` sees it within ASCII (includes vertical tab and
/// the file/group/record/unit separators).
fn is_ascii_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1c'..='\x1f')
}

/// `text` without leading and trailing [`is_ascii_space`] characters. Byte-wise: those characters are
/// all ASCII, so the cut points are always character boundaries.
fn trim_ascii_space(text: &str) -> &str {
    let space = |b: &u8| b.is_ascii() && is_ascii_space(char::from(*b));
    let bytes = text.as_bytes();
    let Some(start) = bytes.iter().position(|b| !space(b)) else {
        return "";
    };
    let end = bytes.iter().rposition(|b| !space(b)).map_or(start, |i| i + 1);
    &text[start..end]
}

/// Unicode whitespace as Python's `str.isspace()` sees it (Rust's `White_Space` property plus
/// the ASCII separators U+001C–U+001F).
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\x1c'..='\x1f')
}

/// Checks the strict float grammar (sign already removed): digits with an optional fractional
/// part (`1.`, `.5`, `1.5`) and an optional exponent. With `underscores`, a single `_` is also
/// allowed between two digits (Python's float() syntax).
fn is_decimal_body(body: &str, underscores: bool) -> bool {
    let b = body.as_bytes();
    let mut i = 0;
    // Consumes a run of digits (with optional single underscores between digits); returns count.
    let digits = |i: &mut usize| -> usize {
        let mut n = 0;
        while *i < b.len() {
            if b[*i].is_ascii_digit() {
                n += 1;
                *i += 1;
            } else if underscores && b[*i] == b'_' && n > 0 && *i + 1 < b.len() && b[*i + 1].is_ascii_digit()
            {
                *i += 1;
            } else {
                break;
            }
        }
        n
    };
    let int_digits = digits(&mut i);
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        frac_digits = digits(&mut i);
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Shared core of the two number parsers; `text` is already trimmed.
fn parse_float_core(text: &str, underscores: bool) -> Option<f64> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'+') => (false, &text[1..]),
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        return Some(if negative { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if !is_decimal_body(body, underscores) {
        return None;
    }
    let cleaned: std::borrow::Cow<str> =
        if underscores && body.contains('_') { body.replace('_', "").into() } else { body.into() };
    let value: f64 = cleaned.parse().ok()?;
    if value.is_infinite() {
        // Beyond the float range.
        return None;
    }
    Some(if negative { -value } else { value })
}

/// §12.1: parses a number from text (trimmed ASCII whitespace; `inf`/`infinity` allowed; `nan`, empty,
/// separators, hex → `None`; values beyond the float range → `None`).
pub fn parse_number(text: &str) -> Option<f64> {
    parse_float_core(trim_ascii_space(text), false)
}

/// The wider float syntax of the template `:int`/`:float` conversion (§9.5.3, §12.1 parenthetical):
/// §12.1 plus Python `float()` extras — a single `_` between digits and Unicode whitespace around
/// the number. `nan` and values beyond the float range are still not numbers.
pub fn parse_number_lenient(text: &str) -> Option<f64> {
    parse_float_core(text.trim_matches(is_python_space), true)
}

/// Python `int()` of text: surrounding (Unicode) whitespace, optional sign, ASCII digits with a
/// single `_` allowed between digits (`1_000`); leading zeros allowed (`007` → 7). Values outside
/// the 64-bit range → `None`.
pub fn parse_python_int(text: &str) -> Option<i64> {
    let t = text.trim_matches(is_python_space);
    let (negative, body) = match t.as_bytes().first() {
        Some(b'+') => (false, &t[1..]),
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    let b = body.as_bytes();
    if b.is_empty() || !b[0].is_ascii_digit() || !b[b.len() - 1].is_ascii_digit() {
        return None;
    }
    let mut digits = String::with_capacity(b.len() + 1);
    if negative {
        digits.push('-');
    }
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            digits.push(c as char);
        } else if c == b'_' && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit() {
            // Between two digits (first/last bytes are digits, so the indexes are valid).
        } else {
            return None;
        }
    }
    digits.parse().ok()
}

/// §2.2 integer text: after trimming ASCII whitespace, `[+-]?[0-9]+`.
pub fn is_integer_text(text: &str) -> bool {
    let t = text.trim_matches(is_ascii_space);
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    !body.is_empty() && body.bytes().all(|c| c.is_ascii_digit())
}

/// §2.2: an integer-looking text (`[+-]?digits`, possibly with a fractional part or exponent)
/// whose digits start with a leading zero other than `0` itself (`021201`, `-07`, `00.5`).
pub fn has_leading_zero(text: &str) -> bool {
    let t = text.trim_matches(is_ascii_space);
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let b = body.as_bytes();
    b.len() >= 2 && b[0] == b'0' && b[1].is_ascii_digit()
}

// ---------------------------------------------------------------------------------------------
// §12.2 Python number text
// ---------------------------------------------------------------------------------------------

/// §12.2: the text Python prints for a float (`88.0`, `1e-07`, `1e+16`, `inf`, `nan`).
pub fn python_float_text(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `1.2345e20`, `-1e-7`, `0e0`, `-0e0`.
    let sci = format!("{:e}", value);
    let (negative, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci.as_str()),
    };
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();

    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// §12.2: the text Python prints for an integer (plain decimal).
pub fn python_number_text_i64(value: i64) -> String {
    value.to_string()
}

// ---------------------------------------------------------------------------------------------
// §12.3 Date/time parsing
// ---------------------------------------------------------------------------------------------

/// Optional time part shared by all forms: a space (or whitespace run) or `T`, then `H:MM`,
/// `H:MM:SS` or `H:MM:SS.f…`, then optionally `Z` or `±HH:MM`/`±HHMM`.
const TIME: &str = r"(?:(?:\s+|T)(?P<h>[0-9]{1,2}):(?P<mi>[0-9]{2})(?::(?P<s>[0-9]{2})(?:\.(?P<f>[0-9]+))?)?(?:\s*(?P<z>[zZ]|[+-][0-9]{2}:?[0-9]{2}))?)?";

const MONTH: &str = r"(?P<mon>(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?))";

fn build(pattern: &str) -> Regex {
    Regex::new(&pattern.replace("{TIME}", TIME).replace("{MONTH}", MONTH)).expect("valid regex")
}

/// Form 1: ISO `YYYY-MM-DD` / `YYYY/MM/DD` / `YYYY.MM.DD` (+ time).
static ISO_RE: LazyLock<Regex> = LazyLock::new(|| {
    build(r"^(?P<y>[0-9]{4})(?P<sep1>[-/.])(?P<a>[0-9]{1,2})(?P<sep2>[-/.])(?P<b>[0-9]{1,2}){TIME}$")
});
/// Form 3: `A/B/Y`, `A-B-Y`, `A.B.Y` (+ time).
static NUMERIC_RE: LazyLock<Regex> = LazyLock::new(|| {
    build(r"^(?P<a>[0-9]{1,2})(?P<sep1>[-/.])(?P<b>[0-9]{1,2})(?P<sep2>[-/.])(?P<y>[0-9]{4}|[0-9]{2}){TIME}$")
});
/// Form 4a: `Jan 5, 2024`, `January 5 2024` (+ time).
static MONTH_DAY_YEAR_RE: LazyLock<Regex> =
    LazyLock::new(|| build(r"^{MONTH}\s+(?P<d>[0-9]{1,2})(?:\s*,\s*|\s+)(?P<y>[0-9]{4}){TIME}$"));
/// Form 4b: `5 Jan 2024`, `5 January, 2024` (+ time).
static DAY_MONTH_YEAR_RE: LazyLock<Regex> =
    LazyLock::new(|| build(r"^(?P<d>[0-9]{1,2})\s+{MONTH}(?:\s*,\s*|\s+)(?P<y>[0-9]{4}){TIME}$"));
/// Form 4c: `Jan 2024` (day 1) (+ time).
static MONTH_YEAR_RE: LazyLock<Regex> =
    LazyLock::new(|| build(r"^{MONTH}(?:\s*,\s*|\s+)(?P<y>[0-9]{4}){TIME}$"));

fn month_number(name: &str) -> Option<u32> {
    let prefix = name.get(..3)?.to_ascii_lowercase();
    let n = match prefix.as_str() {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    Some(n)
}

fn cap_u32(caps: &regex::Captures, name: &str) -> Option<u32> {
    caps.name(name)?.as_str().parse().ok()
}

/// Applies the optional time and zone of a match to a date; `None` when the time is invalid.
fn with_time(date: NaiveDate, caps: &regex::Captures) -> Option<NaiveDateTime> {
    let Some(h) = caps.name("h") else {
        return Some(date.and_time(NaiveTime::MIN));
    };
    let h: u32 = h.as_str().parse().ok()?;
    let mi = cap_u32(caps, "mi")?;
    let s = cap_u32(caps, "s").unwrap_or(0);
    let nanos = match caps.name("f") {
        Some(f) => {
            // Fraction of a second; digits beyond nanoseconds are truncated.
            let mut digits: String = f.as_str().chars().take(9).collect();
            while digits.len() < 9 {
                digits.push('0');
            }
            digits.parse().ok()?
        }
        None => 0,
    };
    // Seconds above 59 (leap seconds) and hours above 23 are rejected here.
    let time = NaiveTime::from_hms_nano_opt(h, mi, s, nanos)?;
    let local = date.and_time(time);
    match caps.name("z").map(|m| m.as_str()) {
        None | Some("Z") | Some("z") => Some(local),
        Some(zone) => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            let zh: i64 = digits[..2].parse().ok()?;
            let zm: i64 = digits[2..].parse().ok()?;
            if zh > 23 || zm > 59 {
                return None;
            }
            // Local time = UTC + offset, so UTC = local − offset.
            local.checked_sub_signed(Duration::minutes(sign * (zh * 60 + zm)))
        }
    }
}

/// `YYYY-MM-DD` and `YYYY-MM-DD HH:MM:SS` (separator `-`, `/` or `.` used twice; `T` or a space before
/// the time), the text of Excel date cells. `None` when the text has another shape (the regexes decide);
/// `Some(result)` is what form 1 yields for it.
fn iso_fast_path(b: &[u8]) -> Option<Option<NaiveDateTime>> {
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    if !(b.len() == 10 || b.len() == 19) || !matches!(b[4], b'-' | b'/' | b'.') || b[7] != b[4] {
        return None;
    }
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let time = if b.len() == 19 {
        if !matches!(b[10], b' ' | b'T') || b[13] != b':' || b[16] != b':' {
            return None;
        }
        (digits(11..13)?, digits(14..16)?, digits(17..19)?)
    } else {
        (0, 0, 0)
    };
    let date = NaiveDate::from_ymd_opt(y as i32, m, d);
    Some(date.and_then(|date| Some(date.and_time(NaiveTime::from_hms_opt(time.0, time.1, time.2)?))))
}

/// Two-digit years: `00`–`68` → 20xx, `69`–`99` → 19xx.
fn expand_year(text: &str) -> Option<i32> {
    let y: i32 = text.parse().ok()?;
    Some(match text.len() {
        2 if y <= 68 => 2000 + y,
        2 => 1900 + y,
        _ => y,
    })
}

/// §12.3: parses a date or date-time (zones converted to UTC and dropped).
pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    // Fast paths for the shapes that dominate real columns; each returns exactly what the forms below
    // would, without a regex.
    let b = t.as_bytes();
    if !b.iter().any(u8::is_ascii_digit) || !b[0].is_ascii_alphanumeric() {
        // Every form needs a year, and starts with a digit or a month name.
        return None;
    }
    if b.iter().all(u8::is_ascii_digit) {
        // Only forms 2 (`YYYYMMDD`) and 5 (`YYYY`) are all digits.
        let (y, md) = match b.len() {
            8 => (t[..4].parse().ok()?, Some((t[4..6].parse().ok()?, t[6..].parse().ok()?))),
            4 => (t.parse().ok()?, None),
            _ => return None,
        };
        let (m, d) = md.unwrap_or((1, 1));
        return NaiveDate::from_ymd_opt(y, m, d).map(|d| d.and_time(NaiveTime::MIN));
    }
    if let Some(parsed) = iso_fast_path(b) {
        return parsed;
    }

    // 1. ISO forms.
    if let Some(c) = ISO_RE.captures(t) {
        if c["sep1"] == c["sep2"] {
            let date = NaiveDate::from_ymd_opt(c["y"].parse().ok()?, cap_u32(&c, "a")?, cap_u32(&c, "b")?)?;
            return with_time(date, &c);
        }
        return None;
    }

    // 2. YYYYMMDD.
    if t.len() == 8 && t.bytes().all(|b| b.is_ascii_digit()) {
        return NaiveDate::from_ymd_opt(t[..4].parse().ok()?, t[4..6].parse().ok()?, t[6..].parse().ok()?)
            .map(|d| d.and_time(NaiveTime::MIN));
    }

    // 3. Numeric month/day forms: month-first, then day-first.
    if let Some(c) = NUMERIC_RE.captures(t) {
        if c["sep1"] != c["sep2"] {
            return None;
        }
        let y = expand_year(&c["y"])?;
        let (a, b) = (cap_u32(&c, "a")?, cap_u32(&c, "b")?);
        let date = NaiveDate::from_ymd_opt(y, a, b).or_else(|| NaiveDate::from_ymd_opt(y, b, a))?;
        return with_time(date, &c);
    }

    // 4. English month names.
    for re in [&*MONTH_DAY_YEAR_RE, &*DAY_MONTH_YEAR_RE, &*MONTH_YEAR_RE] {
        if let Some(c) = re.captures(t) {
            let month = month_number(&c["mon"])?;
            let day = c.name("d").map_or(Some(1), |d| d.as_str().parse().ok())?;
            let date = NaiveDate::from_ymd_opt(c["y"].parse().ok()?, month, day)?;
            return with_time(date, &c);
        }
    }

    // 5. Bare year.
    if t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()) {
        return NaiveDate::from_ymd_opt(t.parse().ok()?, 1, 1).map(|d| d.and_time(NaiveTime::MIN));
    }

    None
}

// ---------------------------------------------------------------------------------------------
// §12.4 strftime patterns
// ---------------------------------------------------------------------------------------------

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAY_NAMES: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// §12.4: formats with Python strftime directives (`%f` = 6 digits of microseconds, unknown copied).
pub fn python_strftime(value: &NaiveDateTime, pattern: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        let month = value.month0() as usize;
        let weekday = value.weekday().num_days_from_monday() as usize;
        let _ = match d {
            'Y' => {
                let y = value.year();
                if y < 0 {
                    write!(out, "-{:04}", -y)
                } else {
                    write!(out, "{:04}", y)
                }
            }
            'y' => write!(out, "{:02}", value.year().rem_euclid(100)),
            'm' => write!(out, "{:02}", value.month()),
            'd' => write!(out, "{:02}", value.day()),
            'H' => write!(out, "{:02}", value.hour()),
            'I' => write!(out, "{:02}", value.hour12().1),
            'M' => write!(out, "{:02}", value.minute()),
            'S' => write!(out, "{:02}", value.second()),
            'p' => write!(out, "{}", if value.hour() < 12 { "AM" } else { "PM" }),
            'b' => write!(out, "{}", &MONTH_NAMES[month][..3]),
            'B' => write!(out, "{}", MONTH_NAMES[month]),
            'a' => write!(out, "{}", &DAY_NAMES[weekday][..3]),
            'A' => write!(out, "{}", DAY_NAMES[weekday]),
            'j' => write!(out, "{:03}", value.ordinal()),
            'f' => write!(out, "{:06}", (value.nanosecond() % 1_000_000_000) / 1000),
            '%' => write!(out, "%"),
            'z' | 'Z' => Ok(()),
            other => write!(out, "%{}", other),
        };
    }
    out
}

// ---------------------------------------------------------------------------------------------
// §12.5 Booleans in text
// ---------------------------------------------------------------------------------------------

/// Form flags (rest-api.md §1.2, new service): `true`, `1`, `yes`, `on` (case-insensitive,
/// trimmed) → true; everything else → false.
pub fn is_truthy_flag(text: &str) -> bool {
    let t = text.trim().to_lowercase();
    matches!(t.as_str(), "true" | "1" | "yes" | "on")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_space_trim_matches_the_char_trim() {
        for text in ["", "   ", " 1.5 ", "\x0b\x1c2\x1f\x0c", "\u{a0}3\u{a0}", " é ", "é", "\t\n\r4é\r"] {
            assert_eq!(trim_ascii_space(text), text.trim_matches(is_ascii_space), "{text:?}");
        }
        assert_eq!(parse_number(" \x0b1.5\x1f "), Some(1.5));
        assert_eq!(parse_number("\u{a0}1"), None);
    }

    fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, s).unwrap()
    }

    fn date(y: i32, mo: u32, d: u32) -> NaiveDateTime {
        dt(y, mo, d, 0, 0, 0)
    }

    #[test]
    fn parse_number_accepts_grammar() {
        let cases: &[(&str, f64)] = &[
            ("0", 0.0),
            ("1", 1.0),
            ("-2.5", -2.5),
            ("+3", 3.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("-.5", -0.5),
            ("1.5", 1.5),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("1e+3", 1000.0),
            ("2.5e-3", 0.0025),
            (".5e1", 5.0),
            ("1.e2", 100.0),
            ("  42  ", 42.0),
            ("\t7\n", 7.0),
            ("\r\n 8 \x0b\x0c", 8.0),
            ("021201", 21201.0),
            ("1000", 1000.0),
            ("1500.75", 1500.75),
            ("2.71", 2.71),
            ("999", 999.0),
            ("1e-400", 0.0),
            ("1.7976931348623157e308", f64::MAX),
        ];
        for (text, want) in cases {
            assert_eq!(parse_number(text), Some(*want), "{text:?}");
        }
    }

    #[test]
    fn parse_number_infinities() {
        for text in ["inf", "INF", "Inf", "infinity", "Infinity", "INFINITY", "+inf", " inf "] {
            assert_eq!(parse_number(text), Some(f64::INFINITY), "{text:?}");
        }
        for text in ["-inf", "-Infinity", "-INF"] {
            assert_eq!(parse_number(text), Some(f64::NEG_INFINITY), "{text:?}");
        }
    }

    #[test]
    fn parse_number_rejects() {
        let cases = [
            "",
            " ",
            "nan",
            "NaN",
            "-nan",
            "+",
            "-",
            ".",
            "e5",
            "1e",
            "1e+",
            "1.2.3",
            "1,000",
            "1_000",
            "$1,234.56",
            "0x10",
            "0X1F",
            "1 000",
            "abc",
            "infin",
            "infinityy",
            "++1",
            "+-1",
            "1-",
            "5-",
            "(100)",
            "١٢",
            "１２",
            "\u{a0}5",
            "5\u{3000}",
            "1e400",
            "-1e400",
            "2e308",
            "inf1",
            "1d",
            "1f",
            "true",
        ];
        for text in cases {
            assert_eq!(parse_number(text), None, "{text:?}");
        }
    }

    #[test]
    fn parse_number_lenient_cases() {
        let ok: &[(&str, f64)] = &[
            ("42", 42.0),
            ("42.7", 42.7),
            ("42.5", 42.5),
            ("1e3", 1000.0),
            ("1_000", 1000.0),
            ("1_000.5_5", 1000.55),
            ("1e1_0", 1e10),
            ("\u{a0}5\u{3000}", 5.0),
            ("  -3.5\n", -3.5),
            ("inf", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            (".5", 0.5),
            ("1.", 1.0),
        ];
        for (text, want) in ok {
            assert_eq!(parse_number_lenient(text), Some(*want), "{text:?}");
        }
        for text in [
            "", "nan", "_1", "1_", "1__0", "1_.5", "1._5", "1e_5", "it's 3rd", "abc", "0x10", "1,000",
            "1e400",
        ] {
            assert_eq!(parse_number_lenient(text), None, "{text:?}");
        }
    }

    #[test]
    fn parse_python_int_cases() {
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("42", 42),
            ("-7", -7),
            ("+7", 7),
            ("007", 7),
            (" 12 ", 12),
            ("\u{3000}12\u{a0}", 12),
            ("1_000", 1000),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ];
        for (text, want) in ok {
            assert_eq!(parse_python_int(text), Some(*want), "{text:?}");
        }
        for text in [
            "",
            " ",
            "-",
            "+",
            "4.2",
            "1e3",
            "_1",
            "1_",
            "1__0",
            "abc",
            "0x10",
            "9223372036854775808",
            "1 0",
            "--1",
        ] {
            assert_eq!(parse_python_int(text), None, "{text:?}");
        }
    }

    #[test]
    fn integer_text_and_leading_zero() {
        for (text, integer, zero) in [
            ("0", true, false),
            ("-0", true, false),
            ("+0", true, false),
            ("10", true, false),
            ("021201", true, true),
            ("-07", true, true),
            (" 12 ", true, false),
            ("1.5", false, false),
            ("00.5", false, true),
            ("0.5", false, false),
            ("", false, false),
            ("-", false, false),
            ("1e3", false, false),
            ("abc", false, false),
        ] {
            assert_eq!(is_integer_text(text), integer, "{text:?}");
            assert_eq!(has_leading_zero(text), zero, "{text:?}");
        }
    }

    #[test]
    fn python_float_text_cases() {
        let cases: &[(f64, &str)] = &[
            (88.0, "88.0"),
            (95.5, "95.5"),
            (0.0001, "0.0001"),
            (0.00015, "0.00015"),
            (1234567890123456.0, "1234567890123456.0"),
            (1e-7, "1e-07"),
            (1.5e-5, "1.5e-05"),
            (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"),
            (1e20, "1e+20"),
            (1e100, "1e+100"),
            (1e-100, "1e-100"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (1000.0, "1000.0"),
            (2.5, "2.5"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.0 / 3.0, "0.3333333333333333"),
            (123.456, "123.456"),
            (9999999999999998.0, "9999999999999998.0"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (-1.5, "-1.5"),
            (-1e-7, "-1e-07"),
            (-1e16, "-1e+16"),
            (1234.56, "1234.56"),
            (1.23456, "1.23456"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (2.68, "2.68"),
            (42.0, "42.0"),
        ];
        for (value, want) in cases {
            assert_eq!(python_float_text(*value), *want, "{value:?}");
        }
        assert_eq!(python_number_text_i64(-42), "-42");
        assert_eq!(python_number_text_i64(1000), "1000");
    }

    #[test]
    fn python_float_text_round_trips() {
        for v in [0.1, 1.0 / 7.0, 6.02214076e23, 1.602e-19, 123456.789, 1e15 + 0.3, 5e-5] {
            assert_eq!(python_float_text(v).parse::<f64>().unwrap(), v);
        }
    }

    #[test]
    fn parse_datetime_iso() {
        let cases: &[(&str, NaiveDateTime)] = &[
            ("2024-01-15", date(2024, 1, 15)),
            ("  2024-01-15  ", date(2024, 1, 15)),
            ("2024/01/15", date(2024, 1, 15)),
            ("2024.01.15", date(2024, 1, 15)),
            ("2024-1-5", date(2024, 1, 5)),
            ("2024-02-20 00:00:00", date(2024, 2, 20)),
            ("2024-01-15 10:30:00", dt(2024, 1, 15, 10, 30, 0)),
            ("2024-01-15T10:30:00", dt(2024, 1, 15, 10, 30, 0)),
            ("2024-01-15 10:30", dt(2024, 1, 15, 10, 30, 0)),
            ("2024-02-01 08:05:00", dt(2024, 2, 1, 8, 5, 0)),
            ("2024-01-15T10:30:00Z", dt(2024, 1, 15, 10, 30, 0)),
            ("2024-01-15T10:30:00+05:00", dt(2024, 1, 15, 5, 30, 0)),
            ("2024-01-15T10:30:00+0500", dt(2024, 1, 15, 5, 30, 0)),
            ("2024-01-15T01:30:00+05:00", dt(2024, 1, 14, 20, 30, 0)),
            ("2024-01-15T22:30-02:00", dt(2024, 1, 16, 0, 30, 0)),
            ("2024-12-31T23:00:00-01:30", dt(2025, 1, 1, 0, 30, 0)),
            ("2024-02-29", date(2024, 2, 29)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_datetime(text), Some(*want), "{text:?}");
        }
        let frac = parse_datetime("2024-01-15 10:30:00.123456").unwrap();
        assert_eq!(frac, dt(2024, 1, 15, 10, 30, 0) + Duration::microseconds(123456));
        let frac = parse_datetime("2024-01-15T10:30:00.5Z").unwrap();
        assert_eq!(frac, dt(2024, 1, 15, 10, 30, 0) + Duration::milliseconds(500));
        let frac = parse_datetime("2024-01-15 10:30:00.1234567891").unwrap();
        assert_eq!(frac.nanosecond(), 123_456_789);
    }

    #[test]
    fn parse_datetime_compact_numeric_and_year() {
        let cases: &[(&str, NaiveDateTime)] = &[
            ("20240115", date(2024, 1, 15)),
            ("01/02/2024", date(2024, 1, 2)),
            ("15/01/2024", date(2024, 1, 15)),
            ("1/2/2024", date(2024, 1, 2)),
            ("12-25-2023", date(2023, 12, 25)),
            ("25.12.2023", date(2023, 12, 25)),
            ("31.01.24", date(2024, 1, 31)),
            ("01/15/68", date(2068, 1, 15)),
            ("01/15/69", date(1969, 1, 15)),
            ("01/15/00", date(2000, 1, 15)),
            ("01/15/99", date(1999, 1, 15)),
            ("01/15/2024 10:30", dt(2024, 1, 15, 10, 30, 0)),
            ("15/01/2024 10:30:45", dt(2024, 1, 15, 10, 30, 45)),
            ("01/15/2024T10:30:00Z", dt(2024, 1, 15, 10, 30, 0)),
            ("2024", date(2024, 1, 1)),
            (" 1999 ", date(1999, 1, 1)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_datetime(text), Some(*want), "{text:?}");
        }
    }

    #[test]
    fn parse_datetime_month_names() {
        let cases: &[(&str, NaiveDateTime)] = &[
            ("Jan 5, 2024", date(2024, 1, 5)),
            ("5 Jan 2024", date(2024, 1, 5)),
            ("January 5 2024", date(2024, 1, 5)),
            ("January 5, 2024", date(2024, 1, 5)),
            ("Jan 2024", date(2024, 1, 1)),
            ("january 2024", date(2024, 1, 1)),
            ("JAN 5, 2024", date(2024, 1, 5)),
            ("jan 5 2024", date(2024, 1, 5)),
            ("5 DECEMBER 2023", date(2023, 12, 5)),
            ("Sep 30, 2023", date(2023, 9, 30)),
            ("September 30 2023", date(2023, 9, 30)),
            ("May 1 2024", date(2024, 5, 1)),
            ("Feb 29, 2024", date(2024, 2, 29)),
            ("Jan 5, 2024 10:30", dt(2024, 1, 5, 10, 30, 0)),
            ("5 Jan 2024 10:30:15", dt(2024, 1, 5, 10, 30, 15)),
            ("Jan 2024 08:00", dt(2024, 1, 1, 8, 0, 0)),
            ("Jan 5, 2024 10:30:00+01:00", dt(2024, 1, 5, 9, 30, 0)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_datetime(text), Some(*want), "{text:?}");
        }
    }

    #[test]
    fn parse_datetime_rejects() {
        for text in [
            "",
            "   ",
            "yesterday",
            "today",
            "now",
            "abc",
            "2024-13-01",
            "2024-02-30",
            "2023-02-29",
            "2024-01-15 25:00",
            "2024-01-15 10:60",
            "2024-01-15 10:30:61",
            "2024-01-15 10:30:60",
            "2024-01/15",
            "2024-01-15 10:30+25:00",
            "2024-01-15Z",
            "20241315",
            "20240230",
            "13/13/2024",
            "01/02-2024",
            "1/2/024",
            "1/2/2024/5",
            "Feb 30, 2024",
            "Foo 5, 2024",
            "Jan 32 2024",
            "Jan 5",
            "Jan",
            "202",
            "20245",
            "１２３４",
            "2024-01-15 10",
            "12345678901",
            "1000.5",
            "$1,234.56",
        ] {
            assert_eq!(parse_datetime(text), None, "{text:?}");
        }
    }

    #[test]
    fn search_date_comparisons() {
        // §6.2: before/after compare parsed values, value by value.
        let a = parse_datetime("2024-01-15").unwrap();
        let b = parse_datetime("02/01/2024").unwrap();
        assert!(a < b);
        assert!(parse_datetime("2024").unwrap() < a);
    }

    #[test]
    fn strftime_directives() {
        let v = dt(2024, 1, 5, 14, 7, 9) + Duration::microseconds(42);
        let cases: &[(&str, &str)] = &[
            ("%Y-%m-%d", "2024-01-05"),
            ("%Y-%m-%d %H:%M:%S", "2024-01-05 14:07:09"),
            ("%y", "24"),
            ("%I %p", "02 PM"),
            ("%b %B", "Jan January"),
            ("%a %A", "Fri Friday"),
            ("%j", "005"),
            ("%f", "000042"),
            ("%%", "%"),
            ("100%% done", "100% done"),
            ("%z%Z", ""),
            ("at %H%z", "at 14"),
            ("%q", "%q"),
            ("%-d", "%-d"),
            ("%", "%"),
            ("x%", "x%"),
            ("plain", "plain"),
            ("", ""),
            ("%d/%m/%Y", "05/01/2024"),
            ("día %d ✓", "día 05 ✓"),
        ];
        for (pattern, want) in cases {
            assert_eq!(python_strftime(&v, pattern), *want, "{pattern:?}");
        }
        let midnight = date(2023, 12, 31);
        assert_eq!(python_strftime(&midnight, "%I:%M %p %j %a"), "12:00 AM 365 Sun");
        let noon = dt(2024, 12, 31, 12, 0, 0);
        assert_eq!(python_strftime(&noon, "%I %p %j"), "12 PM 366");
        let early = date(5, 3, 1);
        assert_eq!(python_strftime(&early, "%Y %y"), "0005 05");
        let frac = parse_datetime("2024-01-15 10:30:00.123456789").unwrap();
        assert_eq!(python_strftime(&frac, "%S.%f"), "00.123456");
    }

    #[test]
    fn normalization_date_examples() {
        // §7.3 date_format / datetime_format defaults, values parsed one by one.
        for (text, d, dtm) in [
            ("2024-01-15", "2024-01-15", "2024-01-15 00:00:00"),
            ("2024-02-01 08:05:00", "2024-02-01", "2024-02-01 08:05:00"),
            ("Jan 5, 2024", "2024-01-05", "2024-01-05 00:00:00"),
            ("15/01/2024", "2024-01-15", "2024-01-15 00:00:00"),
        ] {
            let v = parse_datetime(text).unwrap();
            assert_eq!(python_strftime(&v, "%Y-%m-%d"), d);
            assert_eq!(python_strftime(&v, "%Y-%m-%d %H:%M:%S"), dtm);
        }
        assert_eq!(parse_datetime("not a date"), None);
    }

    #[test]
    fn truthy_flags() {
        for text in ["true", "TRUE", "True", "1", "yes", "YES", "on", "On", " true ", "\tyes\n"] {
            assert!(is_truthy_flag(text), "{text:?}");
        }
        for text in ["", "false", "0", "no", "off", "y", "t", "2", "truee", "abc", "nan"] {
            assert!(!is_truthy_flag(text), "{text:?}");
        }
    }
}
