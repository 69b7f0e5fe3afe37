//! Who may do what: sessions, the login, the authentication and CSRF
//! guard in front of every route, and the headers on every answer.
//!
//! - Signing in: `GET /login` sets a pre-session cookie whose value the
//!   form carries back (login CSRF); `POST /login` with the right token
//!   starts a session (a random id in the cookie [`SESSION_COOKIE`],
//!   HttpOnly, SameSite=Strict, kept in memory for [`SESSION_TTL`], at
//!   most [`MAX_SESSIONS`]).
//! - [`guard`]: every route but the public ones needs the session cookie
//!   or `Authorization: Bearer <API_TOKEN>`; it puts the [`Viewer`] in the
//!   request's extensions. A cookie-authenticated request other than GET
//!   or HEAD must carry the session's CSRF token (form field `csrf` or
//!   header `X-CSRF-Token`) and, if it has an `Origin`, our own.
//! - [`headers`]: the Content-Security-Policy and friends on every answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::page;
use super::Console;

/// The session cookie.
pub const SESSION_COOKIE: &str = "pubsubkafka_console";
/// The pre-session cookie of the login form (login CSRF).
pub const LOGIN_COOKIE: &str = "pubsubkafka_console_login";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept; past it the one closest to expiry goes.
pub const MAX_SESSIONS: usize = 1000;
/// Largest request body read.
pub const MAX_BODY: usize = 64 * 1024;
/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";
/// What a refused state change says.
pub const CSRF_REFUSED: &str = "CSRF token missing or wrong";

/// A signed-in browser's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its id (the cookie's value: a credential, never logged).
    pub id: String,
    /// Its CSRF token, for forms and the `X-CSRF-Token` header.
    pub csrf: String,
    /// What audit logs call it: random, unrelated to the id, so that
    /// whoever reads the logs cannot take the session over.
    pub label: String,
}

/// Who is asking: put by [`guard`] into the request's extensions of every
/// route that needs authentication. Handlers take it as
/// `Extension<Viewer>`.
#[derive(Debug, Clone)]
pub enum Viewer {
    /// A browser with a session.
    Session(Session),
    /// A script with `Authorization: Bearer`.
    Bearer,
}

impl Viewer {
    /// The CSRF token forms must carry (empty for a bearer: none needed).
    pub fn csrf(&self) -> &str {
        match self {
            Self::Session(s) => &s.csrf,
            Self::Bearer => "",
        }
    }

    /// Who, for audit logs: the session's label, or `bearer`.
    pub fn who(&self) -> &str {
        match self {
            Self::Session(s) => &s.label,
            Self::Bearer => "bearer",
        }
    }
}

struct Entry {
    csrf: String,
    label: String,
    expires: Instant,
}

/// The sessions, in memory (a restart signs everyone out).
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
    max: usize,
    /// When the last wrong tokens were tried (at most
    /// [`MAX_WRONG_TOKENS`], within [`WRONG_TOKEN_WINDOW`]).
    wrong: Mutex<VecDeque<Instant>>,
}

/// Wrong tokens tried, from any client, after which sign-ins are refused
/// until the oldest is [`WRONG_TOKEN_WINDOW`] old: guessing goes no faster.
pub const MAX_WRONG_TOKENS: usize = 20;
/// See [`MAX_WRONG_TOKENS`].
pub const WRONG_TOKEN_WINDOW: Duration = Duration::from_secs(60);

impl Sessions {
    /// Sessions lasting `ttl`, at most `max` of them.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            ttl,
            max: max.max(1),
            wrong: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether sign-ins are refused for now: [`MAX_WRONG_TOKENS`] wrong
    /// tokens within [`WRONG_TOKEN_WINDOW`].
    pub fn throttled(&self) -> bool {
        let mut wrong = self
            .wrong
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while wrong
            .front()
            .is_some_and(|at| at.elapsed() >= WRONG_TOKEN_WINDOW)
        {
            wrong.pop_front();
        }
        wrong.len() >= MAX_WRONG_TOKENS
    }

