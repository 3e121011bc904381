//! HTML text: escaping and URL encoding, the only way data reaches a page.

use std::fmt::Write;

/// Escape text for an element body or a quoted attribute value.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode one query or path component.
pub(crate) fn enc(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A query string (`?a=1&b=2`, or empty) from the pairs whose value is not empty.
pub(crate) fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if v.is_empty() {
            continue;
        }
        out.push(if out.is_empty() { '?' } else { '&' });
        let _ = write!(out, "{}={}", enc(k), enc(v));
    }
    out
}

/// A JSON value as display text (strings without quotes, null as an em dash).
pub(crate) fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "—".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Escaped display text of a JSON field.
pub(crate) fn field(v: &serde_json::Value, key: &str) -> String {
    esc(&text(&v[key]))
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM` UTC.
pub(crate) fn time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn query_skips_empty_values_and_encodes() {
        assert_eq!(
            query([("q", "a b&c"), ("os", ""), ("sort", "-last_seen")]),
            "?q=a+b%26c&sort=-last_seen"
        );
        assert_eq!(query([("q", "")]), "");
    }

    #[test]
    fn dates_are_utc_civil() {
        assert_eq!(time_ms(0), "1970-01-01 00:00");
        assert_eq!(time_ms(1_700_000_000_000), "2023-11-14 22:13");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
