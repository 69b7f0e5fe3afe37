//! Signing in to the console as a browser does, over real HTTP: the login
//! form's pre-session cookie and token, the session cookie, and the CSRF
//! token of the pages (shared by the console's test modules).

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};

/// The whole `Set-Cookie` value set by `answer` starting with `prefix`.
pub fn set_cookie(answer: &Response, prefix: &str) -> Option<String> {
    answer
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(prefix))
        .map(str::to_owned)
}

/// The `name=value` of the cookie set by `answer` starting with `prefix`.
pub fn cookie_pair(answer: &Response, prefix: &str) -> Option<String> {
    let cookie = set_cookie(answer, prefix)?;
    cookie.split(';').next().map(str::to_owned)
}

/// The value of the first hidden `csrf` field of `html`.
pub fn csrf_of(html: &str) -> Option<String> {
    let (_, after) = html.split_once("name=\"csrf\" value=\"")?;
    after.split('"').next().map(str::to_owned)
}

/// POST /login of `base` with `token`, the form's `csrf`, and the
/// pre-session cookie `pre` (`name=value`) when given.
pub async fn post_login(
    http: &Client,
    base: &str,
    pre: Option<&str>,
    csrf: &str,
    token: &str,
) -> Response {
    let mut request = http.post(format!("{base}/login"));
    if let Some(pre) = pre {
        request = request.header(COOKIE, pre);
    }
    request
        .form(&[("csrf", csrf), ("token", token)])
        .send()
        .await
        .expect("an answer")
}

/// The login form of `base`: its pre-session cookie (`name=value`) and
/// token.
pub async fn login_form(http: &Client, base: &str) -> (String, String) {
    let answer = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::OK);
    let pre = cookie_pair(&answer, "pubsubkafka_console_login=").expect("a login cookie");
    let page = answer.text().await.expect("a page");
    (pre, csrf_of(&page).expect("the form's CSRF token"))
}

/// Signs in to `base` with `token`: the session cookie (`name=value`) and
/// the CSRF token of the session's pages (read from `page`).
pub async fn sign_in(http: &Client, base: &str, token: &str, page: &str) -> (String, String) {
    let (pre, csrf) = login_form(http, base).await;
    let answer = post_login(http, base, Some(&pre), &csrf, token).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let session = cookie_pair(&answer, "pubsubkafka_console=").expect("a session cookie");
    let html = http
        .get(format!("{base}{page}"))
        .header(COOKIE, &session)
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .expect("a page");
    (session, csrf_of(&html).expect("the page's CSRF token"))
}
