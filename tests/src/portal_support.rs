//! Visiting the portal over plain HTTP, as a browser would but without one:
//! sign in for a session cookie, open pages with it, read a form's CSRF
//! token, and post forms; redirects are shown, not followed.

use crate::Platform;

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// Signs in at `path` with `token`; answers (status, Location, Set-Cookie).
pub async fn sign_in(p: &Platform, path: &str, token: &str, tls: bool) -> (u16, String, String) {
    let mut request = browser().post(p.url(path)).form(&[("token", token)]);
    if tls {
        request = request.header("x-forwarded-proto", "https");
    }
    let response = request.send().await.expect("sent");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (response.status().as_u16(), header("location"), header("set-cookie"))
}

/// `name=value` of the session cookie in a Set-Cookie header.
pub fn session(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

pub async fn page(p: &Platform, path: &str, cookie: &str) -> (u16, String, String) {
    let response = browser().get(p.url(path)).header("cookie", cookie).send().await.expect("sent");
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, location, response.text().await.expect("body"))
}

/// The CSRF token a page's forms carry.
pub fn csrf(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).map(|i| i + marker.len()).expect("a form with a CSRF token");
    html[start..].split('"').next().unwrap_or_default().to_owned()
}

pub async fn post(p: &Platform, path: &str, cookie: &str, form: &[(&str, &str)]) -> (u16, String, String) {
    let response = browser().post(p.url(path)).header("cookie", cookie).form(form).send().await.expect("sent");
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, location, response.text().await.expect("body"))
}
