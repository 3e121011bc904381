//! Charts as inline SVG, drawn on the server: no script, no chart library, and colours through
//! CSS classes (the Content-Security-Policy allows no inline style). Every chart carries a
//! `<title>` and an accessible text equivalent.

use crate::html::esc;

/// Horizontal bars, one per `(label, value, class)`, scaled to the largest value.
pub(crate) fn bars(title: &str, rows: &[(&str, i64, &str)]) -> String {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let row_h = 26;
    let height = row_h * rows.len().max(1);
    let mut out = format!(
        r#"<figure class="chart"><figcaption>{t}</figcaption><svg viewBox="0 0 320 {height}" role="img" aria-label="{t}: {summary}" preserveAspectRatio="xMinYMin meet"><title>{t}</title>"#,
        t = esc(title),
        summary = esc(&rows
            .iter()
            .map(|(l, v, _)| format!("{l} {v}"))
            .collect::<Vec<_>>()
            .join(", ")),
    );
    for (i, (label, value, class)) in rows.iter().enumerate() {
        let y = i * row_h;
        let w = (*value as f64 / max as f64 * 180.0).round() as i64;
        out.push_str(&format!(
            r#"<text x="0" y="{ty}" class="lbl">{label}</text><rect x="90" y="{ry}" width="{w}" height="16" rx="3" class="{class}"></rect><text x="{tx}" y="{ty}" class="num">{value}</text>"#,
            ty = y + 17,
            ry = y + 4,
            tx = 96 + w,
            label = esc(label),
            class = esc(class),
        ));
    }
    out.push_str("</svg></figure>");
    out
}

/// A ring showing `part` of `whole` (e.g. servers behind the proxy).
pub(crate) fn ring(title: &str, part: i64, whole: i64) -> String {
    let pct = if whole > 0 {
        (part as f64 / whole as f64 * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    };
    // Circumference of r=15.9155 is 100, so the dash is the percentage.
    format!(
        r#"<figure class="chart"><figcaption>{t}</figcaption><svg viewBox="0 0 42 42" class="ring" role="img" aria-label="{t}: {part} of {whole} ({pct:.0}%)"><title>{t}</title><circle cx="21" cy="21" r="15.9155" class="ring-bg" fill="none" stroke-width="5"></circle><circle cx="21" cy="21" r="15.9155" class="ring-fg" fill="none" stroke-width="5" stroke-dasharray="{pct:.1} {rest:.1}" stroke-dashoffset="25"></circle><text x="21" y="23" text-anchor="middle" class="ring-num">{pct:.0}%</text></svg><p class="sub">{part} of {whole}</p></figure>"#,
        t = esc(title),
        rest = 100.0 - pct,
    )
}

/// Columns over time: `(label, value)` oldest first.
pub(crate) fn columns(title: &str, points: &[(String, i64)]) -> String {
    let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
    let n = points.len().max(1);
    let col_w = 300 / n;
    let mut out = format!(
        r#"<figure class="chart wide"><figcaption>{t}</figcaption><svg viewBox="0 0 320 120" role="img" aria-label="{t}: {summary}"><title>{t}</title>"#,
        t = esc(title),
        summary = esc(&points
            .iter()
            .map(|(l, v)| format!("{l}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")),
    );
    for (i, (label, value)) in points.iter().enumerate() {
        let h = (*value as f64 / max as f64 * 90.0).round() as usize;
        let x = 10 + i * col_w;
        out.push_str(&format!(
            r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" class="col"><title>{label}: {value}</title></rect>"#,
            y = 100 - h,
            w = col_w.saturating_sub(3).max(1),
            label = esc(label),
        ));
        if i == 0 || i + 1 == points.len() {
            out.push_str(&format!(
                r#"<text x="{x}" y="116" class="axis">{}</text>"#,
                esc(label)
            ));
        }
    }
    out.push_str("</svg></figure>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_labels_and_scale() {
        let svg = bars("Status", &[("<b>", 10, "ok"), ("x", 5, "warn")]);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        assert!(svg.contains(r#"width="180""#) && svg.contains(r#"width="90""#));
        assert!(ring("Coverage", 1, 4).contains("25%"));
        assert!(ring("Coverage", 0, 0).contains("0%"), "no division by zero");
        assert!(!svg.contains("style="), "no inline style under the CSP");
    }
}
