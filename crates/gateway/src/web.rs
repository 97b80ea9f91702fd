//! The web client (`web/`, built into `web/dist` and embedded by
//! `build.rs`): served for every `GET` no route takes, so `panal up` serves
//! the app at `/` on a machine without Node.
//!
//! - Hashed files under `/assets/` are cached for a year (`immutable`): a
//!   new build has new names. `index.html` is never cached (`no-store`), so
//!   a deployment reaches every browser at its next load.
//! - Any other path that is not an API path and names no file (`/signin`,
//!   `/players/…`) is a page of the app: `index.html`, and the app's router
//!   shows it — deep links, Back and Forward work. Paths under `/v1/` and
//!   file-like paths that do not exist stay 404 problems.
//! - A strict Content-Security-Policy: scripts and styles from this origin
//!   only, no inline script, no `eval`; the app builds its DOM with
//!   `textContent`, never HTML from user content.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;

include!(concat!(env!("OUT_DIR"), "/web_files.rs"));

/// Scripts, styles, fonts and API calls from this origin only; the socket on
/// the same host (`ws:`/`wss:` are not covered by `'self'` in every
/// browser); images also from `data:`/`blob:` (avatars being previewed).
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self' ws: wss:; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The app's answer to `method path`, when the path is the app's.
pub(crate) fn answer(method: &Method, path: &str) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    if path == "/v1" || path.starts_with("/v1/") {
        return None;
    }
    if let Some((_, body)) = FILES.iter().find(|(p, _)| *p == path) {
        let cache = match path {
            "/index.html" => "no-store",
            _ if path.starts_with("/assets/") => IMMUTABLE,
            _ => "no-cache",
        };
        return Some(file(body, content_type(path), cache));
    }
    // A missing asset or file is a 404, not the app (a stale hashed name
    // must not come back as HTML with a 200).
    let last = path.rsplit('/').next().unwrap_or_default();
    if path.starts_with("/assets/") || last.contains('.') {
        return None;
    }
    let (_, index) = FILES.iter().find(|(p, _)| *p == "/index.html")?;
    Some(file(index, "text/html; charset=utf-8", "no-store"))
}

fn file(body: &'static [u8], content_type: &'static str, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "json" | "webmanifest" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_embedded_with_its_entry_page_and_hashed_assets() {
        assert!(FILES.iter().any(|(p, _)| *p == "/index.html"));
        assert!(FILES.iter().any(|(p, _)| p.starts_with("/assets/") && p.ends_with(".js")));
    }

    #[test]
    fn pages_are_the_app_and_api_or_missing_files_are_not() {
        let get = |path: &str| answer(&Method::GET, path);
        for page in ["/", "/signin", "/players/01a2", "/deep/link/"] {
            let r = get(page).unwrap_or_else(|| panic!("{page}"));
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store", "{page}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        }
        assert_eq!(get("/index.html").unwrap().headers()[header::CACHE_CONTROL], "no-store");
        for not_ours in ["/v1", "/v1/nothing", "/assets/index-gone.js", "/favicon.ico"] {
            assert!(get(not_ours).is_none(), "{not_ours}");
        }
        assert!(answer(&Method::POST, "/signin").is_none());
        let (asset, _) = FILES.iter().find(|(p, _)| p.ends_with(".js")).unwrap();
        let r = get(asset).unwrap();
        assert_eq!(r.headers()[header::CACHE_CONTROL], IMMUTABLE);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    }
}