    /// Counts a wrong token.
    pub fn wrong_token(&self) {
        let mut wrong = self
            .wrong
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        wrong.push_back(Instant::now());
        while wrong.len() > MAX_WRONG_TOKENS {
            wrong.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding it leaves a map that is still whole.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a session.
    pub fn create(&self) -> Session {
        let now = Instant::now();
        let session = Session {
            id: random_token(),
            csrf: random_token(),
            label: random_token()[..12].to_owned(),
        };
        let mut map = self.lock();
        map.retain(|_, e| e.expires > now);
        while map.len() >= self.max {
            let first = map
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(id, _)| id.clone());
            match first {
                Some(id) => map.remove(&id),
                None => break,
            };
        }
        map.insert(
            session.id.clone(),
            Entry {
                csrf: session.csrf.clone(),
                label: session.label.clone(),
                expires: now + self.ttl,
            },
        );
        session
    }

    /// The live session `id`, if any.
    pub fn get(&self, id: &str) -> Option<Session> {
        let map = self.lock();
        map.get(id)
            .filter(|e| e.expires > Instant::now())
            .map(|e| Session {
                id: id.to_owned(),
                csrf: e.csrf.clone(),
                label: e.label.clone(),
            })
    }

    /// Ends session `id`.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|e| e.expires > now).count()
    }

    /// Whether there is no live session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 256 random bits, hex.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in a `Cookie` header's value, if present.
pub fn cookie_value<'a>(cookies: &'a str, name: &str) -> Option<&'a str> {
    cookies
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// The value of cookie `name` in `headers` (any `Cookie` header).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| cookie_value(v, name))
}

/// Equal, compared in constant time.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether the request's `Origin`, if it has one, is ours: its host and
/// port are the `Host` the request was sent to, or the `X-Forwarded-Host`
/// a proxy in front says (a cross-site form cannot set that header).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let origin = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    let Some(origin) = origin else {
        return false;
    };
    [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name).and_then(|h| h.to_str().ok()))
        .any(|host| origin.eq_ignore_ascii_case(host.trim()))
}

/// `; Secure` when the browser came over HTTPS (a TLS proxy in front says
/// so in `X-Forwarded-Proto`), so that the cookie never travels in clear.
fn secure(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    if https {
        "; Secure"
    } else {
        ""
    }
}

/// Routes that need no authentication.
fn public(path: &str) -> bool {
    matches!(path, "/login" | "/healthz" | "/favicon.ico") || path.starts_with("/assets/")
}

/// The authentication and CSRF guard (see the module's documentation).
pub async fn guard(State(console): State<Console>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if public(&path) {
        return next.run(request).await;
    }
    let viewer = if platform::http::bearer_matches(request.headers(), console.token()) {
        Viewer::Bearer
    } else if let Some(session) =
        cookie(request.headers(), SESSION_COOKIE).and_then(|id| console.sessions.get(id))
    {
        Viewer::Session(session)
    } else {
        return unauthenticated(&path);
    };
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if let (true, Viewer::Session(session)) = (changes, &viewer) {
        request = match checked(request, &session.csrf).await {
            Ok(request) => request,
            Err(refused) => return refused,
        };
    }
    request.extensions_mut().insert(viewer);
    next.run(request).await
}

