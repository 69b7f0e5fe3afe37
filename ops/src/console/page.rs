//! What every page shares, for the authors of pages:
//!
//! - a page's template extends `layout.html` (the head, the nav bar with
//!   `Sign out`, `<main>`) and fills its `content` block; its struct has a
//!   field `chrome: Chrome<'_>`, made with [`Chrome::new`] from the
//!   [`Viewer`] the handler takes as `Extension<Viewer>`;
//! - forms that POST carry `<input type="hidden" name="csrf"
//!   value="{{ chrome.csrf }}">` (the guard refuses them without);
//! - [`render`] turns a template into an answer, [`error_page`] answers a
//!   failure as a page in the layout.
//!
//! ```ignore
//! #[derive(askama::Template)]
//! #[template(path = "mine.html")] // {% extends "layout.html" %}{% block content %}…{% endblock %}
//! struct Mine<'a> { chrome: Chrome<'a>, rows: Vec<Row> }
//!
//! async fn mine(Extension(viewer): Extension<Viewer>) -> Response {
//!     render(&Mine { chrome: Chrome::new(&viewer, "dead-letters", "Dead letters"), rows })
//! }
//! ```

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;

pub use super::security::Viewer;

/// The parts of the layout a page fills: its title, which nav entry is
/// the current page, the CSRF token of the `Sign out` form (and of the
/// page's own forms), whether to show the nav at all.
#[derive(Debug, Clone)]
pub struct Chrome<'a> {
    /// The page's `<title>` (the site's name is added).
    pub title: &'a str,
    /// The current nav entry: `overview`, `dead-letters` or `orders`.
    pub active: &'a str,
    /// The session's CSRF token (empty for a bearer).
    pub csrf: &'a str,
    /// Whether someone is signed in (the nav shows).
    pub signed_in: bool,
}

impl<'a> Chrome<'a> {
    /// The chrome of a page seen by `viewer`.
    pub fn new(viewer: &'a Viewer, active: &'a str, title: &'a str) -> Self {
        Self {
            title,
            active,
            csrf: viewer.csrf(),
            signed_in: true,
        }
    }

    /// The chrome of a page seen before signing in (no nav).
    pub fn anonymous(title: &'a str) -> Self {
        Self {
            title,
            active: "",
            csrf: "",
            signed_in: false,
        }
    }
}

/// `template` rendered as an HTML answer (a 500 if it cannot be).
pub fn render(template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome<'a>,
    message: &'a str,
}

/// `message` as a page with `status`, in the layout (with the nav when
/// `viewer` is signed in).
pub fn error_page(viewer: Option<&Viewer>, status: StatusCode, message: &str) -> Response {
    let chrome = match viewer {
        Some(v) => Chrome::new(v, "", "Error"),
        None => Chrome::anonymous("Error"),
    };
    let mut response = render(&ErrorPage { chrome, message });
    *response.status_mut() = status;
    response
}

/// The fallback: 404 in the layout.
pub async fn not_found(viewer: Option<Extension<Viewer>>) -> Response {
    error_page(
        viewer.as_ref().map(|Extension(v)| v),
        StatusCode::NOT_FOUND,
        "No such page",
    )
}

/// Seconds as people read them: `42 s`, `3 min 20 s`, `2 h 5 min`,
/// `3 d 4 h`.
pub fn age(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "–".to_owned();
    }
    // Whole seconds, within u64 by the check above and the cap.
    let s = seconds.round().min(1e15) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(0.4), "0 s");
        assert_eq!(age(200.0), "3 min 20 s");
        assert_eq!(age(7500.0), "2 h 5 min");
        assert_eq!(age(3.0 * 86400.0 + 4.0 * 3600.0), "3 d 4 h");
        assert_eq!(age(f64::NAN), "–");
        assert_eq!(age(-1.0), "–");
    }
}
