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

/// How a trend chart draws its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrendKind {
    /// One column per point, the series stacked (counts per step, e.g. detections).
    Stacked,
    /// Stacked areas (parts of a whole over time, e.g. endpoints by status): one shape per
    /// series and run of samples, however many samples.
    Areas,
    /// One line per series.
    Lines,
}

/// One series of a trend chart: a value per point.
#[derive(Debug, Clone)]
pub(crate) struct Series<'a> {
    pub(crate) label: &'a str,
    /// CSS class of its colour: `ok`, `warn`, `bad` or `acc`.
    pub(crate) class: &'a str,
    pub(crate) values: Vec<f64>,
}

/// A chart over time: the series share `times` (ms, oldest first) on the span `from..to`.
#[derive(Debug, Clone)]
pub(crate) struct Trend<'a> {
    pub(crate) title: &'a str,
    /// The figure's `data-testid` and the prefix of its element ids (unique on the page).
    pub(crate) id: &'a str,
    pub(crate) kind: TrendKind,
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
    /// Spacing of the points: a larger gap is drawn as a gap (no sample then).
    pub(crate) step_ms: i64,
    pub(crate) times: &'a [i64],
    pub(crate) series: Vec<Series<'a>>,
    /// A fixed top of the scale (100 for a percentage); otherwise from the data.
    pub(crate) max: Option<f64>,
    /// Appended to values: `%` or nothing.
    pub(crate) unit: &'a str,
}

// The plot area inside the 640 x 170 view box.
const PLOT_LEFT: f64 = 44.0;
const PLOT_RIGHT: f64 = 632.0;
const PLOT_TOP: f64 = 10.0;
const PLOT_BOTTOM: f64 = 140.0;

/// A number as a chart shows it: whole numbers without decimals, others with one.
fn num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (a readable top of scale).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v - 1e-9)
        .unwrap_or(10.0 * magnitude)
}

/// `HH:MM` on one-day spans, `MM-DD` on longer ones (UTC).
fn time_label(at_ms: i64, span_ms: i64) -> String {
    let full = crate::html::time_ms(at_ms);
    if span_ms <= 86_400_000 {
        full[11..].to_string()
    } else {
        full[5..10].to_string()
    }
}