/// No authentication: pages go to the login, `/api/…` is 401 JSON.
fn unauthenticated(path: &str) -> Response {
    if path.starts_with("/api/") {
        let body = serde_json::json!({
            "error": "sign in, or send Authorization: Bearer <API_TOKEN>"
        });
        (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
    } else {
        (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response()
    }
}

/// The 403 of a refused state change.
fn csrf_refused() -> Response {
    page::error_page(None, StatusCode::FORBIDDEN, CSRF_REFUSED)
}

#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// `request` when it carries `expected` (header or form field) and no
/// foreign `Origin`; its body read and put back.
async fn checked(request: Request, expected: &str) -> Result<Request, Response> {
    if !same_origin(request.headers()) {
        return Err(csrf_refused());
    }
    let header_token = request
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(given) = header_token {
        return if same(&given, expected) {
            Ok(request)
        } else {
            Err(csrf_refused())
        };
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| page::error_page(None, StatusCode::PAYLOAD_TOO_LARGE, "Request too large"))?;
    let given = csrf_field(bytes.clone()).await;
    if !given.is_some_and(|g| same(&g, expected)) {
        return Err(csrf_refused());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The `csrf` field of a url-encoded form body, if any (axum's form
/// decoding).
async fn csrf_field(body: Bytes) -> Option<String> {
    let request = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .ok()?;
    let Form(field) = Form::<CsrfField>::from_request(request, &()).await.ok()?;
    field.csrf
}

/// The headers of every answer: CSP, nosniff, no referrer, no framing;
/// `Cache-Control: no-store` on everything but the assets.
pub async fn headers(request: Request, next: Next) -> Response {
    let assets = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !assets {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `/login` and `/logout`.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/login", get(login_form).post(login))
        // Browsers ask for it on their own: not a page to sign in for.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/logout", post(logout))
}

/// The login page's template.
#[derive(askama::Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    message: &'a str,
}

/// The login page with a fresh pre-session token, `status`, and
/// `message` (none when empty).
fn login_page(status: StatusCode, message: &str, headers: &HeaderMap) -> Response {
    // The browser's pre-session token when it has one: a second load of
    // the page (another tab, or a request the browser makes on its own
    // and that lands here) must not void the form already shown.
    let token = cookie(headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(random_token, str::to_owned);
    let cookie =
        format!("{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600");
    let page = page::render(&LoginPage {
        csrf: &token,
        message,
    });
    (status, [(header::SET_COOKIE, cookie)], page).into_response()
}

async fn login_form(headers: HeaderMap) -> Response {
    login_page(StatusCode::OK, "", &headers)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

async fn login(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let pre_session = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !same_origin(&headers) || pre_session.is_empty() || !same(&form.csrf, pre_session) {
        return csrf_refused();
    }
    if console.sessions.throttled() {
        tracing::warn!(target: "console::audit", "sign-in refused: too many wrong tokens");
        let mut page = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong tokens: try again in a minute",
            &headers,
        );
        page.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(WRONG_TOKEN_WINDOW.as_secs()),
        );
        return page;
    }
    if !same(form.token.trim(), console.token()) {
        console.sessions.wrong_token();
        tracing::warn!(target: "console::audit", "sign-in refused: wrong token");
        return login_page(StatusCode::UNAUTHORIZED, "Wrong token", &headers);
    }
    let session = console.sessions.create();
    tracing::info!(target: "console::audit", session = %session.label, "signed in");
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        session.id,
        SESSION_TTL.as_secs(),
        secure(&headers)
    );
    let clear = format!("{LOGIN_COOKIE}=; HttpOnly; SameSite=Strict; Path=/login; Max-Age=0");
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    for c in [cookie, clear] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

async fn logout(
    State(console): State<Console>,
    axum::Extension(viewer): axum::Extension<Viewer>,
) -> Response {
    if let Viewer::Session(session) = &viewer {
        console.sessions.remove(&session.id);
        tracing::info!(target: "console::audit", session = %session.label, "signed out");
    }
    let clear = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login".to_owned()),
            (header::SET_COOKIE, clear),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        assert_eq!(cookie_value("a=1; b=2", "b"), Some("2"));
        assert_eq!(cookie_value("ab=1; b=\"2\"", "b"), Some("2"));
        assert_eq!(cookie_value("ab=1", "b"), None);
        assert_eq!(cookie_value("", "b"), None);
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let a = sessions.create();
        let b = sessions.create();
        let c = sessions.create();
        assert!(sessions.get(&a.id).is_none(), "the oldest went");
        assert!(sessions.get(&b.id).is_some() && sessions.get(&c.id).is_some());
        assert_eq!(sessions.len(), 2);
        for _ in 0..MAX_WRONG_TOKENS {
            assert!(!sessions.throttled());
            sessions.wrong_token();
        }
        assert!(sessions.throttled(), "guessing is slowed down");
        let gone = Sessions::new(Duration::ZERO, 2);
        let s = gone.create();
        assert!(gone.get(&s.id).is_none(), "expired");
    }

    #[test]
    fn origins_are_compared_with_the_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8090"));
        assert!(same_origin(&h), "no Origin: not a cross-site form");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8090"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://console.example"),
        );
        assert!(!same_origin(&h));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("console.example"),
        );
        assert!(same_origin(&h), "behind a proxy");
        assert_eq!(secure(&h), "");
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(secure(&h), "; Secure");
    }

    #[tokio::test]
    async fn the_csrf_field_is_read_from_a_form_body() {
        let field = |b: &'static [u8]| csrf_field(Bytes::from_static(b));
        assert_eq!(
            field(b"a=1&csrf=abc%20d&b=2").await.as_deref(),
            Some("abc d")
        );
        assert_eq!(field(b"a=1").await, None);
        assert_eq!(field(b"\xff\xfe").await, None);
    }

    proptest::proptest! {
        /// Whatever a Cookie header holds, reading it never panics, and a
        /// value found is part of it.
        #[test]
        fn any_cookie_header_reads_without_panic(text in "\\PC{0,80}|[a-z_=; \"]{0,40}") {
            if let Some(v) = cookie_value(&text, SESSION_COOKIE) {
                proptest::prop_assert!(text.contains(v));
            }
        }
    }
}
