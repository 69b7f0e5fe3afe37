//! A horizontal bar chart of ratios as SVG, on a log scale around 1 (the
//! baseline), each bar with whiskers over the spread of the runs. Drawn on a
//! white background so it reads on light and dark pages alike.

/// One bar: its label and `(median, min, max)`, or `None` when not measured.
pub struct Bar {
    pub label: String,
    pub value: Option<(f64, f64, f64)>,
}

const WIDTH: f64 = 940.0;
const LEFT: f64 = 430.0;
const RIGHT: f64 = 90.0;
const TOP: f64 = 56.0;
const ROW: f64 = 38.0;
const BOTTOM: f64 = 44.0;

/// The chart of `bars`, titled `title`.
pub fn svg(title: &str, bars: &[Bar]) -> String {
    let (lo, hi) = domain(bars);
    let x = |v: f64| {
        LEFT + (v.log10() - lo.log10()) / (hi.log10() - lo.log10()) * (WIDTH - LEFT - RIGHT)
    };
    let height = TOP + ROW * bars.len() as f64 + BOTTOM;
    let axis_y = TOP + ROW * bars.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>\n\
         <text x=\"12\" y=\"24\" font-size=\"15\" font-weight=\"bold\" fill=\"#222222\">{}</text>\n\
         <text x=\"12\" y=\"42\" font-size=\"12\" fill=\"#444444\">Bars: median of the runs, from the baseline (1); \
         whiskers: min – max of the runs.</text>\n",
        escape(title)
    );
    for tick in ticks(lo, hi) {
        let tx = x(tick);
        let (stroke, width) = if (tick - 1.0).abs() < 1e-9 {
            ("#444444", 1.5)
        } else {
            ("#dddddd", 1.0)
        };
        out.push_str(&format!(
            "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{axis_y:.1}\" stroke=\"{stroke}\" stroke-width=\"{width}\"/>\n\
             <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#444444\">{}</text>\n",
            TOP - 8.0,
            axis_y + 18.0,
            tick_label(tick)
        ));
    }
    out.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#444444\">× baseline (log scale; 1 = the baseline)</text>\n",
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        axis_y + 36.0
    ));
    for (i, bar) in bars.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        out.push_str(&bar_svg(bar, y, &x));
    }
    out.push_str("</svg>\n");
    out
}

fn bar_svg(bar: &Bar, y: f64, x: &dyn Fn(f64) -> f64) -> String {
    let mid = y + ROW / 2.0;
    let mut out = format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#222222\">{}</text>\n",
        LEFT - 10.0,
        mid + 4.0,
        escape(&bar.label)
    );
    let Some((median, min, max)) = bar.value else {
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#888888\" font-style=\"italic\">not measured</text>\n",
            x(1.0) + 6.0,
            mid + 4.0
        ));
        return out;
    };
    let (from, to) = (x(1.0).min(x(median)), x(1.0).max(x(median)));
    let colour = if median >= 1.0 { "#3b75af" } else { "#e08a2c" };
    let (wl, wr) = (x(min), x(max));
    out.push_str(&format!(
        "<rect x=\"{from:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>\n\
         <line x1=\"{wl:.1}\" y1=\"{mid:.1}\" x2=\"{wr:.1}\" y2=\"{mid:.1}\" stroke=\"#222222\" stroke-width=\"1.5\"/>\n\
         <line x1=\"{wl:.1}\" y1=\"{:.1}\" x2=\"{wl:.1}\" y2=\"{:.1}\" stroke=\"#222222\" stroke-width=\"1.5\"/>\n\
         <line x1=\"{wr:.1}\" y1=\"{:.1}\" x2=\"{wr:.1}\" y2=\"{:.1}\" stroke=\"#222222\" stroke-width=\"1.5\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222222\">{} ×</text>\n",
        y + 8.0,
        (to - from).max(1.0),
        ROW - 16.0,
        mid - 6.0,
        mid + 6.0,
        mid - 6.0,
        mid + 6.0,
        to.max(wr) + 6.0,
        mid + 4.0,
        crate::report::number(median)
    ));
    out
}

/// From a 1-2-5 step below every whisker (and 0.5) to one above (and 2).
fn domain(bars: &[Bar]) -> (f64, f64) {
    let values = bars
        .iter()
        .filter_map(|b| b.value)
        .flat_map(|(m, lo, hi)| [m, lo, hi])
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = values.fold((0.5f64, 2.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let steps = |v: f64| {
        let decade = 10f64.powf(v.log10().floor());
        [1.0, 2.0, 5.0, 10.0].map(|s| s * decade)
    };
    let below = steps(lo)
        .into_iter()
        .rev()
        .find(|s| *s <= lo * 1.0001)
        .unwrap_or(lo);
    let above = steps(hi)
        .into_iter()
        .find(|s| *s >= hi * 0.9999)
        .unwrap_or(hi);
    (below, above)
}

/// 1-2-5 ticks from `lo` to `hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi * 1.0001 {
        for s in [1.0, 2.0, 5.0] {
            let t = s * decade;
            if t >= lo * 0.9999 && t <= hi * 1.0001 {
                out.push(t);
            }
        }
        decade *= 10.0;
    }
    out
}

fn tick_label(t: f64) -> String {
    let s = format!("{t:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Tags of `svg` open and close in order, and the text between them
    /// holds no bare `<` or `&`: enough of XML's well-formedness for
    /// what [`svg`] writes (no comments, CDATA or processing instructions).
    pub fn assert_well_formed(svg: &str) {
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let text = &rest[..start];
            for (i, _) in text.match_indices('&') {
                let entity = &text[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;"]
                        .iter()
                        .any(|e| entity.starts_with(e)),
                    "bare & in {text:?}"
                );
            }
            let end = rest[start..].find('>').expect("tag closes") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "< inside tag {tag:?}");
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in {tag:?}"
            );
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name.trim()), "closing {name} out of order");
            } else if !tag.ends_with('/') {
                open.push(tag.split_whitespace().next().expect("tag name"));
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "left open: {open:?}");
        assert!(svg.trim_start().starts_with("<svg "), "root is svg");
    }

    #[test]
    fn the_chart_is_well_formed_with_a_background_and_every_bar() {
        let bars = [
            Bar {
                label: "ingest vs bare HTTP & <raw>".into(),
                value: Some((0.365, 0.339, 0.366)),
            },
            Bar {
                label: "drain vs naive".into(),
                value: Some((9.89, 9.73, 11.1)),
            },
            Bar {
                label: "drain vs COPY".into(),
                value: None,
            },
        ];
        let svg = svg("Ratios", &bars);
        assert_well_formed(&svg);
        assert!(svg.contains("fill=\"#ffffff\""), "{svg}");
        assert!(svg.contains("&amp; &lt;raw&gt;"), "{svg}");
        assert!(svg.contains("not measured"), "{svg}");
        assert!(svg.contains("9.89 ×") && svg.contains("0.365 ×"), "{svg}");
        assert_eq!(svg.matches("<rect ").count(), 3, "background and two bars");
        assert_eq!(domain(&bars), (0.2, 20.0));
        assert_eq!(ticks(0.2, 20.0), vec![0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
    }

    #[test]
    fn the_checker_catches_broken_markup() {
        for broken in [
            "<svg ><g></svg>",
            "<svg ><text>a & b</text></svg>",
            "<svg ><g>",
        ] {
            assert!(
                std::panic::catch_unwind(|| assert_well_formed(broken)).is_err(),
                "{broken}"
            );
        }
    }
}