/// The index ranges of `times` whose samples are at most two steps apart: a longer gap (no
/// samples then) is drawn as a gap, not bridged.
fn runs(times: &[i64], step_ms: i64) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, at) in times.iter().enumerate() {
        match out.last_mut() {
            Some(r) if at - times[r.end - 1] <= 2 * step_ms => r.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// A trend chart: SVG with a `<title>` and `<desc>` (what it shows and its latest values), a
/// legend, and the data as a table in a disclosure (reachable by keyboard, read by screen
/// readers) for those who would rather read than look.
pub(crate) fn trend(t: &Trend<'_>) -> String {
    let span = (t.to_ms - t.from_ms).max(1);
    let x = |at: i64| PLOT_LEFT + (at - t.from_ms) as f64 / span as f64 * (PLOT_RIGHT - PLOT_LEFT);
    let n = t.times.len();
    let stacked_total = |i: usize| {
        t.series
            .iter()
            .map(|s| s.values.get(i).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    let data_max = match t.kind {
        TrendKind::Stacked | TrendKind::Areas => (0..n).map(stacked_total).fold(0.0, f64::max),
        TrendKind::Lines => t
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max),
    };
    let top = t.max.unwrap_or_else(|| nice_ceiling(data_max));
    let y = |v: f64| PLOT_BOTTOM - (v / top).clamp(0.0, 1.0) * (PLOT_BOTTOM - PLOT_TOP);
    let latest = t
        .series
        .iter()
        .map(|s| {
            format!(
                "{} {}{}",
                s.label,
                num(s.values.last().copied().unwrap_or(0.0)),
                t.unit
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let desc = match (t.times.first(), t.times.last()) {
        (Some(first), Some(last)) => format!(
            "{n} points from {} to {} UTC; latest: {latest}.",
            crate::html::time_ms(*first),
            crate::html::time_ms(*last)
        ),
        _ => "No points.".to_string(),
    };
    let id = esc(t.id);
    let mut out = format!(
        r#"<figure class="chart trend" data-testid="{id}"><figcaption id="{id}-t">{title}</figcaption><svg viewBox="0 0 640 170" role="img" aria-labelledby="{id}-t {id}-d" preserveAspectRatio="xMinYMin meet"><title>{title}</title><desc id="{id}-d">{desc}</desc>"#,
        title = esc(t.title),
        desc = esc(&desc),
    );
    // Scale: grid lines at the top, half-way and zero; the half is labelled when it is a whole
    // count (or a percentage).
    for v in [top, top / 2.0, 0.0] {
        out.push_str(&format!(
            r#"<line x1="{PLOT_LEFT}" x2="{PLOT_RIGHT}" y1="{yy:.1}" y2="{yy:.1}" class="grid"></line>"#,
            yy = y(v),
        ));
        if (v - v.round()).abs() < 1e-9 || !t.unit.is_empty() {
            out.push_str(&format!(
                r#"<text x="{lx}" y="{ty:.1}" class="axis" text-anchor="end">{label}{unit}</text>"#,
                lx = PLOT_LEFT - 4.0,
                ty = y(v) + 3.5,
                label = num(v),
                unit = esc(t.unit),
            ));
        }
    }
    // Five time ticks across the window.
    for i in 0..=4 {
        let at = t.from_ms + span * i / 4;
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        out.push_str(&format!(
            r#"<text x="{:.1}" y="160" class="axis" text-anchor="{anchor}">{}</text>"#,
            x(at),
            esc(&time_label(at, span))
        ));
    }
    let col_w = (t.step_ms as f64 / span as f64 * (PLOT_RIGHT - PLOT_LEFT) * 0.8).max(2.0);
    match t.kind {
        TrendKind::Stacked => {
            for (i, at) in t.times.iter().enumerate() {
                let mut base = 0.0;
                for s in &t.series {
                    let v = s.values.get(i).copied().unwrap_or(0.0);
                    if v > 0.0 {
                        let (y0, y1) = (y(base), y(base + v));
                        out.push_str(&format!(
                            r#"<rect x="{:.1}" y="{y1:.1}" width="{col_w:.1}" height="{:.1}" class="{}"></rect>"#,
                            x(*at) - col_w / 2.0,
                            (y0 - y1).max(0.5),
                            esc(s.class)
                        ));
                    }
                    base += v;
                }
            }
        }
        TrendKind::Areas => {
            let value = |s: &Series<'_>, i: usize| s.values.get(i).copied().unwrap_or(0.0);
            let mut base = vec![0.0; n];
            for s in &t.series {
                let top: Vec<f64> = (0..n).map(|i| base[i] + value(s, i)).collect();
                for run in runs(t.times, t.step_ms) {
                    if run.clone().all(|i| value(s, i) <= 0.0) {
                        continue;
                    }
                    if run.len() == 1 {
                        // A lone sample is a column of its bucket's width.
                        let i = run.start;
                        out.push_str(&format!(
                            r#"<rect x="{:.1}" y="{:.1}" width="{col_w:.1}" height="{:.1}" class="{}"></rect>"#,
                            x(t.times[i]) - col_w / 2.0,
                            y(top[i]),
                            (y(base[i]) - y(top[i])).max(0.5),
                            esc(s.class)
                        ));
                        continue;
                    }
                    // Along the band's top, then back along its bottom.
                    let pts = run
                        .clone()
                        .map(|i| (t.times[i], top[i]))
                        .chain(run.clone().rev().map(|i| (t.times[i], base[i])))
                        .map(|(at, v)| format!("{:.1},{:.1}", x(at), y(v)))
                        .collect::<Vec<_>>()
                        .join(" ");
                    out.push_str(&format!(
                        r#"<polygon points="{pts}" class="{}"></polygon>"#,
                        esc(s.class)
                    ));
                }
                base = top;
            }
        }
        TrendKind::Lines => {
            for s in &t.series {
                // A gap of more than two steps (no samples then) breaks the line.
                let runs: Vec<Vec<(f64, f64)>> = runs(t.times, t.step_ms)
                    .into_iter()
                    .map(|r| {
                        r.map(|i| (x(t.times[i]), y(s.values.get(i).copied().unwrap_or(0.0))))
                            .collect()
                    })
                    .collect();
                for run in &runs {
                    if run.len() > 1 {
                        let pts = run
                            .iter()
                            .map(|(px, py)| format!("{px:.1},{py:.1}"))
                            .collect::<Vec<_>>()
                            .join(" ");
                        out.push_str(&format!(
                            r#"<polyline points="{pts}" class="ln {}"></polyline>"#,
                            esc(s.class)
                        ));
                    }
                }
                // A sample without neighbours is a dot, and so is the latest value.
                let last_point = runs.last().and_then(|r| r.last()).copied();
                for (px, py) in runs
                    .iter()
                    .filter(|r| r.len() == 1)
                    .flatten()
                    .copied()
                    .chain(last_point)
                {
                    out.push_str(&format!(
                        r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" class="{}"></circle>"#,
                        esc(s.class)
                    ));
                }
            }
        }
    }
    out.push_str(r#"</svg><ul class="legend">"#);
    for s in &t.series {
        out.push_str(&format!(
            r#"<li><span class="key {}" aria-hidden="true"></span>{} <strong>{}{}</strong></li>"#,
            esc(s.class),
            esc(s.label),
            num(s.values.last().copied().unwrap_or(0.0)),
            esc(t.unit)
        ));
    }
    out.push_str(&format!(
        r#"</ul><details class="chart-data"><summary>{} as a table</summary><table><caption class="visually-hidden">{}</caption><thead><tr><th scope="col">Time (UTC)</th>"#,
        esc(t.title),
        esc(t.title)
    ));
    for s in &t.series {
        out.push_str(&format!(r#"<th scope="col">{}</th>"#, esc(s.label)));
    }
    out.push_str("</tr></thead><tbody>");
    // Newest first: the row a reader most likely wants.
    for i in (0..n).rev() {
        out.push_str(&format!(
            r#"<tr><th scope="row">{}</th>"#,
            crate::html::time_ms(t.times[i])
        ));
        for s in &t.series {
            out.push_str(&format!(
                "<td>{}{}</td>",
                num(s.values.get(i).copied().unwrap_or(0.0)),
                esc(t.unit)
            ));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></details></figure>");
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

    fn sample_trend<'a>(times: &'a [i64], kind: TrendKind) -> Trend<'a> {
        Trend {
            title: "Endpoints <by> status",
            id: "trend-endpoints",
            kind,
            from_ms: 0,
            to_ms: 1_000_000,
            step_ms: 100_000,
            times,
            series: vec![
                Series {
                    label: "online",
                    class: "ok",
                    values: vec![3.0, 4.0, 5.0],
                },
                Series {
                    label: "stale",
                    class: "bad",
                    values: vec![1.0, 0.0, 2.0],
                },
            ],
            max: None,
            unit: "",
        }
    }

    #[test]
    fn trends_scale_stack_and_describe_their_data() {
        let times = [0, 100_000, 500_000];
        let svg = trend(&sample_trend(&times, TrendKind::Stacked));
        assert!(
            svg.contains("&lt;by&gt;") && !svg.contains("<by>"),
            "escaped"
        );
        assert!(!svg.contains("style="), "no inline style under the CSP");
        // Stacked: the top of the scale is the largest sum (7) rounded up to 10.
        assert!(svg.contains(r#"text-anchor="end">10</text>"#), "{svg}");
        assert!(svg.contains("latest: online 5, stale 2."), "{svg}");
        // One table row per point, newest first, one column per series.
        assert_eq!(svg.matches(r#"<th scope="row">"#).count(), 3);
        let first_row = svg.find(r#"<th scope="row">1970-01-01 00:08</th><td>5</td><td>2</td>"#);
        let last_row = svg.find(r#"<th scope="row">1970-01-01 00:00</th><td>3</td><td>1</td>"#);
        assert!(
            first_row.is_some() && last_row.is_some() && first_row < last_row,
            "{svg}"
        );
        // The zero of a stack draws nothing.
        assert_eq!(svg.matches("<rect").count(), 5);
    }

    #[test]
    fn areas_stack_bands_per_run_of_samples() {
        let times = [0, 100_000, 500_000];
        let svg = trend(&sample_trend(&times, TrendKind::Areas));
        // Each series: a band over the joined first two samples, a column for the lone third.
        assert_eq!(svg.matches("<polygon").count(), 2, "{svg}");
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert_eq!(runs(&times, 100_000), [0..2, 2..3]);
        assert_eq!(runs(&[], 100_000), []);
        // The stale band sits on the online one: its top at 3 + 1 = 4 of 10 at the first sample.
        let y4 = PLOT_BOTTOM - 0.4 * (PLOT_BOTTOM - PLOT_TOP);
        assert!(svg.contains(&format!("{:.1},{y4:.1}", PLOT_LEFT)), "{svg}");
    }

    #[test]
    fn lines_break_at_gaps_and_keep_a_fixed_scale() {
        let times = [0, 100_000, 500_000];
        let mut t = sample_trend(&times, TrendKind::Lines);
        t.max = Some(100.0);
        t.unit = "%";
        let svg = trend(&t);
        // 0 and 100_000 join; 500_000 is past two steps: a gap, its sample a dot (drawn once
        // as a lone sample, once as the latest).
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(
            svg.contains(">50%</text>"),
            "a percentage labels its half: {svg}"
        );
        assert!(
            svg.contains(">100%</text>") && svg.contains("<td>5%</td>"),
            "{svg}"
        );
    }

    #[test]
    fn scales_round_up_readably() {
        for (v, top) in [
            (0.0, 1.0),
            (1.0, 1.0),
            (3.0, 5.0),
            (7.0, 10.0),
            (10.0, 10.0),
            (11.0, 20.0),
            (180.0, 200.0),
            (100_001.0, 200_000.0),
        ] {
            assert!(
                (nice_ceiling(v) - top).abs() < 1e-9,
                "{v} -> {}",
                nice_ceiling(v)
            );
        }
        assert_eq!(num(2.0), "2");
        assert_eq!(num(37.5), "37.5");
    }
}
