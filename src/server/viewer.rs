//! The web viewer at `/`: one self-contained page (no external assets, no build step) that
//! follows `/logs` over a WebSocket, so an operator with only a browser can watch the host.

use axum::response::Html;

/// The page's HTML. With a token set, it is also the body of the 401 a browser gets at `/`
/// without one: it asks for the token, keeps it for the tab (`sessionStorage`) and sends it on
/// every call (the WebSocket carries it as `?access_token=`).
pub const PAGE: &str = include_str!("viewer.html");

/// The page; everything it needs is inline.
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}
