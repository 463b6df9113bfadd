//! The web viewer at `/`: one self-contained page (no external assets, no build step) that
//! follows `/logs` over a WebSocket, so an operator with only a browser can watch the host.

use axum::response::Html;

/// The page; everything it needs is inline.
pub async fn page() -> Html<&'static str> {
    Html(include_str!("viewer.html"))
}
